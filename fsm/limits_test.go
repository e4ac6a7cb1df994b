package fsm

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blobgc/blobgc/fsm/fsmpb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// unchangedBy applies op as a log entry (not validated before, as a hostile
// or corrupted entry would not be) and checks that it changed nothing but
// the applied index: the state equals a copy that applied a no-op entry
// instead.
func unchangedBy(t *testing.T, h *harness, what string, op any) *Result {
	t.Helper()
	ref := New()
	if err := restoreBytes(ref, snapBytes(t, h.f)); err != nil {
		t.Fatal(err)
	}
	cmd := NewCommand(h.now, h.now+1_000_000, op)
	cmd.Principal = h.by
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	h.idx++
	r := h.f.Apply(&raft.Log{Index: h.idx, Type: raft.LogCommand, Data: data}).(*Result)
	ref.Apply(&raft.Log{Index: h.idx, Type: raft.LogNoop})
	_, got := h.f.Digest()
	if _, want := ref.Digest(); got != want {
		t.Fatalf("%s changed the state", what)
	}
	return r
}

func TestProvenanceRecorded(t *testing.T) {
	h := newHarness(t, zeroGrace())
	x, y := mk(1), mk(2)
	h.by = "operator:olga"
	h.register(x, y)
	h.pin(y)
	h.by = "operator:other"
	h.pin(y) // already pinned: the first pinner stays
	if p := h.f.Blob(y).Provenance; p.CoordinatorPinnedBy != "operator:olga" {
		t.Fatalf("pin provenance %+v", p)
	}
	h.unpin(y)
	if p := h.f.Blob(y).Provenance; p != (Provenance{}) {
		t.Fatalf("unpinned blob keeps provenance %+v", p)
	}
	h.full("vm-1", 1, []Hash{y}, nil)
	h.by = SchedulerPrincipal
	h.cycle()
	h.by = "operator:olga"
	h.ok(&fsmpb.RunCycle{RequestId: "manual-1"})
	h.advance(time.Second)
	h.by = "sweeper:s1"
	claimedAt := h.now
	if got := h.claim(x); len(got) != 1 {
		t.Fatalf("claim granted %v", got)
	}
	h.advance(time.Second)
	h.by = "sweeper:s2"
	h.claim(x) // a retried claim keeps the first claimant
	h.confirm(x)
	want := Provenance{ClaimedBy: "sweeper:s1", ClaimedAt: claimedAt, ConfirmedBy: "sweeper:s2", ConfirmedAt: h.now}
	if b := h.f.Blob(x); b.Status != StatusCollected || b.Provenance != want {
		t.Fatalf("tombstone %v %+v, want %+v", b.Status, b.Provenance, want)
	}
	h.by = "admin:ada"
	h.ok(&fsmpb.SetConfig{MinNodesReporting: ptr(int64(0))})
	if c := h.f.Config(); c.SetBy != "admin:ada" {
		t.Fatalf("config set by %q", c.SetBy)
	}
	ev, _ := h.f.History(0, 10)
	if len(ev) != 2 || ev[0].RunBy != SchedulerPrincipal || ev[1].RunBy != "operator:olga" {
		t.Fatalf("history %+v", ev)
	}
	// Kept across a snapshot.
	g := New()
	if err := restoreBytes(g, snapBytes(t, h.f)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g.Blob(x), h.f.Blob(x)) || g.Config() != h.f.Config() {
		t.Fatal("provenance lost in the snapshot")
	}
	if gev, _ := g.History(0, 10); !reflect.DeepEqual(gev, ev) {
		t.Fatal("history run_by lost in the snapshot")
	}
	// A re-upload starts afresh; a forgotten tombstone takes its record along.
	h.register(x)
	if p := h.f.Blob(x).Provenance; p != (Provenance{}) {
		t.Fatalf("re-registered blob keeps provenance %+v", p)
	}
	h.cycle()
	h.claim(x)
	h.ok(&fsmpb.SetConfig{TombstoneLimit: ptr(int64(0))})
	h.confirm(x)
	if b := h.f.Blob(x); b.Status != StatusNotFound || b.Provenance != (Provenance{}) || h.f.st.prov.Len() != 0 {
		t.Fatalf("forgotten tombstone: %+v, %d records", b, h.f.st.prov.Len())
	}
}

