package fsm

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/hashicorp/raft"
)

// fuzzBase is a small state with every kind of entry, restored afresh for
// each input.
func fuzzBase(t testing.TB) []byte {
	h := newHarness(t, DefaultConfig())
	buildRich(h, 64)
	return snapBytes(t, h.f)
}

func fromBytes(t testing.TB, b []byte) *FSM {
	f := New()
	if err := restoreBytes(f, b); err != nil {
		t.Fatal(err)
	}
	return f
}

// FuzzApply: any entry is answered with a *Result and never panics; an
// entry answered with an error changes nothing but the applied index.
func FuzzApply(f *testing.F) {
	base := fuzzBase(f)
	for _, c := range sampleCommands() {
		b, err := Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := fromBytes(t, base)
		idx := fsm.AppliedIndex() + 1
		res, ok := fsm.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data}).(*Result)
		if !ok || res == nil || res.Index != idx {
			t.Fatalf("result %#v", res)
		}
		if res.Err != nil {
			ref := fromBytes(t, base)
			ref.Apply(&raft.Log{Index: idx, Type: raft.LogNoop})
			if _, a := fsm.Digest(); true {
				if _, b := ref.Digest(); a != b {
					t.Fatalf("entry refused with %v changed the state", res.Err)
				}
			}
		}
		// The digest kept incrementally is the one recomputed from scratch.
		if _, a := fsm.Digest(); true {
			if _, b := fsm.RecomputeDigest(); a != b {
				t.Fatal("incremental digest differs from the recomputed one")
			}
		}
		// Whatever happened, the state still snapshots and restores.
		b := snapBytes(t, fsm)
		if g := fromBytes(t, b); !bytes.Equal(snapBytes(t, g), b) {
			t.Fatal("snapshot round trip differs")
		}
	})
}

// FuzzRestore: any stream is either restored (and then round-trips) or
// refused with the previous state intact; never a panic.
func FuzzRestore(f *testing.F) {
	base := fuzzBase(f)
	f.Add(base)
	f.Add(base[:len(base)/2])
	f.Add(snapBytes(f, New()))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRestoreOne(t, base, data)
		// Again with a valid checksum, so that mutations reach the
		// semantic validation instead of stopping at the CRC.
		if len(data) >= 4 {
			fixed := append([]byte(nil), data...)
			binary.LittleEndian.PutUint32(fixed[len(fixed)-4:], crc32.Checksum(fixed[:len(fixed)-4], castagnoli))
			fuzzRestoreOne(t, base, fixed)
		}
	})
}

func fuzzRestoreOne(t *testing.T, base, data []byte) {
	fsm := fromBytes(t, base)
	_, before := fsm.Digest()
	if err := restoreBytes(fsm, data); err != nil {
		if _, after := fsm.Digest(); after != before {
			t.Fatal("failed restore changed the state")
		}
		return
	}
	b := snapBytes(t, fsm)
	g := fromBytes(t, b)
	if !bytes.Equal(snapBytes(t, g), b) {
		t.Fatal("restored state does not round-trip")
	}
	// The restored state keeps working.
	h := &harness{t: t, f: g, idx: g.AppliedIndex(), now: g.ClusterTime() + 1}
	for _, c := range sampleCommands() {
		h.idx++
		c.TimeNs = h.now
		g.ApplyCommand(h.idx, c)
	}
	h.cycle()
}
