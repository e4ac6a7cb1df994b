package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"math/bits"

	"github.com/RoaringBitmap/roaring/v2"
	"google.golang.org/protobuf/proto"
)

// The state digest is kept incrementally, so Digest costs O(1) instead of a
// serialisation. The state is seen as a set of elements, each hashed with
// SHA-256 under a one-letter domain tag, and the digest keeps their sum mod
// 2^256 (a multiset hash: adding and removing an element are one addition
// and one subtraction, in any order):
//
//	b  a blob or tombstone: hash, since (a tombstone's sequence), status, flags
//	p  a blob's provenance record
//	n  a node's report header: id, times, seq, last chunked report id
//	a  one hash in a node's active set;  q  one in its pinned set
//	s  a staged chunked report's header;  t  one staged hash with its position
//	h  a history event;  c  a remembered RunCycle request
//
// Digest hashes that sum with the scalars (applied index, cluster and wall
// time, config, next sequence numbers). Blob elements are settled at the end
// of each command: the first write to an entry in a command saves its old
// value (mutBlob), and settleDigest swaps the old element for the new one.
// recomputeSum builds the same sum from scratch; tests compare the two.

// digestSum is a 256-bit number, little-endian limbs.
type digestSum [4]uint64

func (d *digestSum) add(e [32]byte, sign int) {
	var x [4]uint64
	for i := range x {
		x[i] = binary.LittleEndian.Uint64(e[8*i:])
	}
	var c uint64
	for i := range d {
		if sign > 0 {
			d[i], c = bits.Add64(d[i], x[i], c)
		} else {
			d[i], c = bits.Sub64(d[i], x[i], c)
		}
	}
}

// elem builds one element's bytes; tag first, then fields.
type elem struct{ b []byte }

func newElem(tag byte) *elem { return &elem{b: append(make([]byte, 0, 128), tag)} }

func (e *elem) u64(v uint64) *elem { e.b = binary.LittleEndian.AppendUint64(e.b, v); return e }
func (e *elem) i64(v int64) *elem  { return e.u64(uint64(v)) }
func (e *elem) str(s string) *elem { e.u64(uint64(len(s))); e.b = append(e.b, s...); return e }
func (e *elem) hash(h *Hash) *elem { e.b = append(e.b, h[:]...); return e }
func (e *elem) raw(p []byte) *elem { e.u64(uint64(len(p))); e.b = append(e.b, p...); return e }
func (e *elem) sum() [32]byte      { return sha256.Sum256(e.b) }

// touchedBlob is an entry's value before the command being applied.
type touchedBlob struct {
	id  uint32
	old entry
}

// blobVisible: the entries the digest covers (NOT_FOUND entries only count
// references and are covered by the node sets).
func blobVisible(e *entry) bool { return e.status != uint8(StatusNotFound) }

func blobElem(e *entry) [32]byte {
	return newElem('b').hash(&e.hash).i64(e.since).u64(uint64(e.status)<<8 | uint64(e.flags&persistMsk)).sum()
}

func sameBlob(a, b *entry) bool {
	return a.hash == b.hash && a.since == b.since && a.status == b.status && a.flags&persistMsk == b.flags&persistMsk
}

// mutBlob is table.mut for writes that may change what the digest covers.
func (s *state) mutBlob(id uint32) *entry {
	e := s.tab.mut(id)
	if e.flags&flagTouched == 0 {
		s.touched = append(s.touched, touchedBlob{id: id, old: *e})
		e.flags |= flagTouched
	}
	return e
}

// settleDigest replaces the old elements of the blobs the command touched
// by their new ones.
func (s *state) settleDigest() {
	for _, t := range s.touched {
		if !s.tab.clearFlag(t.id, flagTouched) {
			continue
		}
		cur := s.tab.get(t.id)
		oldVis, curVis := blobVisible(&t.old), cur.flags&flagInUse != 0 && blobVisible(cur)
		if oldVis && curVis && sameBlob(&t.old, cur) {
			continue
		}
		if oldVis {
			s.sum.add(blobElem(&t.old), -1)
		}
		if curVis {
			s.sum.add(blobElem(cur), +1)
		}
	}
	s.touched = s.touched[:0]
}

func provElem(r *provRec) [32]byte {
	return newElem('p').hash(&r.hash).str(r.pinnedBy).str(r.claimedBy).i64(r.claimedAt).
		str(r.confirmedBy).i64(r.confirmedAt).sum()
}

func (s *state) digestProv(r provRec, sign int) { s.sum.add(provElem(&r), sign) }

func nodeElem(n *node) [32]byte {
	return newElem('n').str(n.id).i64(n.lastReport).i64(n.lastWall).u64(n.seq).u64(n.lastChunk).sum()
}

func memberElem(nodeID string, pin bool, h *Hash) [32]byte {
	tag := byte('a')
	if pin {
		tag = 'q'
	}
	return newElem(tag).str(nodeID).hash(h).sum()
}

