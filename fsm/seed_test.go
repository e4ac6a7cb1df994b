package fsm

// Ports of the seed's unit tests (distributed_gc.rs). Instant::now() becomes
// the harness's cluster time.

import (
	"testing"
	"time"

	"github.com/blobgc/blobgc/fsm/fsmpb"
)

func TestSeedDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if c.GracePeriod != 300*time.Second || c.StaleThreshold != 600*time.Second || c.MinNodesReporting != 1 {
		t.Fatalf("defaults %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := New().Config(); got != c {
		t.Fatalf("New().Config() = %+v", got)
	}
}

func TestSeedRegisterAndQuery(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	x := mk(0xAA)
	h.wantStatus(x, StatusNotFound)
	h.register(x)
	h.wantStatus(x, StatusActive)
}

func TestSeedPinUnpin(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	x := mk(0xBB)
	h.register(x)
	h.pin(x)
	h.wantStatus(x, StatusPinned)
	h.unpin(x)
	h.wantStatus(x, StatusActive)
}

func TestSeedCycleNoReportsBelowMin(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MinNodesReporting = 2
	h := newHarness(t, cfg)
	h.register(mk(1))
	h.full("1", 0, nil, nil)
	r := h.cycle()
	if len(r.Eligible) != 0 || r.Skipped != "below min_nodes_reporting" || r.ActiveCount != 0 {
		t.Fatalf("%+v", r)
	}
}

func TestSeedActiveBlobNotCollected(t *testing.T) {
	cfg := DefaultConfig()
	cfg.GracePeriod = 0
	h := newHarness(t, cfg)
	x := mk(0xCC)
	h.register(x)
	h.full("1", 0, []Hash{x}, nil)
	r := h.cycle()
	if len(r.Eligible) != 0 || r.ActiveCount != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestSeedUnreferencedCollectedAfterGrace(t *testing.T) {
	cfg := DefaultConfig()
	cfg.GracePeriod = 0
	h := newHarness(t, cfg)
	x := mk(0xDD)
	h.register(x)
	h.full("1", 0, nil, nil)
	r := h.cycle()
	if len(r.Eligible) != 1 || r.Eligible[0] != x {
		t.Fatalf("%+v", r)
	}
	h.wantStatus(x, StatusMarked)
}

func TestSeedPinnedBlobNotCollected(t *testing.T) {
	cfg := DefaultConfig()
	cfg.GracePeriod = 0
	h := newHarness(t, cfg)
	x := mk(0xEE)
	h.register(x)
	h.pin(x)
	h.full("1", 0, nil, nil)
	r := h.cycle()
	if len(r.Eligible) != 0 || r.PinnedCount != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestSeedCollectionHistory(t *testing.T) {
	cfg := DefaultConfig()
	cfg.GracePeriod = 0
	h := newHarness(t, cfg)
	h.register(mk(1))
	h.full("1", 0, nil, nil)
	if ev, _ := h.f.History(0, 0); len(ev) != 0 {
		t.Fatalf("history %+v", ev)
	}
	h.cycle()
	ev, more := h.f.History(0, 0)
	if len(ev) != 1 || more || ev[0].EligibleCount != 1 || len(ev[0].NewlyMarked) != 1 || ev[0].Seq != 1 {
		t.Fatalf("history %+v", ev)
	}
}

// The seed's grace period: a blob is marked only once it has been
// unreferenced for the whole grace period, counted from the first cycle
// that saw it unreferenced.
func TestSeedGracePeriodFromFirstUnreferencedCycle(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	x := mk(7)
	h.register(x)
	h.full("n", 0, nil, nil)
	h.advance(time.Minute)
	if r := h.cycle(); len(r.Eligible) != 0 || r.UnreferencedCount != 1 {
		t.Fatalf("%+v", r)
	}
	since := h.f.Blob(x).Since
	if since != h.now {
		t.Fatalf("since %d, want %d", since, h.now)
	}
	h.full("n", 1, nil, nil) // keep the node fresh
	h.advance(5*time.Minute - 1)
	if r := h.cycle(); len(r.Eligible) != 0 {
		t.Fatalf("eligible before grace: %+v", r)
	}
	h.advance(1)
	if r := h.cycle(); len(r.Eligible) != 1 || len(r.NewlyMarked) != 1 {
		t.Fatalf("not eligible at grace: %+v", r)
	}
	// A marked blob stays eligible in every later cycle.
	if r := h.cycle(); len(r.Eligible) != 1 || len(r.NewlyMarked) != 0 {
		t.Fatalf("%+v", r)
	}
	// A marked blob that is referenced again becomes ACTIVE at the next cycle.
	h.full("n", 2, []Hash{x}, nil)
	h.wantStatus(x, StatusMarked)
	if r := h.cycle(); len(r.Eligible) != 0 || r.ActiveCount != 1 {
		t.Fatalf("%+v", r)
	}
	h.wantStatus(x, StatusActive)
}

// The seed drops stale reports at the start of a cycle.
func TestSeedStaleReportsDropped(t *testing.T) {
	cfg := DefaultConfig()
	cfg.GracePeriod = 0
	h := newHarness(t, cfg)
	x := mk(1)
	h.register(x)
	h.full("old", 0, []Hash{x}, nil)
	h.advance(10 * time.Minute)
	h.full("new", 0, nil, nil)
	r := h.cycle()
	if len(r.StaleNodes) != 1 || r.StaleNodes[0] != "old" || r.NodesReporting != 1 {
		t.Fatalf("%+v", r)
	}
	if len(r.Eligible) != 1 {
		t.Fatalf("blob of a stale node still protected: %+v", r)
	}
	if _, ok := h.f.NodeSeq("old"); ok {
		t.Fatal("stale node kept")
	}
}

func TestSeedPruneStaleNodes(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.full("b", 0, nil, nil)
	h.full("a", 0, nil, nil)
	h.advance(5 * time.Minute)
	h.full("c", 0, nil, nil)
	h.advance(5 * time.Minute)
	r := h.ok(&fsmpb.PruneStaleNodes{})
	if len(r.Pruned) != 2 || r.Pruned[0] != "a" || r.Pruned[1] != "b" {
		t.Fatalf("pruned %v", r.Pruned)
	}
	if n := h.f.Nodes(); len(n) != 1 || n[0].ID != "c" {
		t.Fatalf("nodes %+v", n)
	}
}
