package fsm

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blobgc/blobgc/fsm/fsmpb"
)

func zeroGrace() Config {
	c := DefaultConfig()
	c.GracePeriod = 0
	return c
}

// Deliberately different 1: a node pin lasts only while a live report
// carries it (the seed kept any blob once PINNED pinned for ever).
func TestDiffNodePinLastsOnlyWhileReported(t *testing.T) {
	h := newHarness(t, zeroGrace())
	x := mk(1)
	h.register(x)
	h.full("n", 1, nil, []Hash{x})
	if r := h.cycle(); r.PinnedCount != 1 {
		t.Fatalf("%+v", r)
	}
	if b := h.f.Blob(x); b.Status != StatusPinned || b.CoordinatorPin || !slices.Equal(b.PinnedBy, []string{"n"}) {
		t.Fatalf("%+v", b)
	}
	h.full("n", 2, nil, nil) // the node no longer pins it
	r := h.cycle()
	if r.PinnedCount != 0 || len(r.NewlyMarked) != 1 || r.NewlyMarked[0] != x {
		t.Fatalf("node pin outlived its report: %+v", r)
	}
	// A coordinator pin is independent of node pins and survives reports.
	y := mk(2)
	h.register(y)
	h.pin(y)
	h.full("n", 3, nil, []Hash{y})
	h.full("n", 4, nil, nil)
	if r := h.cycle(); r.PinnedCount != 1 {
		t.Fatalf("%+v", r)
	}
	h.wantStatus(y, StatusPinned)
	// Unpinning the coordinator pin while a node still pins keeps it PINNED.
	h.full("n", 5, nil, []Hash{y})
	h.unpin(y)
	h.wantStatus(y, StatusPinned)
	if b := h.f.Blob(y); b.CoordinatorPin {
		t.Fatal("coordinator pin still set")
	}
}

// Deliberately different 2: no clock; time comes from the commands and never
// goes backwards, so a proposer whose clock is behind cannot shorten the
// grace period, and one that is ahead moves it only forward.
func TestDiffClusterTimeFromCommands(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	x := mk(1)
	h.register(x)
	h.now = int64(time.Hour)
	h.full("n", 1, nil, nil)
	h.cycle() // x UNREFERENCED since 1h
	if got := h.f.Blob(x).Since; got != int64(time.Hour) {
		t.Fatalf("since %d", got)
	}
	// A leader whose clock reads earlier stamps an earlier time: ignored.
	h.now = int64(time.Minute)
	h.full("n", 2, nil, nil)
	if r := h.cycle(); len(r.Eligible) != 0 || r.Time != int64(time.Hour) {
		t.Fatalf("%+v", r)
	}
	if h.f.ClusterTime() != int64(time.Hour) {
		t.Fatalf("cluster time went backwards: %d", h.f.ClusterTime())
	}
	h.now = int64(time.Hour + 5*time.Minute)
	h.full("n", 3, nil, nil)
	if r := h.cycle(); len(r.Eligible) != 1 {
		t.Fatalf("%+v", r)
	}
	if n := h.f.Nodes(); n[0].LastReport != int64(time.Hour+5*time.Minute) || n[0].LastWall != h.now+1_000_000 {
		t.Fatalf("%+v", n)
	}
}

// Deliberately different 3: outputs are sorted, whatever the input order.
func TestDiffOutputsSorted(t *testing.T) {
	h := newHarness(t, zeroGrace())
	var hs []Hash
	for i := uint64(0); i < 200; i++ {
		hs = append(hs, hn(i))
	}
	h.register(hs...)
	for _, id := range []string{"z", "m", "a", "q"} {
		h.full(id, 1, nil, nil)
	}
	h.advance(20 * time.Minute)
	h.full("k", 1, nil, nil)
	r := h.cycle()
	sorted := slices.Clone(hs)
	sortHashes(sorted)
	if !hashesEqual(r.Eligible, sorted) || !hashesEqual(r.NewlyMarked, sorted) {
		t.Fatal("eligible not sorted by hash")
	}
	if !slices.Equal(r.StaleNodes, []string{"a", "m", "q", "z"}) {
		t.Fatalf("stale %v", r.StaleNodes)
	}
	rev := slices.Clone(hs)
	slices.Reverse(rev)
	if got := h.claim(rev...); !hashesEqual(got, sorted) {
		t.Fatal("claimed not sorted")
	}
}

