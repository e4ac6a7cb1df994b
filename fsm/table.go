package fsm

import (
	"encoding/binary"
	"iter"
	"math/bits"
	"sync/atomic"
)

// The blob table: 256 shards selected by the first hash byte. Each shard is
// an open-addressing hash table (linear probing, uint32 slots) over entries
// kept in fixed-size pages, so a blob costs its 56-byte entry plus about 5-11
// bytes of slots. A blob's id is shard<<24 | index in the shard; ids index
// the node bitmaps and are recycled through a per-shard free list.
//
// A removed entry leaves a tombstone in its slot, which probes pass over and
// inserts reuse. Backward-shift deletion, which needs no tombstones, has to
// read the entry behind every later slot of the probe chain to find its
// home: with millions of blobs each read is a cache miss, and full reports
// that replace a node's hashes remove as many entries as they insert.
// Tombstones count towards the load; a shard whose slots reach 3/4 full is
// rebuilt without them, at the same size when at least a quarter of the
// slots are tombstones, else at twice the size.
//
// Copy-on-write: freezing the table (for a snapshot) bumps the table
// generation and keeps the shard pointers. The live table copies a shard
// header (page pointers, free list) on its first write after a freeze, its
// slots only when an insert or delete changes them, and each page of 256
// entries only when an entry in it changes. Freezing is O(shards); the first
// change of an entry after a freeze costs a 14 KiB page copy.

const (
	numShards = 256
	localBits = 24
	maxLocal  = 1<<localBits - 1 // entries per shard: local+1 must fit the slot's low 24 bits
	localMask = 1<<localBits - 1
	pageBits  = 8
	pageSize  = 1 << pageBits
	pageMask  = pageSize - 1
	minSlots  = 16
	noID      = ^uint32(0)
	flagCPin  = 1 << 0 // coordinator pin
	flagReg   = 1 << 1 // registered through RegisterBlobs
	flagDirty = 1 << 2 // in the dirty list: status may differ from what the next cycle computes
	flagInUse = 1 << 3 // the entry holds a blob (free entries have no flags)
	// flagTouched: in the list of entries the command being applied changed
	// (digest.go); cleared when the command ends.
	flagTouched = 1 << 4
	persistMsk  = flagCPin | flagReg
	keepOnFree  = flagDirty | flagTouched // list memberships that outlive a free entry
)

// entry is one blob: 56 bytes.
type entry struct {
	hash   Hash
	since  int64  // UNREFERENCED: since (cluster ns); COLLECTED: tombstone sequence
	refs   uint32 // live reports whose active set holds the blob
	pins   uint32 // live reports whose pinned set holds the blob
	status uint8  // Status
	flags  uint8
}

type page [pageSize]entry

// pageRef is a shard's page and the table generation that owns it; a page
// of an older generation is shared with a frozen view and is copied before
// it changes. The generation is kept here rather than in the page so that a
// page is 14,336 bytes, one of Go's size classes: with an 8-byte header it
// took a 16,384-byte block, 8 bytes a blob lost.
type pageRef struct {
	gen uint64
	p   *page
}

type shard struct {
	gen      uint64   // table generation that owns this header, pages and free
	slotsGen uint64   // table generation that owns slots
	slots    []uint32 // 0 = empty, tombstone, else tag<<24 | (local index + 1)
	pages    []pageRef
	length   uint32 // entries allocated (in use or free)
	free     []uint32
	n        int // entries in use
	tombs    int // tombstones in slots
}

type table struct {
	gen    uint64
	shards [numShards]*shard
	n      int
}

func newTable() *table {
	t := &table{gen: 1}
	for i := range t.shards {
		t.shards[i] = &shard{gen: t.gen, slotsGen: t.gen}
	}
	return t
}

// freeze returns a read-only view sharing all shards and makes later writes
// to the live table copy what they touch.
func (t *table) freeze() *table {
	v := *t
	t.gen++
	return &v
}

// home mixes all 32 bytes of the hash into the probe start. It is a fixed
// function, not a seeded one: the FSM uses no randomness, so every server
// lays out its table the same way. Blob hashes are content hashes, already
// uniform; the mixing only guards against structured test or client input.
func (t *table) home(h *Hash) uint64 {
	const k1, k2 = 0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9
	x := binary.LittleEndian.Uint64(h[0:]) * k1
	x ^= bits.RotateLeft64(binary.LittleEndian.Uint64(h[8:])*k2, 31)
	x ^= bits.RotateLeft64(binary.LittleEndian.Uint64(h[16:])*k1, 17)
	x ^= bits.RotateLeft64(binary.LittleEndian.Uint64(h[24:])*k2, 47)
	// The finaliser carries every input bit to the top byte (the tag).
	return fmix64(x)
}