func (s *state) digestNode(n *node, sign int) { s.sum.add(nodeElem(n), sign) }

func stageElem(st *staged) [32]byte {
	return newElem('s').str(st.nodeID).u64(st.reportID).u64(uint64(st.next)).i64(st.last).sum()
}

// stagedHashElem: a staged hash at its position (active first, then pinned,
// each in received order; duplicates are allowed).
func stagedHashElem(nodeID string, pin bool, pos int, h *Hash) [32]byte {
	e := newElem('t').str(nodeID)
	if pin {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
	return e.u64(uint64(pos)).hash(h).sum()
}

// digestStagedHashes adds (sign > 0) or removes the staged hashes of st
// from the given positions on.
func (s *state) digestStagedHashes(st *staged, fromActive, fromPinned, sign int) {
	for i := fromActive; i < len(st.active); i++ {
		s.sum.add(stagedHashElem(st.nodeID, false, i, &st.active[i]), sign)
	}
	for i := fromPinned; i < len(st.pinned); i++ {
		s.sum.add(stagedHashElem(st.nodeID, true, i, &st.pinned[i]), sign)
	}
}

func historyElem(ev *HistoryEvent) [32]byte {
	return newElem('h').u64(ev.Seq).i64(ev.Time).i64(ev.WallTime).raw(PackHashes(ev.NewlyMarked)).
		u64(uint64(ev.EligibleCount)).u64(uint64(ev.Preserved)).u64(uint64(ev.NodesReporting)).
		str(ev.Skipped).str(ev.RunBy).sum()
}

func (s *state) digestHistory(ev *HistoryEvent, sign int) { s.sum.add(historyElem(ev), sign) }

func cycleReqElem(r *cycleReq) [32]byte {
	e := newElem('c').str(r.id).i64(r.res.Time).raw(PackHashes(r.res.NewlyMarked)).
		u64(uint64(r.res.ActiveCount)).u64(uint64(r.res.PinnedCount)).u64(uint64(r.res.UnreferencedCount)).
		u64(uint64(len(r.res.StaleNodes)))
	for _, id := range r.res.StaleNodes {
		e.str(id)
	}
	return e.u64(uint64(r.res.NodesReporting)).str(r.res.Skipped).u64(uint64(r.eligibleCount)).sum()
}

func (s *state) digestCycleReq(r *cycleReq, sign int) { s.sum.add(cycleReqElem(r), sign) }

// recomputeSum builds the element sum from the whole state.
func (s *state) recomputeSum() digestSum {
	var d digestSum
	for _, sh := range s.tab.shards {
		sh.each(func(_ uint32, e *entry) {
			if blobVisible(e) {
				d.add(blobElem(e), +1)
			}
		})
	}
	s.prov.Ascend(func(r provRec) bool { d.add(provElem(&r), +1); return true })
	for _, n := range s.nodes {
		d.add(nodeElem(n), +1)
		for _, set := range []struct {
			b   *roaring.Bitmap
			pin bool
		}{{n.active, false}, {n.pinned, true}} {
			it := set.b.Iterator()
			for it.HasNext() {
				d.add(memberElem(n.id, set.pin, &s.tab.get(it.Next()).hash), +1)
			}
		}
	}
	for _, st := range s.staging {
		d.add(stageElem(st), +1)
		for i := range st.active {
			d.add(stagedHashElem(st.nodeID, false, i, &st.active[i]), +1)
		}
		for i := range st.pinned {
			d.add(stagedHashElem(st.nodeID, true, i, &st.pinned[i]), +1)
		}
	}
	for i := range s.history {
		d.add(historyElem(&s.history[i]), +1)
	}
	for i := range s.cycleReqs {
		d.add(cycleReqElem(&s.cycleReqs[i]), +1)
	}
	return d
}

// digestOf hashes an element sum with the state's scalars.
func (s *state) digestOf(d digestSum) [32]byte {
	cfg, _ := proto.MarshalOptions{Deterministic: true}.Marshal(s.config.toProto())
	e := newElem('D')
	for _, v := range d {
		e.u64(v)
	}
	return e.u64(s.applied).i64(s.clusterTime).i64(s.wallTime).raw(cfg).
		u64(s.nextHistSeq).u64(s.nextTombSeq).sum()
}

// Digest returns the applied index and a digest of the whole state at that
// index: equal on two servers that applied the same log, different (with
// overwhelming probability) for any two states that differ. It costs O(1):
// the digest is kept up to date as commands apply.
func (f *FSM) Digest() (index uint64, digest [32]byte) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.applied, f.st.digestOf(f.st.sum)
}

// RecomputeDigest is Digest computed from scratch over the whole state, in
// O(state); a check for the incremental digest.
func (f *FSM) RecomputeDigest() (index uint64, digest [32]byte) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.applied, f.st.digestOf(f.st.recomputeSum())
}