// Deliberately different 4: a cycle visits what changed, not every known
// blob.
func TestDiffCycleVisitsOnlyChanges(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	var hs []Hash
	for i := uint64(0); i < 5000; i++ {
		hs = append(hs, hn(i))
	}
	h.register(hs...)
	h.full("n", 1, hs[:2500], nil)
	h.cycle()
	s := h.f.st
	if s.dirty.len() != 0 {
		t.Fatalf("dirty after cycle: %d", s.dirty.len())
	}
	// Ten blobs change; the next cycle plans exactly those ten.
	h.delta("n", 2, hs[2500:2505], hs[:5], nil, nil)
	if s.dirty.len() != 10 {
		t.Fatalf("dirty %d, want 10", s.dirty.len())
	}
	p := s.plan(h.now)
	if len(p.changes) != 5 || len(p.newUnref) != 5 {
		t.Fatalf("planned %d changes and %d new UNREFERENCED, want 5 and 5", len(p.changes), len(p.newUnref))
	}
	h.cycle()
	h.wantStatus(hs[0], StatusUnreferenced)
	h.wantStatus(hs[2500], StatusActive)
}

// Deliberately different 5: collected blobs are forgotten (bounded
// tombstones), history is bounded, and a report naming a collected blob is
// a dangling reference.
func TestDiffBoundedStateAndDangling(t *testing.T) {
	cfg := zeroGrace()
	cfg.TombstoneLimit = 2
	cfg.HistoryLimit = 3
	h := newHarness(t, cfg)
	xs := []Hash{mk(1), mk(2), mk(3)}
	h.register(xs...)
	h.full("n", 1, nil, nil)
	h.cycle()
	if got := h.claim(xs...); len(got) != 3 {
		t.Fatalf("claimed %d", len(got))
	}
	h.confirm(xs[0])
	h.confirm(xs[2], xs[1])
	// Limit 2: the oldest tombstone (xs[0]) is forgotten.
	h.wantStatus(xs[0], StatusNotFound)
	h.wantStatus(xs[1], StatusCollected)
	h.wantStatus(xs[2], StatusCollected)
	if c := h.f.Counts(); c.Collected != 2 || c.Known != 0 {
		t.Fatalf("%+v", c)
	}
	for i := 0; i < 5; i++ {
		h.register(mk(byte(10 + i)))
		h.cycle()
	}
	ev, more := h.f.History(0, 0)
	if len(ev) != 3 || more || ev[0].Seq != 4 {
		t.Fatalf("history %+v", ev)
	}
	// Dangling: a live report names a COLLECTED blob.
	h.full("n", 2, []Hash{xs[1]}, nil)
	if b := h.f.Blob(xs[1]); !b.Dangling || b.Status != StatusCollected || !slices.Equal(b.ReferencedBy, []string{"n"}) {
		t.Fatalf("%+v", b)
	}
	if c := h.f.Counts(); c.DanglingRefs != 1 {
		t.Fatalf("%+v", c)
	}
	h.full("n", 3, nil, nil)
	if c := h.f.Counts(); c.DanglingRefs != 0 {
		t.Fatalf("%+v", c)
	}
}

