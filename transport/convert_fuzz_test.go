package transport

import (
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/blobgc/blobgc/transport/transportpb"
)

// FuzzDecodeRequests feeds arbitrary bytes to the decoding of every raft
// request a peer can send: whatever parses as protobuf must decode without
// panicking, and decoding must be stable across a re-encode (nothing a
// peer sends is half-understood).
func FuzzDecodeRequests(f *testing.F) {
	ae := makeAppendRPC()
	for _, m := range []proto.Message{
		encodeAppendEntriesRequest(&ae),
		&pb.RequestVoteRequest{Header: &pb.RPCHeader{Id: []byte("n1")}, Term: 3},
		&pb.InstallSnapshotRequest{Size: -1},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeStable(t, data, decodeAppendEntriesRequest, encodeAppendEntriesRequest)
		decodeStable(t, data, decodeRequestVoteRequest, encodeRequestVoteRequest)
		decodeStable(t, data, decodeRequestPreVoteRequest, encodeRequestPreVoteRequest)
		decodeStable(t, data, decodeTimeoutNowRequest, encodeTimeoutNowRequest)
		decodeStable(t, data, decodeInstallSnapshotRequest, encodeInstallSnapshotRequest)
	})
}

// decodeStable decodes data as message M if it parses, and checks that
// re-encoding and decoding again gives the same raft struct.
func decodeStable[M any, PM interface {
	*M
	proto.Message
}, R any](t *testing.T, data []byte, decode func(PM) R, encode func(R) PM) {
	t.Helper()
	msg := PM(new(M))
	if proto.Unmarshal(data, msg) != nil {
		return
	}
	got := decode(msg)
	if d := equal(got, decode(encode(got))); d != "" {
		t.Fatalf("%T: decoding is not stable:\n%s", msg, d)
	}
}
