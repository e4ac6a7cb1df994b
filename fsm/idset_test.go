package fsm

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// Keys rotate ids so that the shard is the low byte; sortedKeys sorts them
// (radix above 1,024) and idOrder brings a sorted key list back to id order.
func TestSetKeys(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 5, 1023, 1024, 5000} {
		ids := make([]uint32, n)
		for i := range ids {
			ids[i] = uint32(r.IntN(numShards))<<localBits | uint32(r.IntN(1<<20))
		}
		slices.Sort(ids)
		ids = slices.Compact(ids)
		keys := sortedKeys(slices.Clone(ids))
		if !slices.IsSorted(keys) {
			t.Fatalf("%d ids: keys not sorted", n)
		}
		back := idOrder(keys)
		for i, k := range back {
			if keyID(k) != ids[i] {
				t.Fatalf("%d ids: idOrder gives id %#x at %d, want %#x", n, keyID(k), i, ids[i])
			}
		}
		set := setOfKeys(keys)
		var seen []uint32
		set.each(func(id uint32) { seen = append(seen, id) })
		if !slices.Equal(seen, ids) || set.len() != len(ids) {
			t.Fatalf("%d ids: each gives %d ids, not the set in id order", n, len(seen))
		}
		for _, id := range ids[:min(len(ids), 10)] {
			if !set.contains(id) || set.add(id) || !set.remove(id) || set.contains(id) {
				t.Fatalf("id %#x: contains/add/remove disagree", id)
			}
		}
	}
}

// A set of hashes spread over all shards shares roaring containers: the
// reason for keys. 200 random ids of a 1,600-blob table fit one container.
func TestSetKeysShareContainers(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ids := make([]uint32, 200)
	for i := range ids {
		ids[i] = uint32(r.IntN(numShards))<<localBits | uint32(r.IntN(8))
	}
	slices.Sort(ids)
	set := setOfKeys(sortedKeys(slices.Compact(ids)))
	if c := set.bm.Stats().Containers; c != 1 {
		t.Fatalf("%d containers, want 1", c)
	}
}