func (s *shard) at(l uint32) *entry { return &s.pages[l>>pageBits].p[l&pageMask] }

// tag is the top byte of the hash value, kept in the slot so that probing
// rarely touches an entry that does not match.
func tag(hv uint64) uint32 { return uint32(hv>>56) << localBits }

const slotLocal = 1<<localBits - 1

// tombstone marks the slot of a removed entry. Its index field is 0, which
// no entry's slot holds (they hold index+1), so it never names an entry; its
// tag is 1 so that it is not the empty slot.
const tombstone = 1 << localBits

// names reports whether slot value v names an entry whose hash value has
// tag tg.
func names(v, tg uint32) bool { return v&^slotLocal == tg && v != tombstone }

func (t *table) lookup(h *Hash) (uint32, bool) {
	id, found, _, _ := t.probe(h)
	return id, found
}

// probe looks h up. When h is absent it also returns h's hash value and the
// slot where an insert places it: the first tombstone of its probe, else the
// empty slot that ends it (slot is -1 when the shard has no slots yet).
func (t *table) probe(h *Hash) (id uint32, found bool, hv uint64, slot int) {
	si := h[0]
	s := t.shards[si]
	if len(s.slots) == 0 {
		return noID, false, 0, -1
	}
	hv = t.home(h)
	tg := tag(hv)
	mask := uint64(len(s.slots) - 1)
	slot = -1
	for i := hv & mask; ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			if slot < 0 {
				slot = int(i)
			}
			return noID, false, hv, slot
		}
		if v == tombstone {
			if slot < 0 {
				slot = int(i)
			}
			continue
		}
		if v&^slotLocal == tg {
			if l := v&slotLocal - 1; s.at(l).hash == *h {
				return uint32(si)<<localBits | l, true, hv, 0
			}
		}
	}
}

// warmChunk is how many hashes warm loads ahead of the lookups: their slot
// and entry lines (64 B each) stay well inside a core's L2 cache.
const warmChunk = 256

// inOrder yields hs in order, calling warm on each chunk of warmChunk hashes
// before yielding it. Loops over a command's hashes use it in place of a
// plain range; loops that insert them use toInsert.
func (t *table) inOrder(hs []Hash) iter.Seq[Hash] { return t.chunks(hs, false) }

// toInsert is inOrder that also warms, for each chunk, the entries its
// hashes take if they are new (warmNew).
func (t *table) toInsert(hs []Hash) iter.Seq[Hash] { return t.chunks(hs, true) }

func (t *table) chunks(hs []Hash, inserting bool) iter.Seq[Hash] {
	return func(yield func(Hash) bool) {
		for lo := 0; lo < len(hs); lo += warmChunk {
			hi := min(len(hs), lo+warmChunk)
			t.warm(hs[lo:hi])
			if inserting {
				t.warmNew(hs[lo:hi])
			}
			for _, h := range hs[lo:hi] {
				if !yield(h) {
					return
				}
			}
		}
	}
}

// warm loads, for each of hs (at most warmChunk), the slot where its probe
// starts and then, where that slot's tag matches, the entry it names. These
// loads do not depend on one another, so the CPU overlaps their cache misses
// and the lookups that follow find the lines in cache. With millions of
// blobs the slots and entries are far larger than the caches, and a lookup
// on its own is a cache (and TLB) miss: the largest single cost of applying
// a batch. warm changes nothing.
func (t *table) warm(hs []Hash) {
	var hv [warmChunk]uint64
	var sink uint32
	for i := range hs {
		hv[i] = t.home(&hs[i])
		if s := t.shards[hs[i][0]]; len(s.slots) > 0 {
			sink += s.slots[hv[i]&uint64(len(s.slots)-1)]
		}
	}
	for i := range hs {
		if s := t.shards[hs[i][0]]; len(s.slots) > 0 {
			if v := s.slots[hv[i]&uint64(len(s.slots)-1)]; v != 0 && names(v, tag(hv[i])) {
				sink += uint32(s.at(v&slotLocal - 1).hash[1])
			}
		}
	}
	warmSink.Store(sink)
}

