package fsm

import (
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/blobgc/blobgc/fsm/fsmpb"
	"github.com/hashicorp/raft"
)

// A cycle over a dirty list long enough to be walked grouped by shard
// (byShard) gives the same result, statuses and digest on a server restored
// from a snapshot taken just before it, whose dirty list is rebuilt in
// another order, also when the cycle drops a stale node and so lists more
// blobs dirty while it commits. A second cycle then finds nothing left
// dirty on either.
func TestLargeCycleDoesNotDependOnDirtyOrder(t *testing.T) {
	cfg := DefaultConfig()
	cfg.GracePeriod = 0
	h := newHarness(t, cfg)
	hs := make([]Hash, 30_000)
	for i := range hs {
		hs[i] = hn(uint64(i))
	}
	h.register(hs[:20_000]...)
	h.full("old", 1, hs[:6_000], hs[6_000:7_000])
	if r := h.cycle(); r.UnreferencedCount != 0 || len(r.NewlyMarked) != 13_000 {
		t.Fatalf("first cycle: %d unreferenced, %d marked", r.UnreferencedCount, len(r.NewlyMarked))
	}
	h.advance(cfg.StaleThreshold + time.Minute)
	h.full("new", 1, hs[5_000:9_000], nil)
	h.register(hs[20_000:]...)
	if n := h.f.st.dirty.len(); n < 1<<12 {
		t.Fatalf("%d dirty blobs: too few to be grouped by shard", n)
	}

	g := New()
	if err := restoreBytes(g, snapBytes(t, h.f)); err != nil {
		t.Fatal(err)
	}
	h2 := &harness{t: t, f: g, idx: h.idx, now: h.now, by: h.by}
	r1, r2 := h.cycle(), h2.cycle()
	if !reflect.DeepEqual(r1, r2) {
		t.Fatalf("cycle results differ:\n%+v\n%+v", r1, r2)
	}
	if len(r1.StaleNodes) != 1 || r1.ActiveCount != 4_000 {
		t.Fatalf("the cycle did not drop the stale node: %+v", r1)
	}
	for _, x := range hs {
		if a, b := h.status(x), h2.status(x); a != b {
			t.Fatalf("status of %s: %v live, %v restored", x.String()[:8], a, b)
		}
	}
	_, d1 := h.f.Digest()
	_, d2 := g.Digest()
	if _, re := h.f.RecomputeDigest(); d1 != d2 || d1 != re {
		t.Fatal("digests differ after the cycle")
	}
	for _, f := range []*FSM{h.f, g} {
		if n := f.st.dirty.len(); n != 0 {
			t.Fatalf("%d blobs still listed dirty", n)
		}
		for _, x := range hs {
			if id, ok := f.st.tab.lookup(&x); ok && f.st.tab.get(id).flags&flagDirty != 0 {
				t.Fatalf("blob %s keeps the dirty flag off the list", x.String()[:8])
			}
		}
	}
}

// The first cycle after a bulk registration plans every blob, and in a
// cluster fresh memory is most of what that cycle costs. Its lists stay at a
// few bytes a blob: the dirty list grouped by shard and the ids that turn
// UNREFERENCED, which become the FIFO's run (94 bytes a blob when the FIFO
// held 16-byte items and planned changes were 24 bytes).
func TestFirstCycleAllocatesLittlePerBlob(t *testing.T) {
	const known = 1_000_000
	f, _ := benchRegistered(known)
	cmd, err := Encode(NewCommand(1, 0, &fsmpb.RunCycle{}))
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := f.Apply(&raft.Log{Index: f.st.applied + 1, Type: raft.LogCommand, Data: cmd}).(*Result)
	runtime.ReadMemStats(&after)
	if r.Err != nil || r.Cycle == nil || r.Cycle.UnreferencedCount != known/2 {
		t.Fatalf("first cycle: %+v", r)
	}
	if per := float64(after.TotalAlloc-before.TotalAlloc) / known; per > 32 {
		t.Fatalf("the first cycle allocated %.1f bytes a blob, want at most 32", per)
	}
}

// IdleCycle answers at once when blobs are dirty: on the leader it runs
// before every RunCycle call is proposed, and planning the first cycle
// after a bulk registration there would cost as much as the cycle itself.
func TestIdleCycleDoesNotPlanADirtyList(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	hs := make([]Hash, 10_000)
	for i := range hs {
		hs[i] = hn(uint64(i))
	}
	h.full("vm", 1, hs[:10], nil) // min_nodes_reporting
	h.register(hs...)
	if allocs := testing.AllocsPerRun(5, func() {
		if _, idle := h.f.IdleCycle(h.now); idle {
			t.Fatal("a cycle after a registration called idle")
		}
	}); allocs != 0 {
		t.Fatalf("IdleCycle with %d dirty blobs made %.0f allocations: it planned the cycle", len(hs), allocs)
	}
	h.cycle()
	if _, idle := h.f.IdleCycle(h.now); !idle {
		t.Fatal("a cycle right after a cycle is not idle")
	}
}

// A cycle that drops a stale node plans its changes in one order, not in a
// map's: the ids that turn UNREFERENCED become that cycle's FIFO run.
func TestStaleDropPlansInOneOrder(t *testing.T) {
	cfg := DefaultConfig()
	h := newHarness(t, cfg)
	hs := make([]Hash, 2_000)
	for i := range hs {
		hs[i] = hn(uint64(i))
	}
	h.register(hs...)
	h.full("gone", 1, hs[:1_000], hs[1_000:])
	h.cycle()
	h.advance(cfg.StaleThreshold + time.Minute)
	h.full("fresh", 1, nil, nil) // min_nodes_reporting
	first := h.f.st.plan(h.now)
	if len(first.stale) != 1 || len(first.newUnref) != 2_000 {
		t.Fatalf("the plan drops %v and makes %d blobs UNREFERENCED, want [gone] and 2000", first.stale, len(first.newUnref))
	}
	for range 5 {
		if again := h.f.st.plan(h.now); !slices.Equal(again.newUnref, first.newUnref) {
			t.Fatal("two plans of one state list the stale node's blobs in different orders")
		}
	}
}
