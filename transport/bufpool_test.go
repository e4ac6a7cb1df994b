package transport

import (
	"testing"

	"google.golang.org/grpc/mem"
)

// A message gets a buffer of at most twice its size, so the pool's clear
// on Get stays proportional to it (grpc-go's own tiers jump from 32 KiB to
// 1 MiB).
func TestBufferPoolTiersFollowTheMessage(t *testing.T) {
	pool := mem.DefaultBufferPool()
	for _, size := range []int{34 << 10, 300 << 10, 5 << 20} {
		b := pool.Get(size)
		if c := cap(*b); c < size || c > 2*size {
			t.Errorf("a %d-byte message gets a buffer of %d bytes", size, c)
		}
		pool.Put(b)
	}
}
