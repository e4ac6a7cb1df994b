package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"math/bits"

	"google.golang.org/protobuf/proto"
)

// The state digest is kept incrementally, so Digest costs O(1) instead of a
// serialisation. The state is seen as a set of elements, each hashed with
// elemHash under a one-letter domain tag, and the digest keeps their sum mod
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
// value (mutBlob), and settleDigest swaps the old element for the new one;
// a registration adds the element of an entry it creates directly.
// recomputeSum builds the same sum from scratch; tests compare the two.

// elemHash hashes one element to 256 bits: four 64-bit lanes, seeded apart
// and with the length, each taking the element's little-endian 8-byte words
// through an odd multiply and a rotation (both bijections, so a lane's state
// never collapses), then mixed across lanes by murmur3's finaliser so that
// every output bit depends on every input bit. One element is hashed per
// blob and per report membership that changes; SHA-256 there was a third
// of applying a batch, this is a few nanoseconds. Like etcd's CRC-32C hash
// check, the digest detects replicas that diverge through a bug or damaged
// data; it is not a commitment against crafted input.
func elemHash(b []byte) [32]byte {
	x := newLanes(len(b))
	return x.sum(x.words(b))
}

// lanes is elemHash's state, so that memberHasher can absorb an element's
// prefix once for many elements.
type lanes [4]uint64

// newLanes starts the hash of an element of n bytes.
func newLanes(n int) lanes {
	u := uint64(n)
	return lanes{u ^ 0x243f6a8885a308d3, u ^ 0x13198a2e03707344, u ^ 0xa4093822299f31d0, u ^ 0x082efa98ec4e6c89}
}

func (x *lanes) step(w uint64) {
	const k0, k1, k2, k3 = 0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9, 0x94d049bb133111eb, 0xd6e8feb86659fd93
	x[0] = bits.RotateLeft64((x[0]^w)*k0, 29)
	x[1] = bits.RotateLeft64((x[1]^w)*k1, 31)
	x[2] = bits.RotateLeft64((x[2]^w)*k2, 37)
	x[3] = bits.RotateLeft64((x[3]^w)*k3, 41)
}

// words absorbs b's whole 8-byte words and returns the bytes left over.
func (x *lanes) words(b []byte) []byte {
	for ; len(b) >= 8; b = b[8:] {
		x.step(binary.LittleEndian.Uint64(b))
	}
	return b
}

// sum absorbs the last bytes (fewer than 8, zero-padded) and mixes the
// lanes into the element's hash.
func (x *lanes) sum(rest []byte) (out [32]byte) {
	if len(rest) > 0 {
		var t [8]byte
		copy(t[:], rest)
		x.step(binary.LittleEndian.Uint64(t[:]))
	}
	binary.LittleEndian.PutUint64(out[0:], fmix64(x[0]^bits.RotateLeft64(x[1], 17)))
	binary.LittleEndian.PutUint64(out[8:], fmix64(x[1]^bits.RotateLeft64(x[2], 23)))
	binary.LittleEndian.PutUint64(out[16:], fmix64(x[2]^bits.RotateLeft64(x[3], 43)))
	binary.LittleEndian.PutUint64(out[24:], fmix64(x[3]^bits.RotateLeft64(x[0], 53)))
	return out
}

// fmix64 is murmur3's 64-bit finaliser.
func fmix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

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

// Element bytes are built with these appenders into a stack buffer (most
// elements fit elemBuf), tag first, then the fields.
const elemBuf = 1 + 5*8 + MaxNodeIDLen + HashSize

func eU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }
func eStr(b []byte, s string) []byte { return append(eU64(b, uint64(len(s))), s...) }
func eRaw(b []byte, p []byte) []byte { return append(eU64(b, uint64(len(p))), p...) }
func eHash(b []byte, h *Hash) []byte { return append(b, h[:]...) }

// touchedBlob is an entry's value before the command being applied.
type touchedBlob struct {
	id  uint32
	old entry
}

// blobVisible: the entries the digest covers (NOT_FOUND entries only count
// references and are covered by the node sets).
func blobVisible(e *entry) bool { return e.status != uint8(StatusNotFound) }

func blobElem(e *entry) [32]byte {
	var a [elemBuf]byte
	b := eHash(append(a[:0], 'b'), &e.hash)
	b = eU64(eU64(b, uint64(e.since)), uint64(e.status)<<8|uint64(e.flags&persistMsk))
	return elemHash(b)
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
	b := eHash(append(make([]byte, 0, 128), 'p'), &r.hash)
	b = eU64(eStr(eStr(b, r.pinnedBy), r.claimedBy), uint64(r.claimedAt))
	b = eU64(eStr(b, r.confirmedBy), uint64(r.confirmedAt))
	return elemHash(b)
}

func (s *state) digestProv(r provRec, sign int) { s.sum.add(provElem(&r), sign) }

func nodeElem(n *node) [32]byte {
	var a [elemBuf]byte
	b := eStr(append(a[:0], 'n'), n.id)
	b = eU64(eU64(eU64(eU64(b, uint64(n.lastReport)), uint64(n.lastWall)), n.seq), n.lastChunk)
	return elemHash(b)
}

