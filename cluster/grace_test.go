package cluster_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// A blob unreferenced for about half its grace period when the leader dies
// becomes eligible no earlier than the grace period after it became
// unreferenced (cluster time and wall time), and is marked by the new
// leader's cycles. How much later than that it is marked depends on the
// election gap and the machine's load: BenchmarkGraceMarkAfterLeaderKill
// measures it.
func TestGracePeriodContinuesAcrossLeaderKill(t *testing.T) {
	gap, late := markAcrossLeaderKill(t)
	t.Logf("election gap %v; marked %v after the grace period and the gap", gap, late)
}

// markAcrossLeaderKill runs the scenario above, failing t if a blob is
// marked early, and returns the election gap and how much later than grace
// + gap the blob was marked (wall time).
func markAcrossLeaderKill(t testing.TB) (gap, late time.Duration) {
	t.Helper()
	const grace = 2 * time.Second
	const cycle = 100 * time.Millisecond
	gc := fsm.DefaultConfig()
	gc.GracePeriod = grace
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(i int, cfg *cluster.Config) {
		cfg.CycleInterval = cycle
		cfg.GC = &gc
	}})
	leader := c.Leader()
	cl := c.Client(c.Followers()[0])
	ctx := ctxT(t, testtiming.Hang())

	clustertest.Eventually(t, testtiming.Hang(), "the configured grace period", func() bool {
		cfg, err := cl.GetConfig(ctx, &pb.GetConfigRequest{})
		return err == nil && cfg.GracePeriodNs == int64(grace)
	})
	x, y := hashN(1), hashN(2)
	try(cl.RegisterBlobs(ctx, &pb.HashesRequest{Hashes: [][]byte{x, y}})).must(t)
	try(cl.Report(ctx, &pb.ReportRequest{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: [][]byte{y}})).must(t)

	// The first cycle after the report sees x unreferenced.
	var since int64
	var wallUnref time.Time
	clustertest.Eventually(t, testtiming.Hang(), "x UNREFERENCED", func() bool {
		st, err := cl.GetStatus(ctx, &pb.GetStatusRequest{Hash: x})
		if err == nil && st.State == pb.BlobState_BLOB_STATE_UNREFERENCED {
			since, wallUnref = st.UnreferencedSinceNs, time.Now()
			return true
		}
		return false
	})
	// Let half the grace period pass in cluster time, then kill the leader.
	clustertest.Eventually(t, testtiming.Hang(), "half the grace period", func() bool {
		return leader.FSM().ClusterTime() >= since+int64(grace/2)
	})
	if st := try(cl.GetStatus(ctx, &pb.GetStatusRequest{Hash: x})).must(t); st.State != pb.BlobState_BLOB_STATE_UNREFERENCED {
		t.Fatalf("x is %v after half the grace period", st.State)
	}
	killed := time.Now()
	c.Kill(c.Index(leader))

	newLeader := c.Leader()
	elected := time.Now()
	cl = c.Client(newLeader)
	var marked time.Time
	clustertest.Eventually(t, testtiming.Hang(), "x MARKED_FOR_COLLECTION", func() bool {
		st, err := cl.GetStatus(context.Background(), &pb.GetStatusRequest{Hash: x})
		if err == nil && st.State == pb.BlobState_BLOB_STATE_MARKED_FOR_COLLECTION {
			marked = time.Now()
			return true
		}
		return false
	})

	// Cluster time: the cycle that marked x ran at least grace after since.
	var ev *pb.HistoryEvent
	for _, e := range try(cl.History(ctx, &pb.HistoryRequest{})).must(t).Events {
		for _, h := range e.NewlyMarked {
			if bytes.Equal(h, x) {
				ev = e
			}
		}
	}
	if ev == nil {
		t.Fatal("no history event marked x")
	}
	if ev.TimeNs-since < int64(grace) {
		t.Errorf("marked after %v of cluster time, want >= %v", time.Duration(ev.TimeNs-since), grace)
	}
	// Wall time: from the moment x was seen unreferenced (after since) to the
	// marking cycle's wall clock.
	if d := time.Unix(0, ev.WallTimeNs).Sub(wallUnref); d < grace {
		t.Errorf("marked %v (wall) after x was seen unreferenced, want >= %v", d, grace)
	}
	gap = elected.Sub(killed)
	if y := try(cl.GetStatus(ctx, &pb.GetStatusRequest{Hash: y})).must(t); y.State != pb.BlobState_BLOB_STATE_ACTIVE {
		t.Errorf("y is %v, want ACTIVE", y.State)
	}
	return gap, marked.Sub(wallUnref) - grace - gap
}
