package transport

import (
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
)

// grpc-go takes the buffers it reads and encodes messages into from one
// process-wide pool. Its default pool has tiers of 256 B, 4, 16 and 32 KiB
// and 1 MiB, and zeroes a buffer's whole capacity when it hands it out, so
// every message between 32 KiB and 1 MiB (a RegisterBlobs of 1,000 hashes,
// an AppendEntries batch) cost clearing 1 MiB, at each encode and decode:
// 5 % of a leader's CPU under bulk writes. A tier at every power of two up
// to 16 MiB keeps the clear within twice the message. A blobgc process
// speaks gRPC only through this package's server and peers and the client
// package, so the pool is set once, when the package loads.
func init() {
	var exps []uint8
	for e := uint8(8); e <= 24; e++ {
		exps = append(exps, e)
	}
	p, err := mem.NewBinaryTieredBufferPool(exps...)
	if err != nil {
		panic(err) // the exponents above are valid
	}
	experimental.SetDefaultBufferPool(p)
}
