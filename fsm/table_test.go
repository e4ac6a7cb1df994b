package fsm

import (
	"maps"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// A page is its entries and nothing else, 14,336 bytes: one of Go's size
// classes. A header field would put every page in a 16,384-byte block and
// cost 8 bytes a blob (BenchmarkMemory).
func TestPageIsOnlyEntries(t *testing.T) {
	if got, want := unsafe.Sizeof(page{}), pageSize*unsafe.Sizeof(entry{}); got != want || got != 14336 {
		t.Fatalf("a page is %d bytes, want %d entries of %d bytes = 14336", got, pageSize, unsafe.Sizeof(entry{}))
	}
}

// The table against a map: random inserts and removes of keys crowded into
// four shards (long probe chains, tombstones, growth, recycled ids), with
// every key looked up and the slots checked every 1,000 steps, and frozen
// views that later writes must not change.
func TestTableAgainstAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]Hash, 3000)
	for i := range keys {
		keys[i] = hn(uint64(i))
		keys[i][0] = byte(i % 4)
	}
	tab := newTable()
	want := map[Hash]uint32{}
	check := func(tab *table, want map[Hash]uint32, what string) {
		t.Helper()
		for _, h := range keys {
			id, ok := tab.lookup(&h)
			if wid, wok := want[h]; ok != wok || ok && id != wid {
				t.Fatalf("%s: lookup = %d, %v; want %d, %v", what, id, ok, wid, wok)
			}
		}
		if tab.n != len(want) {
			t.Fatalf("%s: %d entries, want %d", what, tab.n, len(want))
		}
		checkSlots(t, tab)
	}
	var views []*table
	var viewWants []map[Hash]uint32
	for step := 1; step <= 100_000; step++ {
		h := keys[rng.IntN(len(keys))]
		if rng.IntN(5) < 3 {
			id, created, ok := tab.insert(&h)
			wid, present := want[h]
			if !ok || created == present || present && id != wid {
				t.Fatalf("step %d: insert = %d, %v, %v; had %d, %v", step, id, created, ok, wid, present)
			}
			want[h] = id
		} else if id, ok := want[h]; ok {
			tab.remove(id)
			delete(want, h)
		}
		if step%1000 == 0 {
			check(tab, want, "live table")
		}
		if step%25_000 == 0 {
			views = append(views, tab.freeze())
			viewWants = append(viewWants, maps.Clone(want))
		}
	}
	for i, v := range views {
		check(v, viewWants[i], "frozen view")
	}
}

// checkSlots checks every shard's slot counts: tombstones as counted, every
// other non-empty slot an entry in use, and at most 3/4 of the slots taken.
func checkSlots(t *testing.T, tab *table) {
	t.Helper()
	for si, s := range tab.shards {
		tombs, used := 0, 0
		for _, v := range s.slots {
			switch {
			case v == tombstone:
				tombs++
			case v != 0:
				used++
			}
		}
		if tombs != s.tombs || used != s.n || (used+tombs)*4 > len(s.slots)*3 {
			t.Fatalf("shard %d: %d tombstones (counted %d), %d entries (counted %d) in %d slots", si, tombs, s.tombs, used, s.n, len(s.slots))
		}
	}
}

// A shard whose entries come and go, as when full reports replace a node's
// hashes, keeps its size: tombstones are cleared by rebuilding the slots at
// the same size, not by doubling them.
func TestTableChurnKeepsItsSize(t *testing.T) {
	const live = 1000
	tab := newTable()
	key := func(i int) Hash {
		h := hn(uint64(i))
		h[0] = 7
		return h
	}
	ids := make([]uint32, 0, live)
	for i := range live {
		id, _, _ := tab.insert(new(key(i)))
		ids = append(ids, id)
	}
	size := len(tab.shards[7].slots)
	rng := rand.New(rand.NewPCG(3, 4))
	for next := live; next < 100*live; next++ {
		j := rng.IntN(live)
		tab.remove(ids[j])
		id, created, ok := tab.insert(new(key(next)))
		if !created || !ok {
			t.Fatalf("insert of key %d: created %v, ok %v", next, created, ok)
		}
		ids[j] = id
	}
	checkSlots(t, tab)
	if got := len(tab.shards[7].slots); got != size {
		t.Fatalf("after churn the shard has %d slots, %d before", got, size)
	}
	if tab.shards[7].tombs == 0 {
		t.Fatal("no tombstones: the test does not exercise them")
	}
	for _, id := range ids {
		h := tab.get(id).hash
		if got, ok := tab.lookup(&h); !ok || got != id {
			t.Fatalf("lookup of a live key = %d, %v; want %d", got, ok, id)
		}
	}
}

// newEntries names the entries insert gives new hashes: recycled ones from
// the end of each shard's free list, then new ones after the shard's last,
// on every shard a chunk touches at once.
func TestNewEntriesAreTheOnesInsertGives(t *testing.T) {
	tab := newTable()
	var ids []uint32
	for i := range 3000 {
		id, _, _ := tab.insert(new(hn(uint64(i))))
		ids = append(ids, id)
	}
	for _, id := range ids[:500] {
		tab.remove(id) // some shards now have free entries
	}
	for round := range 8 {
		hs := make([]Hash, warmChunk)
		for i := range hs {
			hs[i] = hn(uint64(10_000 + round*warmChunk + i))
		}
		want := map[uint32]bool{}
		tab.newEntries(hs, func(id uint32) { want[id] = true })
		var pages [numShards]int // entries on pages added by the inserts are not named
		for si, sh := range tab.shards {
			pages[si] = len(sh.pages)
		}
		got := 0
		for i := range hs {
			id, created, _ := tab.insert(&hs[i])
			if !created {
				t.Fatalf("hash %d was not new", i)
			}
			if int(id&localMask>>pageBits) < pages[id>>localBits] {
				if !want[id] {
					t.Fatalf("round %d: insert gave entry %#x, which newEntries did not name", round, id)
				}
				got++
			}
		}
		if got < len(hs)/2 {
			t.Fatalf("round %d: only %d of %d entries checked", round, got, len(hs))
		}
	}
}

// The state stays within its memory budget: 100 bytes a known blob plus 16
// a node reference (BenchmarkMemory measures it at 1M and 10M blobs).
func TestMemoryWithinBudget(t *testing.T) {
	const known = 500_000
	heap, budget := stateHeap(t, known)
	t.Logf("%.1f bytes a blob, %.2f of the budget", heap/known, heap/budget)
	if heap > budget {
		t.Fatalf("the state of %d blobs takes %.1f bytes a blob: over the budget of 100 a blob and 16 a reference", known, heap/known)
	}
}
