package cluster

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/fsm/fsmpb"
)

// checkRefusal fails unless err is a status with a client-side code: bad
// input is never Internal.
func checkRefusal(t *testing.T, what string, err error) {
	t.Helper()
	switch status.Code(err) {
	case codes.InvalidArgument, codes.ResourceExhausted:
	default:
		t.Fatalf("%s: refused with %v, want InvalidArgument or ResourceExhausted", what, err)
	}
}

// FuzzReportValidation feeds arbitrary Report requests (any bytes that
// decode) to the handler's validation. It must never panic, must refuse
// with InvalidArgument or ResourceExhausted, and whatever it accepts must be
// a command the state machine accepts and that fits into one log entry: no
// validated request fails later at encoding or in raft.
func FuzzReportValidation(f *testing.F) {
	h := make([]byte, fsm.HashSize)
	seeds := []*pb.ReportRequest{
		{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: [][]byte{h}},
		{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_DELTA, Seq: 2, RemovedActive: [][]byte{h}, Pinned: [][]byte{h}},
		{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_FULL_CHUNK, Seq: 3, Chunk: &pb.Chunk{ReportId: 7, Index: 1, Last: true}},
		{NodeId: "", Kind: pb.ReportKind(9)},
		{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_FULL, Active: [][]byte{h[:31]}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(MaxBatch))
	}
	f.Fuzz(func(t *testing.T, data []byte, maxBatch uint16) {
		var req pb.ReportRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		limit := int(maxBatch)%MaxBatch + 1
		rep, err := reportCommand(&req, limit)
		if err != nil {
			checkRefusal(t, "report", err)
			return
		}
		n := (len(rep.Active) + len(rep.Pinned) + len(rep.RemovedActive) + len(rep.RemovedPinned)) / fsm.HashSize
		if n > limit {
			t.Fatalf("accepted %d hashes over the limit %d", n, limit)
		}
		if _, err := fsm.Encode(fsm.NewCommand(1, 1, rep)); err != nil {
			t.Fatalf("validated report refused by the state machine: %v\nrequest: %v", err, &req)
		}
	})
}

// FuzzHashesValidation does the same for the hash batches of RegisterBlobs,
// Pin, Unpin, Claim and ConfirmCollected.
func FuzzHashesValidation(f *testing.F) {
	f.Add([]byte{}, 1, uint16(MaxBatch))
	f.Add(make([]byte, fsm.HashSize*3), fsm.HashSize, uint16(2))
	f.Add(make([]byte, 100), 33, uint16(10))
	f.Fuzz(func(t *testing.T, data []byte, size int, maxBatch uint16) {
		if size <= 0 || size > 64 {
			size = fsm.HashSize
		}
		var hs [][]byte
		for len(data) >= size {
			hs, data = append(hs, data[:size]), data[size:]
		}
		if len(data) > 0 {
			hs = append(hs, data)
		}
		limit := int(maxBatch)%MaxBatch + 1
		packed, err := packHashes("hashes", hs, false, limit)
		if err != nil {
			checkRefusal(t, "hashes", err)
			return
		}
		if len(packed) != len(hs)*fsm.HashSize || len(hs) == 0 || len(hs) > limit {
			t.Fatalf("accepted %d hashes into %d bytes (limit %d)", len(hs), len(packed), limit)
		}
		if _, err := fsm.Encode(fsm.NewCommand(1, 1, &fsmpb.Pin{Hashes: packed})); err != nil {
			t.Fatalf("validated batch refused by the state machine: %v", err)
		}
	})
}

// FuzzPageTokens checks that no page token or size is accepted that this
// API could not have issued, and that none panics.
func FuzzPageTokens(f *testing.F) {
	f.Add("", int32(0))
	f.Add("00", int32(-1))
	f.Add("zz", int32(1<<30))
	f.Fuzz(func(t *testing.T, tok string, size int32) {
		if n, err := pageSize(size); err != nil {
			checkRefusal(t, "page_size", err)
		} else if n <= 0 || n > MaxPageSize {
			t.Fatalf("page size %d accepted as %d", size, n)
		}
		if id, err := nodeToken(tok); err != nil {
			checkRefusal(t, "node token", err)
		} else if len(id) > fsm.MaxNodeIDLen {
			t.Fatalf("node token of %d bytes accepted", len(id))
		}
		if _, _, err := hashToken(tok); err != nil {
			checkRefusal(t, "hash token", err)
		}
		if _, err := seqToken(tok); err != nil {
			checkRefusal(t, "seq token", err)
		}
	})
}
