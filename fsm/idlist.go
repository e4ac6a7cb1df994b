package fsm

import "iter"

// idList is the dirty list: ids appended one at a time, millions of them
// after a bulk registration, and read back in order by the next cycle. It
// keeps them in chunks of idChunk ids, so that it grows without copying. A
// slice that outgrows its capacity moves to fresh memory a quarter larger
// (once it is large); with cycles far apart those moves, and the page
// faults of the fresh memory, took a seventh of all CPU while a cluster
// registered blobs.
type idList struct {
	chunks [][]uint32 // all full (idChunk ids) but the last
	n      int
}

const idChunk = 1 << 14 // 64 KiB

func (l *idList) len() int { return l.n }

func (l *idList) add(id uint32) {
	k := len(l.chunks) - 1
	if k < 0 || len(l.chunks[k]) == idChunk {
		var c []uint32 // the first chunk grows as a slice does: most lists are short
		if k >= 0 {
			c = make([]uint32, 0, idChunk)
		}
		l.chunks = append(l.chunks, c)
		k++
	}
	l.chunks[k] = append(l.chunks[k], id)
	l.n++
}

// from yields the ids from the i-th on, in the order they were added.
func (l *idList) from(i int) iter.Seq[uint32] {
	return func(yield func(uint32) bool) {
		for k := i / idChunk; k < len(l.chunks); k++ {
			lo := 0
			if k == i/idChunk {
				lo = i % idChunk
			}
			for _, id := range l.chunks[k][lo:] {
				if !yield(id) {
					return
				}
			}
		}
	}
}

// reset empties the list. It keeps the first chunk for the next ids and
// lets the others go: a bulk registration's list is not held until the
// next one.
func (l *idList) reset() {
	if len(l.chunks) > 0 {
		clear(l.chunks[1:])
		l.chunks = l.chunks[:1]
		l.chunks[0] = l.chunks[0][:0]
	}
	l.n = 0
}
