package fsm

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/blobgc/blobgc/fsm/fsmpb"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// buildRich drives h through a log that leaves every kind of state behind:
// all statuses, node sets, node pins, a staged chunk, history, tombstones,
// dangling references.
func buildRich(h *harness, n int) {
	cfg := zeroGrace()
	cfg.TombstoneLimit = n / 8
	h.ok(cfg.SetConfigCommand())
	var hs []Hash
	for i := uint64(0); i < uint64(n); i++ {
		hs = append(hs, hn(i))
	}
	for i := 0; i < n; i += 10000 {
		h.register(hs[i:min(n, i+10000)]...)
	}
	h.full("a", 1, hs[:n/2], hs[n/2:n/2+5])
	h.full("b", 1, hs[n/4:n/2+n/8], nil)
	h.cycle()
	h.claim(hs[n-n/4:]...)
	h.confirm(hs[n-n/8:]...)
	h.delta("a", 2, hs[n-3:], hs[:3], nil, nil) // dangling references
	h.pin(hs[0], mk(0xFE))
	h.advance(time.Second)
	h.cycle()
	h.ok(chunk("c", 1, 5, 0, false, hs[:7]))
	h.advance(time.Second)
}

func TestRestoreEqualDigestAndBytes(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	buildRich(h, 4000)
	b1 := snapBytes(t, h.f)
	i1, d1 := h.f.Digest()
	g := New()
	if err := restoreBytes(g, b1); err != nil {
		t.Fatal(err)
	}
	if b2 := snapBytes(t, g); !bytes.Equal(b1, b2) {
		t.Fatal("snapshot bytes of the restored FSM differ")
	}
	i2, d2 := g.Digest()
	if i1 != i2 || d1 != d2 || i1 != h.idx {
		t.Fatalf("digest (%d,%x) vs (%d,%x)", i1, d1[:4], i2, d2[:4])
	}
	if g.Counts() != h.f.Counts() || g.ClusterTime() != h.f.ClusterTime() || g.Config() != h.f.Config() {
		t.Fatal("queries differ after restore")
	}
	if h.f.Counts().DanglingRefs == 0 || h.f.Counts().Collected == 0 || h.f.Counts().Deleting == 0 {
		t.Fatalf("fixture lacks variety: %+v", h.f.Counts())
	}
	// Both continue identically.
	g2 := &harness{t: t, f: g, idx: h.idx, now: h.now}
	for _, x := range []*harness{h, g2} {
		x.ok(chunk("c", 1, 5, 1, true, nil))
		x.advance(time.Minute)
		x.full("a", 9, nil, nil)
		x.cycle()
	}
	if _, a := h.f.Digest(); true {
		if _, b := g.Digest(); a != b {
			t.Fatal("diverged after restore")
		}
	}
}

func TestRestoreRejectsCorruptLeavesStateIntact(t *testing.T) {
	src := newHarness(t, DefaultConfig())
	buildRich(src, 300)
	good := snapBytes(t, src.f)

	dst := newHarness(t, DefaultConfig())
	dst.register(mk(1), mk(2))
	dst.full("x", 1, []Hash{mk(1)}, nil)
	_, before := dst.f.Digest()
	beforeBytes := snapBytes(t, dst.f)
	check := func(name string, b []byte) {
		t.Helper()
		err := restoreBytes(dst.f, b)
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if _, d := dst.f.Digest(); d != before {
			t.Fatalf("%s: state changed by a failed restore", name)
		}
	}
	// Every truncation.
	for n := 0; n < len(good); n += 1 + n/50 {
		check("truncated", good[:n])
	}
	check("truncated by 1", good[:len(good)-1])
	check("trailing byte", append(append([]byte(nil), good...), 0))
	// Bit flips everywhere (the CRC catches what validation does not).
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		b := append([]byte(nil), good...)
		pos := rng.IntN(len(b))
		b[pos] ^= 1 << rng.IntN(8)
		err := restoreBytes(dst.f, b)
		if err == nil {
			t.Fatalf("bit flip at %d accepted", pos)
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("bit flip at %d: error %v does not wrap ErrCorrupt", pos, err)
		}
	}
	if _, d := dst.f.Digest(); d != before {
		t.Fatal("state changed")
	}
	if !bytes.Equal(snapBytes(t, dst.f), beforeBytes) {
		t.Fatal("snapshot changed")
	}
	// Another version is refused.
	b := append([]byte(nil), good...)
	b[8] = 3
	check("version", b)
	// And the good stream still restores.
	if err := restoreBytes(dst.f, good); err != nil {
		t.Fatal(err)
	}
}

