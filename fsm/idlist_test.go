package fsm

import (
	"slices"
	"testing"
)

// The dirty list reads back what was added, from any position, across chunk
// boundaries and after a reset.
func TestIDListKeepsOrderAcrossChunks(t *testing.T) {
	var l idList
	var want []uint32
	for round, n := range []int{3*idChunk + 5, idChunk, 7, 0, idChunk + 1} {
		for i := range n {
			id := uint32(round<<24 | i*7)
			l.add(id)
			want = append(want, id)
		}
		if l.len() != len(want) {
			t.Fatalf("round %d: len %d, want %d", round, l.len(), len(want))
		}
		for _, from := range []int{0, 1, idChunk - 1, idChunk, idChunk + 1, 2*idChunk + 3, len(want) - 1, len(want)} {
			if from < 0 || from > len(want) {
				continue
			}
			if got := slices.Collect(l.from(from)); !slices.Equal(got, want[from:]) {
				t.Fatalf("round %d: from(%d) gives %d ids, want %d (or in another order)", round, from, len(got), len(want)-from)
			}
		}
		for range l.from(0) {
			break // stopping early must not panic
		}
		l.reset()
		want = want[:0]
		if l.len() != 0 || len(slices.Collect(l.from(0))) != 0 {
			t.Fatalf("round %d: not empty after reset", round)
		}
		if len(l.chunks) > 1 {
			t.Fatalf("round %d: reset keeps %d chunks", round, len(l.chunks))
		}
	}
}
