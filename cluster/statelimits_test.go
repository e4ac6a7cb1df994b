package cluster_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/fsm"
)

// Reports with ids that are not auth.ValidName, sequence numbers near 2^64,
// bad request ids and reports beyond max_nodes are refused with a clear
// code, through any server, and change nothing.
func TestReportLimitsRefused(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, time.Minute)
	cl := c.Client(c.Leader())
	one := int64(1)
	retryWrite(t, time.Minute, func(ctx context.Context) error {
		_, err := cl.SetConfig(ctx, &pb.SetConfigRequest{MaxNodes: &one})
		return err
	})
	retryWrite(t, time.Minute, func(ctx context.Context) error {
		_, err := cl.Report(ctx, &pb.ReportRequest{NodeId: "vm-1", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1})
		return err
	})
	cfg := try(cl.GetConfig(ctx, &pb.GetConfigRequest{})).must(t)
	if cfg.MaxNodes != 1 || cfg.MaxStagedHashes != int64(fsm.DefaultConfig().MaxStagedHashesTotal) {
		t.Fatalf("config %v", cfg)
	}
	idx, digest := c.WaitConverged()
	for _, s := range c.Running() {
		cl := c.Client(s)
		for _, tc := range []struct {
			req  *pb.ReportRequest
			code codes.Code
		}{
			{&pb.ReportRequest{NodeId: "vm 2", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1}, codes.InvalidArgument},
			{&pb.ReportRequest{NodeId: "vm-1\x1b[2J", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1}, codes.InvalidArgument},
			{&pb.ReportRequest{NodeId: "vm-1", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: fsm.MaxSeq + 1}, codes.InvalidArgument},
			{&pb.ReportRequest{NodeId: "vm-1", Kind: pb.ReportKind_REPORT_KIND_DELTA, Seq: ^uint64(0)}, codes.InvalidArgument},
			{&pb.ReportRequest{NodeId: "vm-2", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1}, codes.ResourceExhausted},
			{&pb.ReportRequest{NodeId: "vm-2", Kind: pb.ReportKind_REPORT_KIND_FULL_CHUNK, Seq: 1, Chunk: &pb.Chunk{ReportId: 9}}, codes.ResourceExhausted},
		} {
			_, err := cl.Report(ctx, tc.req)
			if status.Code(err) != tc.code {
				t.Errorf("%s: report %q seq %d: %v, want %v", s.ID(), tc.req.NodeId, tc.req.Seq, err, tc.code)
			}
		}
		if _, err := cl.RunCycle(ctx, &pb.RunCycleRequest{RequestId: "has space"}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: bad request id: %v", s.ID(), err)
		}
	}
	// Refused before the log: nothing was written.
	if i, d := c.Leader().FSM().Digest(); i != idx || d != digest {
		t.Fatal("refused reports changed the state")
	}
	if n := c.Leader().FSM().Nodes(); len(n) != 1 || n[0].ID != "vm-1" || n[0].Seq != 1 {
		t.Fatalf("nodes %v", n)
	}
}

// A retried RunCycle request id runs one cycle; scheduled cycles record
// "scheduler" as their principal; tombstones keep claim and confirm times.
func TestCycleRequestIDAndProvenance(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(i int, cfg *cluster.Config) {
		cfg.CycleInterval = 200 * time.Millisecond
	}})
	ctx := ctxT(t, 2*time.Minute)
	cl := c.Client(c.Followers()[0])
	grace := int64(0)
	retryWrite(t, time.Minute, func(ctx context.Context) error {
		_, err := cl.SetConfig(ctx, &pb.SetConfigRequest{GracePeriodNs: &grace})
		return err
	})
	retryWrite(t, time.Minute, func(ctx context.Context) error {
		_, err := cl.Report(ctx, &pb.ReportRequest{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: hashes(0, 1)})
		return err
	})
	retryWrite(t, time.Minute, func(ctx context.Context) error {
		_, err := cl.RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 2)})
		return err
	})
	// The scheduler marks hashN(1) and records itself.
	var events []*pb.HistoryEvent
	c.Eventually(time.Minute, "a scheduled cycle in the history", func() bool {
		h, err := cl.History(ctx, &pb.HistoryRequest{})
		if err != nil || len(h.Events) == 0 {
			return false
		}
		events = h.Events
		return true
	})
	if events[0].RunBy != fsm.SchedulerPrincipal {
		t.Fatalf("scheduled cycle run by %q", events[0].RunBy)
	}
	// One request id, several calls: one cycle. Cycles that mark nothing
	// leave no history event, so count the applied RunCycle results instead:
	// the retries are answered as duplicates.
	var first *pb.CycleResult
	retryWrite(t, time.Minute, func(ctx context.Context) error {
		r, err := cl.RunCycle(ctx, &pb.RunCycleRequest{RequestId: "call-1"})
		first = r
		return err
	})
	for i := 0; i < 3; i++ {
		r := try(c.Client(c.Running()[i]).RunCycle(ctx, &pb.RunCycleRequest{RequestId: "call-1"})).must(t)
		if !r.Duplicate || r.TimeNs != first.TimeNs {
			t.Fatalf("retry %d: %v, first %v", i, r, first)
		}
	}
	// Claim and confirm: the tombstone says when and by whom (without
	// authentication configured, the anonymous admin).
	granted := try(cl.Claim(ctx, &pb.HashesRequest{Hashes: hashes(1, 1)})).must(t).Granted
	if len(granted) != 1 || !bytes.Equal(granted[0], hashN(1)) {
		t.Fatalf("granted %x", granted)
	}
	try(cl.ConfirmCollected(ctx, &pb.HashesRequest{Hashes: granted})).must(t)
	st := try(cl.GetStatus(ctx, &pb.GetStatusRequest{Hash: hashN(1)})).must(t)
	if st.State != pb.BlobState_BLOB_STATE_COLLECTED || st.ClaimedAtNs == 0 || st.ConfirmedAtNs < st.ClaimedAtNs ||
		st.ClaimedBy != auth.Anonymous.String() || st.ConfirmedBy != auth.Anonymous.String() {
		t.Fatalf("tombstone %v", st)
	}
	c.WaitConverged()
}
