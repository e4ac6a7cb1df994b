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
// four shards (long probe chains, backward-shift deletion, growth, recycled
// ids), with every key looked up every 1,000 steps, and frozen views that
// later writes must not change.
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
