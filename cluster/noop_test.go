package cluster_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

// Claims, confirms and cycles that would change nothing are answered from
// the leader's state without a log entry; those that change something are
// applied. Every call goes through a follower, so forwarding is covered.
func TestNoopWritesNeedNoLogEntry(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, time.Minute)
	cl := c.Client(c.Followers()[0])
	zero := int64(0)
	try(cl.SetConfig(ctx, &pb.SetConfigRequest{GracePeriodNs: &zero, MinNodesReporting: &zero})).must(t)
	a, b := hashes(0, 1), hashes(1, 1)
	try(cl.RegisterBlobs(ctx, &pb.HashesRequest{Hashes: append(a, b...)})).must(t)
	try(cl.Pin(ctx, &pb.HashesRequest{Hashes: b})).must(t)

	// moves runs call and reports whether it wrote to the log.
	moves := func(what string, call func(context.Context) error) bool {
		t.Helper()
		before, _ := c.WaitConverged()
		if err := call(ctx); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		after, _ := c.WaitConverged()
		return after != before
	}
	claim := func(want [][]byte) func(context.Context) error {
		return func(ctx context.Context) error {
			r, err := cl.Claim(ctx, &pb.HashesRequest{Hashes: append(a, b...)})
			if err == nil && !equalHashes(r.Granted, want) {
				t.Errorf("claim granted %x, want %x", r.Granted, want)
			}
			return err
		}
	}
	confirm := func(ctx context.Context) error {
		_, err := cl.ConfirmCollected(ctx, &pb.HashesRequest{Hashes: append(a, b...)})
		return err
	}
	cycle := func(ctx context.Context) error { _, err := cl.RunCycle(ctx, &pb.RunCycleRequest{}); return err }

	// Nothing is MARKED or DELETING yet.
	if moves("claim before any cycle", claim(nil)) {
		t.Error("a claim of unmarked blobs wrote a log entry")
	}
	if moves("confirm before any claim", confirm) {
		t.Error("a confirm of blobs not DELETING wrote a log entry")
	}
	// The first cycle has dirty work (a is newly eligible with grace 0).
	if !moves("first cycle", cycle) {
		t.Fatal("the first cycle was not applied")
	}
	if got := state(t, c, c.Leader(), a[0], pb.Consistency_CONSISTENCY_LINEARIZABLE); got != pb.BlobState_BLOB_STATE_MARKED_FOR_COLLECTION {
		t.Fatalf("a is %v after the cycle, want MARKED", got)
	}
	// A cycle while a is eligible records a history event, so it is applied.
	if !moves("cycle with an eligible blob", cycle) {
		t.Error("a cycle that records a history event was not applied")
	}
	if !moves("claim of a MARKED blob", claim(a)) {
		t.Error("a claim that grants a MARKED blob was not applied")
	}
	if moves("repeated claim", claim(a)) {
		t.Error("a repeated claim (a already DELETING) wrote a log entry")
	}
	if !moves("confirm of a DELETING blob", confirm) {
		t.Error("a confirm of a DELETING blob was not applied")
	}
	if moves("repeated confirm", confirm) {
		t.Error("a repeated confirm wrote a log entry")
	}
	if got := state(t, c, c.Leader(), a[0], pb.Consistency_CONSISTENCY_LINEARIZABLE); got != pb.BlobState_BLOB_STATE_COLLECTED {
		t.Fatalf("a is %v, want COLLECTED", got)
	}
	// Nothing eligible, nothing dirty: once one cycle has run, the next
	// changes nothing.
	try(cl.RunCycle(ctx, &pb.RunCycleRequest{})).must(t)
	var idle *pb.CycleResult
	if moves("idle cycle", func(ctx context.Context) (err error) { idle, err = cl.RunCycle(ctx, &pb.RunCycleRequest{}); return err }) {
		t.Error("a cycle with nothing to do wrote a log entry")
	}
	if len(idle.Eligible) != 0 || len(idle.NewlyMarked) != 0 || idle.PinnedCount != 1 || idle.AppliedIndex == 0 {
		t.Errorf("idle cycle result %v, want nothing eligible and one pinned", idle)
	}
}

func equalHashes(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
