package sweeper_test

import (
	"testing"

	"github.com/blobgc/blobgc/sweeper"
)

// BenchmarkSweep measures one sweep of 2,000 eligible blobs (claim, delete,
// confirm, in batches of 1,000) against a 3-server cluster on loopback.
// Registering and marking the blobs is not timed.
func BenchmarkSweep(b *testing.B) {
	const n = 2000
	e := startB(b)
	// A cycle marks nothing until min_nodes_reporting (1) nodes report.
	if err := e.cl.Reporter("vm1").Full(e.ctx, nil, nil); err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		hs := e.put(1_000_000+i*n, n)
		e.markAll(hs)
		b.StartTimer()
		sum, err := sweeper.Run(e.ctx, e.cl, e.store, sweeper.Options{})
		if err != nil || sum.Deleted != n || sum.Confirmed != n {
			b.Fatalf("sweep: %v %v", sum, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "blobs/s")
}
