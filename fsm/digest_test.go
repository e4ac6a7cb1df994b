package fsm

import (
	"encoding/hex"
	"math/bits"
	"strings"
	"testing"

	"github.com/blobgc/blobgc/fsm/fsmpb"
)

// buildProvenanced is buildRich with principals, a remembered cycle request
// and a stage of two chunks.
func buildProvenanced(t *testing.T) []byte {
	h := newHarness(t, DefaultConfig())
	h.by = "operator:o"
	buildRich(h, 400)
	h.ok(&fsmpb.RunCycle{RequestId: "r-1"})
	h.ok(chunk("c", 1, 5, 1, false, []Hash{mk(1), mk(2)}))
	h.by = "admin:a"
	h.ok(&fsmpb.SetConfig{HistoryLimit: ptr(int64(50))})
	return snapBytes(t, h.f)
}

// The digest covers everything a snapshot holds: changing any one part of
// the state changes the recomputed digest, and the incremental digest
// equals the recomputed one on the unchanged state.
func TestDigestCoversEveryPart(t *testing.T) {
	base := buildProvenanced(t)
	fresh := func() *FSM {
		f := New()
		if err := restoreBytes(f, base); err != nil {
			t.Fatal(err)
		}
		return f
	}
	f := fresh()
	_, want := f.Digest()
	if _, got := f.RecomputeDigest(); got != want {
		t.Fatal("incremental and recomputed digests differ")
	}
	entryWith := func(s *state, st Status) *entry {
		var out *entry
		for _, sh := range s.tab.shards {
			sh.each(func(l uint32, e *entry) {
				if out == nil && Status(e.status) == st {
					out = e
				}
			})
		}
		if out == nil {
			t.Fatalf("fixture has no %v blob", st)
		}
		return out
	}
	anyNode := func(s *state) *node { return s.nodes["a"] }
	anyStage := func(s *state) *staged { return s.staging["c"] }
	for name, mutate := range map[string]func(s *state){
		"blob status":   func(s *state) { entryWith(s, StatusMarked).status = uint8(StatusActive) },
		"blob flags":    func(s *state) { entryWith(s, StatusActive).flags ^= flagReg },
		"blob since":    func(s *state) { entryWith(s, StatusCollected).since += 1000 },
		"tomb order":    func(s *state) { s.nextTombSeq++; entryWith(s, StatusCollected).since = int64(s.nextTombSeq - 1) },
		"provenance":    func(s *state) { r, _ := s.prov.Min(); r.claimedAt++; s.prov.ReplaceOrInsert(r) },
		"prov dropped":  func(s *state) { s.prov.DeleteMin() },
		"node time":     func(s *state) { anyNode(s).lastWall++ },
		"node seq":      func(s *state) { anyNode(s).seq++ },
		"node chunk":    func(s *state) { anyNode(s).lastChunk++ },
		"node set":      func(s *state) { n := anyNode(s); n.active.bm.Remove(n.active.bm.Minimum()) },
		"node pins":     func(s *state) { n := anyNode(s); n.pinned.bm.Remove(n.pinned.bm.Minimum()) },
		"stage next":    func(s *state) { anyStage(s).next++ },
		"stage time":    func(s *state) { anyStage(s).last-- },
		"stage order":   func(s *state) { a := anyStage(s).active; a[0], a[len(a)-1] = a[len(a)-1], a[0] },
		"history":       func(s *state) { s.history[0].Skipped = "x" },
		"history by":    func(s *state) { s.history[0].RunBy = "x" },
		"cycle request": func(s *state) { s.cycleReqs[0].eligibleCount++ },
		"applied":       func(s *state) { s.applied++ },
		"cluster time":  func(s *state) { s.clusterTime++ },
		"wall time":     func(s *state) { s.wallTime++ },
		"config":        func(s *state) { s.config.MaxNodes++ },
		"config by":     func(s *state) { s.config.SetBy = "x" },
		"history seq":   func(s *state) { s.nextHistSeq++ },
	} {
		g := fresh()
		mutate(g.st)
		if _, got := g.RecomputeDigest(); got == want {
			t.Errorf("%s: digest unchanged", name)
		}
	}
}

// Digest is O(1): it does not grow with the state.
func BenchmarkDigest(b *testing.B) {
	f, _ := benchState(b, 200_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.Digest()
	}
}

