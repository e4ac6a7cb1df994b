package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// The observer must catch a mark that comes before the grace period it
// checks: the cluster runs with a 200 ms grace, the observer checks a
// minute, so that a stall of the machine between the blob's last reference
// and its mark cannot make the mark look late enough. Cycles run only when
// the test asks for one, so the observer polls every state the blob goes
// through (referenced, unreferenced, marked) however slow the machine is.
func TestObserverCatchesEarlyMark(t *testing.T) {
	const checked = time.Minute
	gc := fsm.DefaultConfig()
	gc.GracePeriod = 200 * time.Millisecond
	c := clustertest.Start(t, clustertest.Options{N: 1, Configure: func(i int, cfg *cluster.Config) {
		cfg.GC = &gc
		cfg.CycleInterval = -1
	}})
	cl, err := client.New([]string{c.Servers[0].Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*testtiming.Hang())
	defer cancel()
	clustertest.Eventually(t, testtiming.Hang(), "GC config", func() bool {
		cfg, err := cl.GetConfig(ctx)
		return err == nil && cfg.GetGracePeriodNs() == gc.GracePeriod.Nanoseconds()
	})
	x := hh("early")
	obs := NewObserver(checked, func() []*cluster.Server { return c.Servers }, func() []Hash { return []Hash{x} })
	// cycleUntil runs cycles until the blob is in state want, then lets the
	// observer poll it: no other cycle runs, so the poll sees that state.
	cycleUntil := func(want fsm.Status) {
		t.Helper()
		clustertest.Eventually(t, testtiming.Hang(), "the blob "+want.String(), func() bool {
			if _, err := cl.RunCycle(ctx, false); err != nil {
				t.Logf("cycle: %v", err)
				return false
			}
			if c.Servers[0].FSM().Blob(x).Status != want {
				return false
			}
			obs.Poll()
			return true
		})
	}
	rep := cl.Reporter("vm1")
	if err := rep.Full(ctx, []Hash{x}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.RegisterBlobs(ctx, []Hash{x}); err != nil {
		t.Fatal(err)
	}
	cycleUntil(fsm.StatusActive)
	if err := rep.Full(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	cycleUntil(fsm.StatusUnreferenced)
	cycleUntil(fsm.StatusMarked)
	if vs := obs.Violations(); len(vs) == 0 || vs[0].Invariant != 2 {
		t.Fatalf("violations %v, want an early mark (%d marks checked)", vs, obs.Marks())
	}
	if obs.Marks() != 1 {
		t.Fatalf("marks checked %d, want 1", obs.Marks())
	}
	events, _ := c.Servers[0].FSM().History(0, 1000)
	if n, vs := CheckGraceHistory(obs.Marked(), events, checked); n != 1 || len(vs) != 1 {
		t.Fatalf("history check: %d checked, %v", n, vs)
	}
	if n, vs := CheckGraceHistory(obs.Marked(), events, gc.GracePeriod); n != 1 || len(vs) != 0 {
		t.Fatalf("history check at the real grace: %d checked, %v", n, vs)
	}
	if vs := CheckClockRate(events, 5*time.Millisecond); len(vs) != 0 {
		t.Fatal(vs)
	}
	if obs.LeaderChanges() != 0 {
		t.Fatalf("leader changes %d in a one-server cluster", obs.LeaderChanges())
	}
}

// Every observer flags a second leader in a term, and only that.
func TestTrackerOneLeaderPerTerm(t *testing.T) {
	o := NewTracker(time.Second)
	o.SawLeader(2, "s1")
	o.SawLeader(2, "s1")
	o.SawLeader(3, "s2")
	if vs := o.Violations(); len(vs) != 0 || o.LeaderChanges() != 1 || o.LeadersSeen() != 2 {
		t.Fatalf("violations %v, leader changes %d", vs, o.LeaderChanges())
	}
	o.SawLeader(3, "s3")
	if vs := o.Violations(); len(vs) != 1 || vs[0].Invariant != InvLeaderPerTerm {
		t.Fatalf("two leaders in term 3 not reported: %v", vs)
	}
}

// Every observer flags a mark before the grace period, measured from the
// unreferenced since it saw and from the last time it saw the blob
// referenced; a restarted server's replay starts a fresh track.
func TestTrackerMarkBeforeGrace(t *testing.T) {
	grace := Grace.Nanoseconds()
	early, late, ref := fsm.Hash{1}, fsm.Hash{2}, fsm.Hash{3}
	o := NewTracker(Grace)
	s1 := [2]int{0, 0}
	o.Observe("s1", s1, 1000, 1100, []fsm.BlobInfo{
		{Hash: early, Status: fsm.StatusUnreferenced, Since: 1000},
		{Hash: late, Status: fsm.StatusUnreferenced, Since: 1000},
		{Hash: ref, Status: fsm.StatusActive},
	})
	o.Observe("s1", s1, 1000+grace/2, 1000+grace/2, []fsm.BlobInfo{
		{Hash: early, Status: fsm.StatusMarked},
		{Hash: ref, Status: fsm.StatusMarked},
	})
	o.Observe("s1", s1, 1000+grace, 1000+grace, []fsm.BlobInfo{{Hash: late, Status: fsm.StatusMarked}})
	vs := o.Violations()
	if len(vs) != 2 || o.Marks() != 3 {
		t.Fatalf("violations %v, marks %d; want 2 (early, ref) and 3", vs, o.Marks())
	}
	for _, v := range vs {
		if v.Invariant != 2 {
			t.Fatalf("violation %v, want invariant 2", v)
		}
	}
	if recs := o.Marked(); len(recs) != 2 {
		t.Fatalf("mark records %v, want early and late", recs)
	}
	// A new incarnation first seen MARKED: no transition was observed.
	o.Observe("s1", [2]int{0, 1}, 0, 0, []fsm.BlobInfo{{Hash: early, Status: fsm.StatusMarked}})
	if o.Marks() != 3 || len(o.Violations()) != 2 {
		t.Fatalf("a replayed MARKED state counted as a new mark")
	}
}
