package systemtest

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/client"
)

// The whole process pipeline (workload, observer, end-state reads,
// checkers) catches a sweeper that deletes without claiming.
func TestProcChaos_CatchesUnsafeSweeper(t *testing.T) {
	o := defaultProcOpts()
	o.Duration, o.Servers, o.UnsafeSweep = 4*time.Second, 0, true
	res := runProcChaos(t, procScenarioByName(t, "RandomKill"), o)
	found := false
	for _, v := range res.Violations {
		found = found || v.Invariant == 6
	}
	if !found {
		t.Fatalf("no invariant 6 violation among %v", res.Violations)
	}
}

// A leader stopped with SIGSTOP past the election timeout wakes up still
// believing it leads. Requests already queued on its socket when it wakes
// must not be answered from its stale state: a linearizable status read
// must see the pin the new leader committed meanwhile, and a claim must not
// grant a blob that a report made live again meanwhile. Several rounds, each
// with a fresh leader.
func TestProcChaos_PausedLeaderServesNoStaleState(t *testing.T) {
	pc := startProcs(t, 3, testTimings, "--grace-period=0s", "--stale-threshold=1h")
	paused := -1
	t.Cleanup(func() {
		if paused >= 0 && pc.procs[paused].cmd != nil {
			pc.procs[paused].cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	c := pc.newClient()
	ctx := ctxT(t, 2*time.Minute)
	for round := range 3 {
		x, b, other := hashN(1000+round), hashN(2000+round), hashN(3000+round)
		if _, err := c.RegisterBlobs(ctx, []client.Hash{x, b, other}); err != nil {
			t.Fatal(err)
		}
		node := fmt.Sprintf("vm-%d", round)
		if err := c.Reporter(node).Full(ctx, []client.Hash{other}, nil); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "b marked", func() bool {
			if _, err := c.RunCycle(ctx, false); err != nil {
				return false
			}
			st, err := c.Status(ctx, b)
			return err == nil && st.State == blobgcv1.BlobState_BLOB_STATE_MARKED_FOR_COLLECTION
		})
		li := pc.index(pc.waitLeader(c))
		old := pc.procs[li]
		var others []string
		for _, a := range pc.addrs() {
			if a != old.addr {
				others = append(others, a)
			}
		}

		if err := old.pause(); err != nil {
			t.Fatal(err)
		}
		paused = li
		// The others elect a leader and commit a pin of x and a report
		// that references b again.
		// A short call timeout: a follower that forwards to the stopped
		// leader holds the request for the caller's whole deadline.
		c2, err := client.New(others, client.WithCallTimeout(time.Second), client.WithBackoff(5*time.Millisecond, 100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c2.Pin(ctx, []client.Hash{x}); err != nil {
			t.Fatalf("round %d: pin through the new leader: %v", round, err)
		}
		if err := c2.Reporter(node).Full(ctx, []client.Hash{other, b}, nil); err != nil {
			t.Fatalf("round %d: report through the new leader: %v", round, err)
		}

		// Queue requests on the stopped ex-leader's socket, then wake it.
		cc, err := grpc.NewClient("passthrough:///"+old.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		api := blobgcv1.NewBlobGCClient(cc)
		type answer struct {
			st      *blobgcv1.BlobStatus
			granted [][]byte
			err     error
		}
		reads, claims := make(chan answer, 1), make(chan answer, 1)
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		go func() {
			st, err := api.GetStatus(rctx, &blobgcv1.GetStatusRequest{Hash: x[:], Consistency: blobgcv1.Consistency_CONSISTENCY_LINEARIZABLE})
			reads <- answer{st: st, err: err}
		}()
		go func() {
			resp, err := api.Claim(rctx, &blobgcv1.HashesRequest{Hashes: [][]byte{b[:]}})
			claims <- answer{granted: resp.GetGranted(), err: err}
		}()
		// Let the requests reach the socket; correctness does not depend
		// on it, only how hard the race is.
		time.Sleep(200 * time.Millisecond)
		if err := old.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		paused = -1
		r, cl := <-reads, <-claims
		cancel()
		cc.Close()
		c2.Close()
		if r.err == nil && !r.st.GetCoordinatorPin() {
			t.Errorf("round %d: the woken ex-leader %s answered a linearizable read of x with pinned=false after the new leader committed the pin", round, old.id)
		}
		if cl.err == nil && slices.ContainsFunc(cl.granted, func(g []byte) bool { return string(g) == string(b[:]) }) {
			t.Errorf("round %d: the woken ex-leader %s granted a claim of b after the new leader committed a report referencing it", round, old.id)
		}
		t.Logf("round %d: ex-leader %s: read err %v, claim err %v", round, old.id, r.err, cl.err)
		// Statuses move only at cycles: b still reads MARKED, but the
		// report protects it from every claim.
		st, err := c.Status(ctx, b)
		if err != nil || !slices.Contains(st.GetReferencedBy(), node) {
			t.Fatalf("round %d: b after the report: %v %v", round, st, err)
		}
		if granted, _, err := c.Claim(ctx, []client.Hash{b}); err != nil || len(granted) != 0 {
			t.Fatalf("round %d: claim of the referenced b through the leader: granted %v, %v", round, granted, err)
		}
		pc.waitConverged(c)
	}
}