func TestCycleRequestIDRunsOnce(t *testing.T) {
	cfg := zeroGrace()
	cfg.MinNodesReporting = 0
	h := newHarness(t, cfg)
	x := mk(1)
	h.register(x)
	first := h.ok(&fsmpb.RunCycle{RequestId: "call-1"})
	if first.Duplicate || len(first.Cycle.NewlyMarked) != 1 {
		t.Fatalf("first run %+v", first.Cycle)
	}
	h.register(mk(2))
	h.advance(time.Second)
	retry := h.ok(&fsmpb.RunCycle{RequestId: "call-1"})
	if !retry.Duplicate || retry.Cycle.Time != first.Cycle.Time || !hashesEqual(retry.Cycle.NewlyMarked, first.Cycle.NewlyMarked) {
		t.Fatalf("retry %+v, first %+v", retry.Cycle, first.Cycle)
	}
	if h.status(mk(2)) != StatusActive {
		t.Fatal("the retry ran a cycle")
	}
	if ev, _ := h.f.History(0, 10); len(ev) != 1 {
		t.Fatalf("%d history events after a retry", len(ev))
	}
	// Remembered across a snapshot.
	g := New()
	if err := restoreBytes(g, snapBytes(t, h.f)); err != nil {
		t.Fatal(err)
	}
	h.f = g
	if r := h.ok(&fsmpb.RunCycle{RequestId: "call-1"}); !r.Duplicate {
		t.Fatal("request id forgotten by the snapshot")
	}
	// Another id runs; ids beyond the window are forgotten.
	if r := h.ok(&fsmpb.RunCycle{RequestId: "call-2"}); r.Duplicate || h.status(mk(2)) != StatusMarked {
		t.Fatalf("a new request id did not run: %+v", r)
	}
	for i := 0; i < CycleRequestWindow; i++ {
		h.ok(&fsmpb.RunCycle{RequestId: "other-" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + time.Duration(i).String()})
	}
	if r := h.ok(&fsmpb.RunCycle{RequestId: "call-1"}); r.Duplicate {
		t.Fatal("request id outside the window still deduplicated")
	}
	if len(h.f.st.cycleReqs) != CycleRequestWindow {
		t.Fatalf("window holds %d ids", len(h.f.st.cycleReqs))
	}
	// Bad ids are refused.
	for _, id := range []string{strings.Repeat("a", MaxRequestIDLen+1), "a b", "a\x00"} {
		if r := unchangedBy(t, h, "bad request id", &fsmpb.RunCycle{RequestId: id}); r.Err == nil || r.Err.Code != CodeInvalidArgument {
			t.Fatalf("request id %q: %+v", id, r)
		}
	}
}

// Every write retried with the same content, at the same cluster time,
// changes nothing the second time.
func TestRetriedWritesChangeNothing(t *testing.T) {
	h := newHarness(t, zeroGrace())
	h.by = "operator:o"
	x, y, z := mk(1), mk(2), mk(3)
	h.register(x, y, z)
	h.full("vm-1", 1, []Hash{y}, nil)
	h.cycle() // x and z marked
	h.claim(z)
	h.advance(time.Second)
	cfg := DefaultConfig()
	cfg.GracePeriod = time.Hour
	for _, c := range []struct {
		name string
		op   any
	}{
		{"register", &fsmpb.RegisterBlobs{Hashes: PackHashes([]Hash{x, mk(9)})}},
		{"pin", &fsmpb.Pin{Hashes: PackHashes([]Hash{y})}},
		{"unpin", &fsmpb.Unpin{Hashes: PackHashes([]Hash{y})}},
		{"claim", &fsmpb.Claim{Hashes: PackHashes([]Hash{x})}},
		{"confirm", &fsmpb.ConfirmCollected{Hashes: PackHashes([]Hash{x, z})}},
		{"full report", &fsmpb.Report{NodeId: "vm-1", Kind: fsmpb.ReportKind_REPORT_KIND_FULL, Seq: 2, Active: PackHashes([]Hash{y, mk(7)})}},
		{"delta report", &fsmpb.Report{NodeId: "vm-1", Kind: fsmpb.ReportKind_REPORT_KIND_DELTA, Seq: 3, Active: PackHashes([]Hash{mk(8)})}},
		{"chunk", chunk("vm-2", 1, 5, 0, false, []Hash{mk(6)})},
		{"deregister", &fsmpb.DeregisterNode{NodeId: "vm-1"}},
		{"set config", cfg.SetConfigCommand()},
		{"cycle", &fsmpb.RunCycle{RequestId: "c-1"}},
	} {
		h.ok(c.op)
		if r := unchangedBy(t, h, "retried "+c.name, c.op); r.Err != nil {
			t.Fatalf("retried %s: %v", c.name, r.Err)
		}
	}
}