// A snapshot taken while commands keep applying persists exactly the state
// at the moment of Snapshot(). The stream is pulled through a pipe a piece
// at a time between commands, so writing and applying interleave.
func TestSnapshotWhileApplying(t *testing.T) {
	h := newHarness(t, zeroGrace())
	const n = 40000 // several MiB: Persist flushes many times
	buildRich(h, n)
	_, want := h.f.Digest()
	sn, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := sn.(*Snap).WriteTo(pw)
		pw.CloseWithError(err)
	}()
	var buf bytes.Buffer
	var hs []Hash
	for i := uint64(0); i < n; i++ {
		hs = append(hs, hn(i))
	}
	for i := 0; i < 40; i++ {
		h.advance(time.Second)
		h.full("a", uint64(10+i), hs[i*500:i*500+7000], hs[:i])
		h.delta("b", uint64(2+i), hs[i:i+30], hs[i+100:i+200], nil, nil)
		h.register(hn(uint64(1<<20 + i)))
		r := h.cycle()
		h.claim(r.Eligible...)
		h.confirm(r.Eligible...)
		if _, err := io.CopyN(&buf, pr, 64<<10); err != nil && err != io.EOF {
			t.Fatal(err)
		}
	}
	if _, err := io.Copy(&buf, pr); err != nil {
		t.Fatal(err)
	}
	g := New()
	if err := restoreBytes(g, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, got := g.Digest(); got != want {
		t.Fatal("snapshot does not hold the state at Snapshot()")
	}
	if _, now := h.f.Digest(); now == want {
		t.Fatal("the live state did not change")
	}
}