func BenchmarkRecomputeDigest(b *testing.B) {
	f, _ := benchState(b, 200_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.RecomputeDigest()
	}
}

// elemHash is part of what servers compare: a change to it changes every
// digest, so its values are fixed here. Each output also depends on every
// input bit and on the length.
func TestElemHash(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "28b499b046f5e567106b89952202541f7c085a4c0bc4b451d54e2f1cc7ac7e65",
		"b":                 "9c3f5dbaeccc72cbf835a5f183fc2509dd5304ceb59079fe8432334a8e29233e",
		"blobgc element 01": "5284085aeee4cb5a7ce2bb9914cf9ff977caf743ab3a9e4b24b0f239d2779f20",
	} {
		got := elemHash([]byte(in))
		if hex.EncodeToString(got[:]) != want {
			t.Errorf("elemHash(%q) = %x, want %s", in, got, want)
		}
	}
	for _, size := range []int{1, 8, 17, 45, 49, 80} {
		base := make([]byte, size)
		for i := range base {
			base[i] = byte(i*7 + size)
		}
		h0 := elemHash(base)
		for bit := 0; bit < size*8; bit++ {
			in := append([]byte(nil), base...)
			in[bit/8] ^= 1 << (bit % 8)
			h1 := elemHash(in)
			diff := 0
			for i := range h0 {
				diff += bits.OnesCount8(h0[i] ^ h1[i])
			}
			// 128 of 256 bits on average; 80 is 6 standard deviations away.
			if diff < 80 || diff > 176 {
				t.Fatalf("%d bytes: flipping input bit %d changes %d of 256 output bits", size, bit, diff)
			}
		}
	}
	base := make([]byte, 48)
	if elemHash(base[:48]) == elemHash(append(base[:48:48], 0)) {
		t.Fatal("a trailing zero byte does not change the hash")
	}
}

// A registration adds the elements of the blobs it creates directly, not
// through the touched list: a hash repeated in the command, one a node
// references (an entry, not yet in the digest), one pinned and one new must
// leave the incremental digest equal to the recomputed one.
func TestRegisterDigestWithRepeatsAndKnownEntries(t *testing.T) {
	h := newHarness(t, DefaultConfig())
	h.full("n", 1, []Hash{hn(2)}, nil)
	h.pin(hn(3))
	r := h.register(hn(1), hn(2), hn(1), hn(3), hn(4), hn(4))
	if r.Changed != 3 {
		t.Fatalf("changed %d, want 3 (the new hn(1), hn(4), the referenced hn(2))", r.Changed)
	}
	_, inc := h.f.Digest()
	if _, full := h.f.RecomputeDigest(); inc != full {
		t.Fatal("incremental digest differs from the recomputed one")
	}
	for _, x := range []Hash{hn(1), hn(2), hn(4)} {
		h.wantStatus(x, StatusActive)
	}
	h.wantStatus(hn(3), StatusPinned)
}

// memberHasher gives memberElem's value for every node id length (so every
// split of the prefix into words) and after switching node or set.
func TestMemberHasherIsMemberElem(t *testing.T) {
	var m memberHasher
	for k := 0; k <= MaxNodeIDLen; k++ {
		id := strings.Repeat("n", k)
		for _, pin := range []bool{false, true, false} {
			for i := range 3 {
				h := Hash{byte(k), byte(i), 7}
				h[31] = byte(k * 3)
				if got, want := m.memberElem(id, pin, &h), memberElem(id, pin, &h); got != want {
					t.Fatalf("node id of %d bytes, pin %v: %x, want %x", k, pin, got, want)
				}
			}
		}
	}
}

// BenchmarkMemberElem: one report membership's digest element, hashed whole
// and with the node's prefix absorbed once (what addHold uses).
func BenchmarkMemberElem(b *testing.B) {
	const id = "vm-node-0012.eu"
	var h Hash
	var sink [32]byte
	b.Run("whole", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			h[0] = byte(i)
			sink = memberElem(id, false, &h)
		}
	})
	var m memberHasher
	b.Run("prefix-absorbed", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			h[0] = byte(i)
			sink = m.memberElem(id, false, &h)
		}
	})
	_ = sink
}