func TestMaxNodes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxNodes = 2
	h := newHarness(t, cfg)
	h.full("a", 1, nil, nil)
	h.ok(chunk("b", 1, 7, 0, false, nil)) // a staged report counts too
	for _, op := range []any{
		&fsmpb.Report{NodeId: "c", Kind: fsmpb.ReportKind_REPORT_KIND_FULL, Seq: 1},
		chunk("c", 1, 8, 0, false, nil),
	} {
		r := unchangedBy(t, h, "a report beyond max_nodes", op)
		if r.Err == nil || r.Err.Code != CodeResourceExhausted || !strings.Contains(r.Err.Message, "max_nodes") {
			t.Fatalf("report beyond max_nodes: %+v", r.Err)
		}
	}
	h.full("a", 2, nil, nil) // known nodes keep reporting
	h.ok(chunk("b", 1, 7, 1, true, nil))
	h.ok(&fsmpb.DeregisterNode{NodeId: "a"})
	h.full("c", 1, nil, nil)
}

func TestStagingBudgetsAndExpiry(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxStagedHashesPerNode = 4
	cfg.MaxStagedHashesTotal = 6
	cfg.StaleThreshold = time.Minute
	h := newHarness(t, cfg)
	hs := []Hash{mk(1), mk(2), mk(3), mk(4), mk(5)}
	h.ok(chunk("a", 1, 1, 0, false, hs[:3]))
	if r := unchangedBy(t, h, "chunk over the node budget", chunk("a", 1, 1, 1, false, hs[3:5])); r.Err == nil || r.Err.Code != CodeResourceExhausted {
		t.Fatalf("over the per-node budget: %+v", r.Err)
	}
	h.ok(chunk("b", 1, 2, 0, false, hs[:3]))
	if r := unchangedBy(t, h, "chunk over the global budget", chunk("c", 1, 3, 0, false, hs[:1])); r.Err == nil || r.Err.Code != CodeResourceExhausted {
		t.Fatalf("over the global budget: %+v", r.Err)
	}
	// A new report of the same node replaces its stage within the budget.
	h.ok(chunk("a", 1, 4, 0, false, hs[:3]))
	// Stages expire a stale threshold after their last chunk, at the next
	// command; b's last chunk is refreshed half way.
	h.advance(30 * time.Second)
	h.ok(chunk("b", 1, 2, 1, false, nil))
	h.advance(30 * time.Second)
	h.register(mk(9))
	if r := h.apply(chunk("a", 1, 4, 1, true, nil)); r.Err == nil || r.Err.Code != CodeFailedPrecondition {
		t.Fatalf("expired stage still continued: %+v", r)
	}
	h.ok(chunk("c", 1, 3, 0, false, hs[:3])) // a's hashes no longer count
	h.ok(chunk("b", 1, 2, 2, true, nil))
	if n := h.f.Nodes(); len(n) != 1 || n[0].ID != "b" || n[0].Active != 3 {
		t.Fatalf("nodes %+v", n)
	}
	if h.f.st.stagedTotal != 3 {
		t.Fatalf("staged total %d", h.f.st.stagedTotal)
	}
}

