package fsm

import (
	"math/bits"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"
)

// idSet is a node's active or pinned set of blob ids: a roaring bitmap of
// set keys, each id rotated left by 8 bits so that the shard (the hash's
// first byte, random) is the low byte and the index within the shard the
// high bits. Roaring spends a container per distinct high 16 bits; with
// plain ids those were the shard, so a set of a few hundred hashes took a
// container, two allocations, for nearly every member. With keys, members
// share containers by index range: one container for all of them below 64K
// blobs, about 16 below 1M.
//
// Key order is not id order. Code that walks a set in order (replaceSets'
// merges) works on keys throughout and turns a key into an id only to touch
// the table.
type idSet struct{ bm *roaring.Bitmap }

func setKey(id uint32) uint32 { return bits.RotateLeft32(id, 8) }
func keyID(k uint32) uint32   { return bits.RotateLeft32(k, -8) }

// setOfKeys returns the set of keys, which must be sorted and distinct.
func setOfKeys(keys []uint32) idSet {
	b := roaring.New()
	b.SetCopyOnWrite(true)
	b.AddMany(keys)
	return idSet{b}
}

// sortedKeys turns ids into their sorted keys, in place. Large lists are
// radix sorted: ids often arrive in id order (a restore inserts hashes in
// order), which pdqsort would find sorted, but their keys are not.
func sortedKeys(ids []uint32) []uint32 {
	for i, id := range ids {
		ids[i] = setKey(id)
	}
	if len(ids) < 1024 {
		slices.Sort(ids)
		return ids
	}
	tmp := make([]uint32, len(ids))
	for shift := 0; shift < 32; shift += 16 {
		byByte(tmp, ids, shift)
		byByte(ids, tmp, shift+8)
	}
	return ids
}

// byByte copies src into dst sorted by the byte at shift, stably: one pass
// of a radix sort.
func byByte(dst, src []uint32, shift int) {
	var at [257]int
	for _, k := range src {
		at[(k>>shift)&0xff+1]++
	}
	for i := 1; i < len(at); i++ {
		at[i] += at[i-1]
	}
	for _, k := range src {
		b := (k >> shift) & 0xff
		dst[at[b]] = k
		at[b]++
	}
}

func (s idSet) contains(id uint32) bool { return s.bm.Contains(setKey(id)) }
func (s idSet) add(id uint32) bool      { return s.bm.CheckedAdd(setKey(id)) }
func (s idSet) remove(id uint32) bool   { return s.bm.CheckedRemove(setKey(id)) }
func (s idSet) len() int                { return int(s.bm.GetCardinality()) }

// clone is copy-on-write: containers are copied when either side changes.
func (s idSet) clone() idSet { return idSet{s.bm.Clone()} }

// ids returns the set's ids in increasing order: walks over a large set
// touch the table shard by shard, as its pages lie.
func (s idSet) ids() []uint32 {
	ids := idOrder(s.appendKeys(nil))
	for i, k := range ids {
		ids[i] = keyID(k)
	}
	return ids
}

// each calls fn with every id, in increasing order.
func (s idSet) each(fn func(id uint32)) {
	for _, id := range s.ids() {
		fn(id)
	}
}

// idOrder returns sorted keys reordered so that their ids ascend: a
// counting sort on the key's low byte (the shard), since within a shard the
// keys ascend with the ids.
func idOrder(keys []uint32) []uint32 {
	if len(keys) == 0 {
		return keys
	}
	out := make([]uint32, len(keys))
	byByte(out, keys, 0) // the shard: numShards is 256
	return out
}

// appendKeys appends the set's keys, sorted, to dst.
func (s idSet) appendKeys(dst []uint32) []uint32 {
	dst = slices.Grow(dst, s.len())
	it := s.bm.ManyIterator()
	for {
		buf := dst[len(dst):cap(dst)]
		k := it.NextMany(buf)
		if k == 0 {
			return dst
		}
		dst = dst[:len(dst)+k]
	}
}