// warmNew loads, for each of hs (at most warmChunk), the entry that insert
// gives it if it is new: its shard's free entries from the end of the free
// list, then the entries after the shard's last. Every shard appends to a
// page of its own, so without this each new blob's entry is a cache miss
// of its own (three: the page reference, the page and the entry), after
// warm has already loaded its slot. A hash already present shifts the
// guesses after it by one entry, which costs only a wasted load.
func (t *table) warmNew(hs []Hash) {
	var sink uint32
	t.newEntries(hs, func(id uint32) { sink += uint32(t.get(id).flags) })
	warmSink.Store(sink)
}

// newEntries calls fn with the id of the entry insert gives each of hs (at
// most warmChunk) if all of them are new, skipping those on pages not
// allocated yet.
func (t *table) newEntries(hs []Hash, fn func(id uint32)) {
	var taken [numShards]uint16
	for i := range hs {
		si := hs[i][0]
		s := t.shards[si]
		k := uint32(taken[si])
		taken[si]++
		var l uint32
		if n := uint32(len(s.free)); k < n {
			l = s.free[n-1-k]
		} else if l = s.length + k - n; l >= uint32(len(s.pages))<<pageBits {
			continue
		}
		fn(uint32(si)<<localBits | l)
	}
}

// warmIDs is warm for entries named by id (at most warmChunk): it loads
// each entry and then, for those that freed (if not nil) reports are about
// to be removed, the slot where remove's probe starts. It changes nothing.
func (t *table) warmIDs(ids []uint32, freed func(*entry) bool) {
	var sink uint32
	for _, id := range ids {
		sink += uint32(t.get(id).status)
	}
	if freed != nil {
		for _, id := range ids {
			if e := t.get(id); freed(e) {
				s := t.shards[id>>localBits]
				sink += s.slots[t.home(&e.hash)&uint64(len(s.slots)-1)]
			}
		}
	}
	warmSink.Store(sink)
}

// warmSink receives warm's loads so that the compiler keeps them; it is never
// read. It is atomic because queries warm too, concurrently, under the read
// lock.
var warmSink atomic.Uint32

// get returns the entry for reading only.
func (t *table) get(id uint32) *entry {
	return t.shards[id>>localBits].at(id & localMask)
}

// valid reports whether id names an entry in use.
func (t *table) valid(id uint32) bool {
	s := t.shards[id>>localBits]
	l := id & localMask
	return l < s.length && s.at(l).flags&flagInUse != 0
}

// each calls fn for every entry in use, in index order.
func (s *shard) each(fn func(l uint32, e *entry)) {
	for pi, r := range s.pages {
		base := uint32(pi) << pageBits
		end := min(uint32(pageSize), s.length-base)
		for k := uint32(0); k < end; k++ {
			if e := &r.p[k]; e.flags&flagInUse != 0 {
				fn(base+k, e)
			}
		}
	}
}

func (t *table) mutShard(si int) *shard {
	s := t.shards[si]
	if s.gen == t.gen {
		return s
	}
	c := *s
	c.gen = t.gen
	c.pages = append(make([]pageRef, 0, cap(s.pages)), s.pages...)
	c.free = append([]uint32(nil), s.free...)
	t.shards[si] = &c
	return &c
}

func (t *table) mutSlots(s *shard) {
	if s.slotsGen != t.gen {
		s.slots = append([]uint32(nil), s.slots...)
		s.slotsGen = t.gen
	}
}

func (t *table) mutEntry(s *shard, l uint32) *entry {
	r := &s.pages[l>>pageBits]
	if r.gen != t.gen {
		c := new(page)
		*c = *r.p
		*r = pageRef{gen: t.gen, p: c}
	}
	return &r.p[l&pageMask]
}

// newLocal appends an entry to shard s (owned by the live generation),
// with a new page when the entry starts one, and returns its index.
func (t *table) newLocal(s *shard) uint32 {
	local := s.length
	if local&pageMask == 0 {
		s.pages = append(s.pages, pageRef{gen: t.gen, p: new(page)})
	}
	s.length++
	return local
}

// clearFlag clears flag on entry id, also on a free entry (which keeps its
// list memberships, see keepOnFree), and reports whether it was set.
func (t *table) clearFlag(id uint32, flag uint8) bool {
	s := t.shards[id>>localBits]
	if l := id & localMask; l >= s.length || s.at(l).flags&flag == 0 {
		return false
	}
	t.mut(id).flags &^= flag
	return true
}