// Two FSMs that reach the same state by different routes (different
// internal ids and table layouts) hold the same digest and snapshot bytes,
// and stay equal under the same log.
func TestDeterminismAcrossInsertionOrders(t *testing.T) {
	var hs []Hash
	for i := uint64(0); i < 2000; i++ {
		hs = append(hs, hn(i))
	}
	rev := append([]Hash(nil), hs...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	a := newHarness(t, zeroGrace())
	b := newHarness(t, zeroGrace())
	// b first churns through unrelated blobs so its ids and free lists differ.
	var junk []Hash
	for i := uint64(0); i < 500; i++ {
		junk = append(junk, hn(1<<40+i))
	}
	b.full("tmp", 1, junk, nil)
	b.ok(&fsmpb.DeregisterNode{NodeId: "tmp"})
	a.register(hs...)
	b.register(rev...)
	a.full("n", 1, hs[:1000], nil)
	b.full("n", 1, rev[1000:], nil)
	a.idx, b.idx = 100, 100
	sameLog := func(x *harness) {
		rng := rand.New(rand.NewPCG(7, 7))
		for i := 0; i < 30; i++ {
			x.advance(time.Duration(rng.IntN(3)) * time.Second)
			lo := rng.IntN(1900)
			x.delta("n", uint64(2+i), hs[lo:lo+50], hs[lo+50:lo+100], hs[lo:lo+2], nil)
			r := x.cycle()
			if len(r.Eligible) > 10 {
				x.claim(r.Eligible[:10]...)
				x.confirm(r.Eligible[:5]...)
			}
		}
	}
	sameLog(a)
	sameLog(b)
	ia, da := a.f.Digest()
	ib, db := b.f.Digest()
	if ia != ib || da != db {
		t.Fatal("digests differ")
	}
	if !bytes.Equal(snapBytes(t, a.f), snapBytes(t, b.f)) {
		t.Fatal("snapshots differ")
	}
}

// Persist into raft's real file snapshot store, then restore from it.
func TestPersistToFileSnapshotStore(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	buildRich(h, 500)
	store, err := raft.NewFileSnapshotStoreWithLogger(t.TempDir(), 1, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	sn, _ := h.f.Snapshot()
	sink, err := store.Create(raft.SnapshotVersionMax, h.idx, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sn.Persist(sink); err != nil {
		t.Fatal(err)
	}
	sn.Release()
	metas, err := store.List()
	if err != nil || len(metas) != 1 {
		t.Fatalf("%v %v", metas, err)
	}
	_, rc, err := store.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	g := New()
	if err := g.Restore(rc); err != nil {
		t.Fatal(err)
	}
	_, a := h.f.Digest()
	if _, b := g.Digest(); a != b {
		t.Fatal("digest differs")
	}
}

type failingSink struct {
	canceled bool
	n        int
}

func (s *failingSink) Write(p []byte) (int, error) {
	if s.n += len(p); s.n > 100 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}
func (s *failingSink) Close() error  { return nil }
func (s *failingSink) ID() string    { return "x" }
func (s *failingSink) Cancel() error { s.canceled = true; return nil }

func TestPersistErrorCancelsSink(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	buildRich(h, 5000)
	sn, _ := h.f.Snapshot()
	sink := &failingSink{}
	if err := sn.Persist(sink); err == nil || !sink.canceled {
		t.Fatalf("err %v canceled %v", err, sink.canceled)
	}
}

// Snapshot shares everything with the live state; a later write copies only
// the shard header and the one page it touches.
func TestSnapshotIsCopyOnWrite(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	var hs []Hash
	for i := uint64(0); i < 150000; i++ { // ~590 per shard: 3 pages each
		hs = append(hs, hn(i))
	}
	for i := 0; i < len(hs); i += 10000 {
		h.register(hs[i : i+10000]...)
	}
	h.full("n", 1, hs[:100], nil)
	sn, _ := h.f.Snapshot()
	v := sn.(*Snap).v
	live := h.f.st.tab
	for i := range live.shards {
		if live.shards[i] != v.tab.shards[i] {
			t.Fatalf("shard %d copied by Snapshot", i)
		}
	}
	_, before := h.f.Digest()
	x := hs[5000]
	id, _ := live.lookup(&x)
	h.delta("n", 2, []Hash{x}, nil, nil, nil) // refcount of x changes
	si := int(id >> localBits)
	for i := range live.shards {
		if (live.shards[i] != v.tab.shards[i]) != (i == si) {
			t.Fatalf("shard %d: copied %v", i, live.shards[i] != v.tab.shards[i])
		}
	}
	ls, vs := live.shards[si], v.tab.shards[si]
	copied := 0
	for p := range ls.pages {
		if ls.pages[p].p != vs.pages[p].p {
			copied++
		}
	}
	if copied != 1 || len(ls.pages) < 2 {
		t.Fatalf("%d of %d pages copied, want 1", copied, len(ls.pages))
	}
	if &ls.slots[0] != &vs.slots[0] {
		t.Fatal("slots copied without an insert")
	}
	if vs.at(id&localMask).refs != 0 || ls.at(id&localMask).refs != 1 {
		t.Fatal("the frozen entry changed")
	}
	g := New()
	var buf bytes.Buffer
	if _, err := sn.(*Snap).WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if err := restoreBytes(g, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	// The digest taken after Snapshot() froze once more; the snapshot still
	// holds the state before the delta.
	if _, d := g.Digest(); d != before {
		t.Fatal("snapshot changed")
	}
}

// DryRunCycle changes nothing.
func TestDryRunChangesNothing(t *testing.T) {
	h := newHarness(t, zeroGrace())
	buildRich(h, 500)
	h.ok(&fsmpb.SetConfig{MinNodesReporting: ptr(int64(0))})
	h.advance(time.Hour) // stale nodes, expired grace: a real cycle would change a lot
	_, before := h.f.Digest()
	dry := h.f.DryRunCycle(h.now)
	if _, after := h.f.Digest(); after != before {
		t.Fatal("dry run changed the state")
	}
	if len(dry.StaleNodes) == 0 || len(dry.Eligible) == 0 {
		t.Fatalf("fixture: %+v", dry)
	}
	if real := h.cycle(); !reflect.DeepEqual(real, dry) {
		t.Fatalf("dry run %+v\nreal %+v", dry, real)
	}
}