func TestBadNodeIDsAndSequencesRefused(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.full("vm-1", 1, nil, nil)
	for _, id := range []string{"", "a b", "a\x00b", "\x1b[2J", "-lead", "é", strings.Repeat("a", MaxNodeIDLen+1)} {
		r := unchangedBy(t, h, "bad node id", &fsmpb.Report{NodeId: id, Kind: fsmpb.ReportKind_REPORT_KIND_FULL, Seq: 1})
		if r.Err == nil || r.Err.Code != CodeInvalidArgument {
			t.Fatalf("node id %q: %+v", id, r.Err)
		}
	}
	for _, seq := range []uint64{MaxSeq + 1, ^uint64(0)} {
		for _, kind := range []fsmpb.ReportKind{fsmpb.ReportKind_REPORT_KIND_FULL, fsmpb.ReportKind_REPORT_KIND_DELTA} {
			r := unchangedBy(t, h, "seq near 2^64", &fsmpb.Report{NodeId: "vm-1", Kind: kind, Seq: seq})
			if r.Err == nil || r.Err.Code != CodeInvalidArgument {
				t.Fatalf("seq %d: %+v", seq, r.Err)
			}
		}
	}
	h.full("vm-1", MaxSeq, nil, nil)
	// Deregistering accepts any id that a snapshot may still hold.
	h.ok(&fsmpb.DeregisterNode{NodeId: "a b"})
	if r := unchangedBy(t, h, "bad principal", &fsmpb.PruneStaleNodes{}); r.Err != nil {
		t.Fatal(r.Err)
	}
	h.by = "bad principal"
	if r := unchangedBy(t, h, "bad principal", &fsmpb.PruneStaleNodes{}); r.Err == nil {
		t.Fatal("principal with a space accepted")
	}
}

// Snapshots written before provenance, limits and cycle ids (version 1)
// still restore, with the new limits at their defaults, and continue.
func TestRestoreVersion1Snapshot(t *testing.T) {
	for _, path := range []string{"testdata/snapshots/v1-rich.snap", "testdata/fuzz/FuzzRestore/rich"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(path) == "rich" {
			b = fuzzCorpusBytes(t, b)
		}
		f := New()
		if err := restoreBytes(f, b); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		c := f.Counts()
		if c.Collected == 0 || c.Deleting == 0 || c.Marked == 0 || c.NodesReporting == 0 {
			t.Fatalf("%s: restored counts %+v", path, c)
		}
		if cfg := f.Config(); cfg.MaxNodes != DefaultConfig().MaxNodes || cfg.MaxStagedHashesTotal != DefaultConfig().MaxStagedHashesTotal {
			t.Fatalf("%s: limits %+v", path, cfg)
		}
		if _, d := f.Digest(); func() bool { _, r := f.RecomputeDigest(); return r != d }() {
			t.Fatalf("%s: digest after restore", path)
		}
		// Written again as version 2, which round-trips.
		b2 := snapBytes(t, f)
		if b2[8] != snapVersion {
			t.Fatalf("rewritten as version %d", b2[8])
		}
		g := New()
		if err := restoreBytes(g, b2); err != nil {
			t.Fatal(err)
		}
		_, d1 := f.Digest()
		if _, d2 := g.Digest(); d1 != d2 || !reflect.DeepEqual(f.Nodes(), g.Nodes()) || f.Counts() != g.Counts() {
			t.Fatalf("%s: version 2 round trip differs", path)
		}
		h := &harness{t: t, f: f, idx: f.AppliedIndex(), now: f.ClusterTime() + 1}
		h.cycle()
		h.full("a", 100, nil, nil)
	}
}

// fuzzCorpusBytes decodes a one-value []byte fuzz corpus file.
func fuzzCorpusBytes(t *testing.T, file []byte) []byte {
	t.Helper()
	lines := strings.SplitN(string(file), "\n", 3)
	lit := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(lines[1]), "[]byte("), ")")
	b, err := strconv.Unquote(lit)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(b)
}