func TestStalePolicyDropAndHold(t *testing.T) {
	for _, pol := range []StalePolicy{StaleDrop, StaleHold} {
		t.Run(pol.String(), func(t *testing.T) {
			cfg := zeroGrace()
			cfg.StalePolicy = pol
			h := newHarness(t, cfg)
			x := mk(1)
			h.register(x)
			h.full("old", 1, []Hash{x}, nil)
			h.advance(10 * time.Minute)
			h.full("live", 1, nil, nil)
			r := h.cycle()
			if !slices.Equal(r.StaleNodes, []string{"old"}) {
				t.Fatalf("%+v", r)
			}
			if c := h.f.Counts(); c.NodesStale != boolInt(pol == StaleHold) {
				t.Fatalf("%+v", c)
			}
			switch pol {
			case StaleDrop:
				if len(r.Eligible) != 1 || r.NodesReporting != 1 {
					t.Fatalf("drop: %+v", r)
				}
			case StaleHold:
				if len(r.Eligible) != 0 || r.ActiveCount != 1 || r.NodesReporting != 1 {
					t.Fatalf("hold: %+v", r)
				}
				// A held stale node does not count toward min_nodes_reporting.
				two := int64(2)
				h.ok(&fsmpb.SetConfig{MinNodesReporting: &two})
				if r := h.cycle(); r.Skipped != "below min_nodes_reporting" {
					t.Fatalf("held node counted as reporting: %+v", r)
				}
				one := int64(1)
				h.ok(&fsmpb.SetConfig{MinNodesReporting: &one})
				if p := h.ok(&fsmpb.PruneStaleNodes{}).Pruned; len(p) != 0 {
					t.Fatalf("hold pruned %v", p)
				}
				h.wantStatus(x, StatusActive)
				// Deregistering the node ends the hold.
				h.ok(&fsmpb.DeregisterNode{NodeId: "old"})
				if r := h.cycle(); len(r.Eligible) != 1 {
					t.Fatalf("after deregister: %+v", r)
				}
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestMaxEligibleFraction(t *testing.T) {
	cfg := zeroGrace()
	cfg.MaxEligibleFraction = 0.5
	h := newHarness(t, cfg)
	var hs []Hash
	for i := uint64(0); i < 10; i++ {
		hs = append(hs, hn(i))
	}
	h.register(hs...)
	h.full("n", 1, hs, nil)
	h.cycle()
	// The VM restarts with an empty set: 10 of 10 would be newly marked.
	h.full("n", 2, nil, nil)
	r := h.cycle()
	if len(r.NewlyMarked) != 0 || len(r.Eligible) != 0 || !strings.HasPrefix(r.Skipped, "max_eligible_fraction exceeded: 10 newly eligible of 10 known") {
		t.Fatalf("%+v", r)
	}
	ev, _ := h.f.History(0, 0)
	if len(ev) != 1 || ev[0].Skipped != r.Skipped || len(ev[0].NewlyMarked) != 0 {
		t.Fatalf("history %+v", ev)
	}
	h.wantStatus(hs[0], StatusUnreferenced)
	// Half of them referenced again: 5 of 10 is within the fraction.
	h.full("n", 3, hs[5:], nil)
	r = h.cycle()
	if r.Skipped != "" || len(r.NewlyMarked) != 5 {
		t.Fatalf("%+v", r)
	}
	// Raising the fraction lets the rest through.
	f := 1.0
	h.ok(&fsmpb.SetConfig{MaxEligibleFraction: &f})
	h.full("n", 4, nil, nil)
	if r := h.cycle(); len(r.Eligible) != 10 {
		t.Fatalf("%+v", r)
	}
}

func TestClaimAndConfirm(t *testing.T) {
	h := newHarness(t, zeroGrace())
	x, y, z := mk(1), mk(2), mk(3)
	h.register(x, y, z)
	h.full("n", 1, []Hash{z}, nil)
	h.cycle()
	// Only MARKED blobs are granted; unknown and active ones are not.
	got := h.claim(z, mk(9), y, x)
	if !hashesEqual(got, []Hash{x, y}) {
		t.Fatalf("claimed %s", short(got))
	}
	h.wantStatus(x, StatusDeleting)
	// Idempotent: claiming again grants again.
	if got := h.claim(x); !hashesEqual(got, []Hash{x}) {
		t.Fatalf("reclaim %s", short(got))
	}
	// A DELETING blob is not eligible and cycles leave it alone.
	if r := h.cycle(); len(r.Eligible) != 0 {
		t.Fatalf("%+v", r)
	}
	// Pin of a DELETING blob is refused and changes nothing.
	r := h.pin(x, z)
	if r.Err == nil || r.Err.Code != CodeFailedPrecondition {
		t.Fatalf("%+v", r)
	}
	if h.f.Blob(z).CoordinatorPin {
		t.Fatal("refused pin changed state")
	}
	// Confirm of a non-DELETING blob is ignored; of a DELETING one tombstones it.
	if c := h.confirm(z, x).Changed; c != 1 {
		t.Fatalf("changed %d", c)
	}
	h.wantStatus(x, StatusCollected)
	h.wantStatus(z, StatusActive)
	if r := h.pin(x); r.Err == nil || r.Err.Code != CodeFailedPrecondition {
		t.Fatalf("pin of collected: %+v", r)
	}
	if got := h.claim(x); len(got) != 0 {
		t.Fatal("collected blob granted")
	}
	// Re-upload: registering a COLLECTED blob removes the tombstone.
	h.register(x)
	h.wantStatus(x, StatusActive)
	if c := h.f.Counts(); c.Collected != 0 || c.Deleting != 1 {
		t.Fatalf("%+v", c)
	}
}

// DESIGN "Sweeping": a blob referenced or pinned after it was marked but
// before the claim is not granted, and the next cycle makes it live again.
func TestReferencedAfterMarkedBeforeClaim(t *testing.T) {
	for _, how := range []string{"reference", "node-pin", "coordinator-pin"} {
		t.Run(how, func(t *testing.T) {
			h := newHarness(t, zeroGrace())
			x := mk(1)
			h.register(x)
			h.full("n", 1, nil, nil)
			if r := h.cycle(); len(r.NewlyMarked) != 1 {
				t.Fatalf("%+v", r)
			}
			want := StatusActive
			switch how {
			case "reference":
				h.delta("n", 2, []Hash{x}, nil, nil, nil)
			case "node-pin":
				h.delta("n", 2, nil, nil, []Hash{x}, nil)
				want = StatusPinned
			case "coordinator-pin":
				h.pin(x)
				want = StatusPinned
			}
			if how != "coordinator-pin" {
				h.wantStatus(x, StatusMarked) // statuses move only at cycles
			}
			if got := h.claim(x); len(got) != 0 {
				t.Fatal("claim granted a blob referenced after marking")
			}
			h.cycle()
			h.wantStatus(x, want)
		})
	}
}

func TestDeltaSequence(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	x, y := mk(1), mk(2)
	r := h.delta("n", 1, []Hash{x}, nil, nil, nil)
	if r.Err == nil || r.Err.Code != CodeFailedPrecondition || !strings.Contains(r.Err.Message, "send a full report") {
		t.Fatalf("delta without full: %+v", r)
	}
	h.full("n", 10, []Hash{x}, nil)
	if r := h.delta("n", 11, []Hash{y}, []Hash{x}, nil, nil); r.Err != nil || r.Duplicate || r.Changed != 2 {
		t.Fatalf("%+v", r)
	}
	if r := h.delta("n", 11, []Hash{x}, nil, nil, nil); r.Err != nil || !r.Duplicate {
		t.Fatalf("duplicate not ignored: %+v", r)
	}
	if b := h.f.Blob(x); len(b.ReferencedBy) != 0 {
		t.Fatal("duplicate delta applied")
	}
	r = h.delta("n", 13, []Hash{x}, nil, nil, nil)
	if r.Err == nil || r.Err.Code != CodeFailedPrecondition || !strings.Contains(r.Err.Message, "gap, send a full report") {
		t.Fatalf("gap: %+v", r)
	}
	if seq, ok := h.f.NodeSeq("n"); !ok || seq != 11 {
		t.Fatalf("seq %d %v", seq, ok)
	}
	// A full report older than the node's seq is refused; the same seq is a
	// harmless retry.
	if r := h.full("n", 5, nil, nil); r.Err == nil || r.Err.Code != CodeFailedPrecondition {
		t.Fatalf("%+v", r)
	}
	if r := h.full("n", 11, []Hash{y}, nil); r.Err != nil {
		t.Fatal(r.Err)
	}
	// Removed and added in one delta: present afterwards.
	h.delta("n", 12, []Hash{x}, []Hash{x}, nil, nil)
	if b := h.f.Blob(x); !slices.Equal(b.ReferencedBy, []string{"n"}) {
		t.Fatalf("%+v", b)
	}
}

func chunk(node string, seq, id uint64, idx uint32, last bool, active []Hash) *fsmpb.Report {
	return &fsmpb.Report{NodeId: node, Kind: fsmpb.ReportKind_REPORT_KIND_CHUNK, Seq: seq, ReportId: id, ChunkIndex: idx, LastChunk: last, Active: PackHashes(active)}
}

// A chunked full report is staged; no cycle sees half of it.
func TestChunkedReportSwapsAtomically(t *testing.T) {
	h := newHarness(t, zeroGrace())
	a, b, c := mk(1), mk(2), mk(3)
	h.register(a, b, c)
	h.full("n", 1, []Hash{a, b, c}, nil)
	h.cycle()
	// New full report {a, c} in two chunks; between them the old sets hold.
	h.ok(chunk("n", 2, 7, 0, false, []Hash{a}))
	if r := h.cycle(); r.ActiveCount != 3 {
		t.Fatalf("a cycle saw half a report: %+v", r)
	}
	if r := h.apply(chunk("n", 2, 7, 0, false, []Hash{a})); !r.Duplicate || r.Err != nil {
		t.Fatalf("retried chunk: %+v", r)
	}
	if r := h.apply(chunk("n", 2, 7, 2, true, []Hash{c})); r.Err == nil || r.Err.Code != CodeFailedPrecondition {
		t.Fatalf("chunk gap: %+v", r)
	}
	h.ok(chunk("n", 2, 7, 1, true, []Hash{c}))
	if r := h.apply(chunk("n", 2, 7, 1, true, []Hash{c})); !r.Duplicate || r.Err != nil {
		t.Fatalf("retried last chunk: %+v", r)
	}
	r := h.cycle()
	if r.ActiveCount != 2 || !hashesEqual(r.NewlyMarked, []Hash{b}) {
		t.Fatalf("%+v", r)
	}
	if seq, _ := h.f.NodeSeq("n"); seq != 2 {
		t.Fatalf("seq %d", seq)
	}
	// A new report id discards the stage; a chunk > 0 of an unknown report
	// is refused.
	h.ok(chunk("n", 3, 8, 0, false, []Hash{b}))
	h.ok(chunk("n", 3, 9, 0, false, []Hash{c}))
	if r := h.apply(chunk("n", 3, 8, 1, true, nil)); r.Err == nil {
		t.Fatalf("discarded stage continued: %+v", r)
	}
	h.ok(chunk("n", 3, 9, 1, true, []Hash{a}))
	if b := h.f.Blob(b); len(b.ReferencedBy) != 0 {
		t.Fatal("discarded chunk applied")
	}
	if n := h.f.Nodes(); n[0].Active != 2 {
		t.Fatalf("%+v", n)
	}
}

func TestUnregisteredReportedBlobsAreTrackedWhenRegistered(t *testing.T) {
	h := newHarness(t, zeroGrace())
	x, y := mk(1), mk(2)
	h.full("n", 1, []Hash{x}, []Hash{y})
	if r := h.cycle(); r.ActiveCount != 0 || r.PinnedCount != 0 || len(r.Eligible) != 0 {
		t.Fatalf("unregistered blobs counted as known: %+v", r)
	}
	if b := h.f.Blob(x); b.Status != StatusNotFound || !slices.Equal(b.ReferencedBy, []string{"n"}) {
		t.Fatalf("%+v", b)
	}
	h.register(x, y)
	r := h.cycle()
	if r.ActiveCount != 1 || r.PinnedCount != 1 {
		t.Fatalf("%+v", r)
	}
	if b := h.f.Blob(x); !b.Registered {
		t.Fatalf("%+v", b)
	}
	// A pin of an unknown blob makes it known but not registered (seed).
	z := mk(3)
	h.pin(z)
	if b := h.f.Blob(z); b.Status != StatusPinned || b.Registered || !b.CoordinatorPin {
		t.Fatalf("%+v", b)
	}
}

func TestSetConfigValidation(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	for _, sc := range []*fsmpb.SetConfig{
		{GracePeriodNs: ptr(int64(-1))},
		{StaleThresholdNs: ptr(int64(0))},
		{MinNodesReporting: ptr(int64(-1))},
		{HistoryLimit: ptr(int64(0))},
		{TombstoneLimit: ptr(int64(-5))},
		{MaxEligibleFraction: ptr(0.0)},
		{MaxEligibleFraction: ptr(1.5)},
		{StalePolicy: 7},
		{MaxNodes: ptr(int64(0))},
		{MaxNodes: ptr(int64(MaxMaxNodes + 1))},
		{MaxStagedHashesPerNode: ptr(int64(0))},
		{MaxStagedHashes: ptr(int64(MaxStagedHashes + 1))},
		{},
	} {
		r := h.apply(sc)
		if r.Err == nil || r.Err.Code != CodeInvalidArgument {
			t.Fatalf("%v accepted: %+v", sc, r)
		}
		if err := ValidateCommand(NewCommand(0, 0, sc)); err == nil {
			t.Fatalf("ValidateCommand accepted %v", sc)
		}
	}
	if h.f.Config() != DefaultConfig() {
		t.Fatal("refused config changed state")
	}
	cfg := Config{GracePeriod: time.Second, StaleThreshold: time.Minute, MinNodesReporting: 3, HistoryLimit: 5,
		TombstoneLimit: 7, StalePolicy: StaleHold, MaxEligibleFraction: 0.25,
		MaxNodes: 9, MaxStagedHashesPerNode: 10, MaxStagedHashesTotal: 11}
	h.ok(cfg.SetConfigCommand())
	if h.f.Config() != cfg {
		t.Fatalf("%+v", h.f.Config())
	}
	g := int64(2 * time.Second)
	h.ok(&fsmpb.SetConfig{GracePeriodNs: &g})
	cfg.GracePeriod = 2 * time.Second
	if h.f.Config() != cfg {
		t.Fatalf("partial update: %+v", h.f.Config())
	}
}

func ptr[T any](v T) *T { return &v }

func TestMinNodesReportingZeroCounts(t *testing.T) {
	cfg := zeroGrace()
	cfg.MinNodesReporting = 0
	h := newHarness(t, cfg)
	h.register(mk(1))
	// No node at all and min 0: the cycle runs.
	if r := h.cycle(); len(r.Eligible) != 1 {
		t.Fatalf("%+v", r)
	}
}

// A blob that is dirty, then collected and forgotten before the next cycle,
// frees its entry while its id is still in the dirty list; a new blob that
// reuses the entry must be visited exactly once by that cycle.
func TestRecycledEntryStillListedDirty(t *testing.T) {
	cfg := zeroGrace()
	cfg.TombstoneLimit = 0
	h := newHarness(t, cfg)
	x, y := mk(1), mk(1)
	y[31] = 2 // same shard as x
	h.register(x)
	h.full("n", 1, nil, nil)
	h.cycle()
	h.wantStatus(x, StatusMarked)
	h.delta("n", 2, []Hash{x}, nil, nil, nil) // x dirty
	h.delta("n", 3, nil, []Hash{x}, nil, nil)
	if got := h.claim(x); len(got) != 1 {
		t.Fatal("not granted")
	}
	h.confirm(x) // tombstone limit 0: forgotten at once, entry freed
	h.wantStatus(x, StatusNotFound)
	h.register(y) // reuses x's entry
	idY, _ := h.f.st.tab.lookup(&y)
	if ids := slices.Collect(h.f.st.dirty.from(0)); len(ids) != 1 || ids[0] != idY {
		t.Fatalf("dirty list %v, want just %d", ids, idY)
	}
	r := h.cycle()
	if r.ActiveCount != 0 || r.UnreferencedCount != 0 || !hashesEqual(r.NewlyMarked, []Hash{y}) {
		t.Fatalf("%+v", r)
	}
	if c := h.f.Counts(); c.Marked != 1 || c.Known != 1 || c.Active != 0 {
		t.Fatalf("%+v", c)
	}
}