func memberElem(nodeID string, pin bool, h *Hash) [32]byte {
	var a [elemBuf]byte
	return elemHash(eHash(memberPrefix(a[:0], nodeID, pin), h))
}

func memberPrefix(b []byte, nodeID string, pin bool) []byte {
	tag := byte('a')
	if pin {
		tag = 'q'
	}
	return eStr(append(b, tag), nodeID)
}

// memberHasher is memberElem for one node's set, with the element's prefix
// (tag and node id, most of its bytes) absorbed once: a report changes
// many memberships of one node, and hashing them was a fifth of applying
// full reports.
type memberHasher struct {
	ok     bool
	nodeID string
	pin    bool
	x      lanes   // after the prefix's whole words
	tail   [8]byte // the prefix's bytes after them
	nt     int
}

// memberElem is memberElem(nodeID, pin, h), reusing the prefix of the
// last call when the node and set are the same.
func (m *memberHasher) memberElem(nodeID string, pin bool, h *Hash) [32]byte {
	if !m.ok || m.pin != pin || m.nodeID != nodeID {
		var a [elemBuf]byte
		p := memberPrefix(a[:0], nodeID, pin)
		*m = memberHasher{ok: true, nodeID: nodeID, pin: pin, x: newLanes(len(p) + HashSize)}
		m.nt = copy(m.tail[:], m.x.words(p))
	}
	var b [8 + HashSize]byte
	n := copy(b[:], m.tail[:m.nt])
	n += copy(b[n:], h[:])
	x := m.x
	return x.sum(x.words(b[:n]))
}

func (s *state) digestNode(n *node, sign int) { s.sum.add(nodeElem(n), sign) }

func stageElem(st *staged) [32]byte {
	var a [elemBuf]byte
	b := eStr(append(a[:0], 's'), st.nodeID)
	b = eU64(eU64(eU64(b, st.reportID), uint64(st.next)), uint64(st.last))
	return elemHash(b)
}

// stagedHashElem: a staged hash at its position (active first, then pinned,
// each in received order; duplicates are allowed).
func stagedHashElem(nodeID string, pin bool, pos int, h *Hash) [32]byte {
	var a [elemBuf]byte
	b := eStr(append(a[:0], 't'), nodeID)
	if pin {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return elemHash(eHash(eU64(b, uint64(pos)), h))
}

// eachStagedElem calls fn with the elements of st's staged hashes from the
// given positions on.
func eachStagedElem(st *staged, fromActive, fromPinned int, fn func([32]byte)) {
	for i := fromActive; i < len(st.active); i++ {
		fn(stagedHashElem(st.nodeID, false, i, &st.active[i]))
	}
	for i := fromPinned; i < len(st.pinned); i++ {
		fn(stagedHashElem(st.nodeID, true, i, &st.pinned[i]))
	}
}

// digestStagedHashes adds (sign > 0) or removes the staged hashes of st
// from the given positions on.
func (s *state) digestStagedHashes(st *staged, fromActive, fromPinned, sign int) {
	eachStagedElem(st, fromActive, fromPinned, func(e [32]byte) { s.sum.add(e, sign) })
}

func historyElem(ev *HistoryEvent) [32]byte {
	b := eU64(eU64(eU64([]byte{'h'}, ev.Seq), uint64(ev.Time)), uint64(ev.WallTime))
	b = eU64(eRaw(b, PackHashes(ev.NewlyMarked)), uint64(ev.EligibleCount))
	b = eU64(eU64(b, uint64(ev.Preserved)), uint64(ev.NodesReporting))
	return elemHash(eStr(eStr(b, ev.Skipped), ev.RunBy))
}

func (s *state) digestHistory(ev *HistoryEvent, sign int) { s.sum.add(historyElem(ev), sign) }

func cycleReqElem(r *cycleReq) [32]byte {
	b := eRaw(eU64(eStr([]byte{'c'}, r.id), uint64(r.res.Time)), PackHashes(r.res.NewlyMarked))
	b = eU64(eU64(eU64(b, uint64(r.res.ActiveCount)), uint64(r.res.PinnedCount)), uint64(r.res.UnreferencedCount))
	b = eU64(b, uint64(len(r.res.StaleNodes)))
	for _, id := range r.res.StaleNodes {
		b = eStr(b, id)
	}
	b = eU64(eStr(eU64(b, uint64(r.res.NodesReporting)), r.res.Skipped), uint64(r.eligibleCount))
	return elemHash(b)
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
			ids idSet
			pin bool
		}{{n.active, false}, {n.pinned, true}} {
			set.ids.each(func(id uint32) { d.add(memberElem(n.id, set.pin, &s.tab.get(id).hash), +1) })
		}
	}
	for _, st := range s.staging {
		d.add(stageElem(st), +1)
		eachStagedElem(st, 0, 0, func(e [32]byte) { d.add(e, +1) })
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
	b := []byte{'D'}
	for _, v := range d {
		b = eU64(b, v)
	}
	b = eU64(eU64(eU64(b, s.applied), uint64(s.clusterTime)), uint64(s.wallTime))
	return sha256.Sum256(eU64(eU64(eRaw(b, cfg), s.nextHistSeq), s.nextTombSeq))
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