// mut returns the entry for writing.
func (t *table) mut(id uint32) *entry {
	s := t.mutShard(int(id >> localBits))
	return t.mutEntry(s, id&localMask)
}

// insert returns the id of h, adding an entry (status NOT_FOUND, in use, no
// other flags) if it is absent. ok is false only if the shard is full.
func (t *table) insert(h *Hash) (id uint32, created, ok bool) {
	id, found, hv, slot := t.probe(h)
	if found {
		return id, false, true
	}
	si := int(h[0])
	s := t.mutShard(si)
	var local uint32
	if n := len(s.free); n > 0 {
		local = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		if s.length >= maxLocal {
			return noID, false, false
		}
		local = t.newLocal(s)
	}
	e := t.mutEntry(s, local)
	// A recycled entry keeps flagDirty and flagTouched: its id is still
	// in those lists.
	*e = entry{hash: *h, flags: flagInUse | e.flags&keepOnFree}
	s.n++
	t.n++
	switch {
	case slot >= 0 && s.slots[slot] == tombstone:
		t.mutSlots(s)
		s.slots[slot] = tag(hv) | (local + 1)
		s.tombs--
	case (s.n+s.tombs+1)*4 > len(s.slots)*3:
		t.rehash(s)
	default:
		// The probe's empty slot: a copy made by mutSlots keeps positions.
		t.mutSlots(s)
		s.slots[slot] = tag(hv) | (local + 1)
	}
	return uint32(si)<<localBits | local, true, true
}

func (t *table) place(s *shard, local uint32) {
	mask := uint64(len(s.slots) - 1)
	hv := t.home(&s.at(local).hash)
	i := hv & mask
	for s.slots[i] != 0 {
		i = (i + 1) & mask
	}
	s.slots[i] = tag(hv) | (local + 1)
}

// rehash rebuilds s's slots without tombstones (a fresh array, so it needs
// no copy-on-write), placing every entry in use. The size stays when the
// live entries fill at most half of it, so that a shard whose entries come
// and go does not grow; otherwise it doubles (or more).
func (t *table) rehash(s *shard) {
	size := max(minSlots, len(s.slots))
	if (s.n+1)*2 > size {
		size <<= 1
	}
	for (s.n+1)*4 > size*3 {
		size <<= 1
	}
	s.slots = make([]uint32, size)
	s.slotsGen = t.gen
	s.tombs = 0
	s.each(func(l uint32, _ *entry) { t.place(s, l) })
}

// remove deletes the entry id and recycles its index. Its slot becomes a
// tombstone, or empty when the next slot is empty (no probe passes it
// then), and so do the tombstones just before it.
func (t *table) remove(id uint32) {
	si := int(id >> localBits)
	local := id & localMask
	s := t.mutShard(si)
	t.mutSlots(s)
	mask := uint64(len(s.slots) - 1)
	i := t.home(&s.at(local).hash) & mask
	for s.slots[i]&slotLocal != local+1 {
		i = (i + 1) & mask
	}
	if s.slots[(i+1)&mask] != 0 {
		s.slots[i] = tombstone
		s.tombs++
	} else {
		s.slots[i] = 0
		for j := (i - 1) & mask; s.slots[j] == tombstone; j = (j - 1) & mask {
			s.slots[j] = 0
			s.tombs--
		}
	}
	e := t.mutEntry(s, local)
	*e = entry{flags: e.flags & keepOnFree} // still listed

	s.free = append(s.free, local)
	s.n--
	t.n--
}

// appendUnplaced adds an entry for h without a slot; it is for bulk loading
// hashes known to be absent, followed by placeAll. ok is false if the shard
// is full.
func (t *table) appendUnplaced(h *Hash) (uint32, bool) {
	si := int(h[0])
	s := t.mutShard(si)
	if s.length >= maxLocal {
		return noID, false
	}
	local := t.newLocal(s)
	*t.mutEntry(s, local) = entry{hash: *h, flags: flagInUse}
	s.n++
	t.n++
	return uint32(si)<<localBits | local, true
}

// placeAll rebuilds every shard's slots at a load of at most 3/4.
func (t *table) placeAll() {
	for si := range t.shards {
		s := t.mutShard(si)
		size := minSlots
		for (s.n+1)*4 > size*3 {
			size <<= 1
		}
		s.slots = make([]uint32, size)
		s.slotsGen = t.gen
		s.tombs = 0
		s.each(func(l uint32, _ *entry) { t.place(s, l) })
	}
}
