package systemtest

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blobgc/blobgc/client"
)

// BenchmarkFailover measures, per op, the time from SIGKILL of the leader
// process to the first acknowledged write, through a client that knew the
// old leader. The killed server is restarted and caught up (untimed) before
// the next kill. Run with -benchtime=10x for the 10 kills of BENCHMARKS.md.
func BenchmarkFailover(b *testing.B) {
	for _, bc := range []struct {
		name string
		tm   timings
	}{
		{"timings=lan-default", nil},
		{"timings=test", testTimings},
	} {
		b.Run(bc.name, func(b *testing.B) {
			pc := startProcs(b, 3, bc.tm)
			c := pc.newClient()
			pc.waitLeader(c)
			ctx := context.Background()
			var gaps []time.Duration
			n := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				leader := pc.waitLeader(c)
				pc.waitConverged(c)
				// The client sends to the leader it knows.
				if _, err := c.Pin(ctx, []client.Hash{hashN(n)}); err != nil {
					b.Fatal(err)
				}
				n++
				if c.Leader() != leader {
					b.Fatalf("client leader %q, want %q", c.Leader(), leader)
				}
				li := pc.index(leader)
				b.StartTimer()
				start := time.Now()
				pc.kill(li)
				if _, err := c.Pin(ctx, []client.Hash{hashN(n)}); err != nil {
					b.Fatalf("first write after kill %d: %v", i, err)
				}
				gap := time.Since(start)
				b.StopTimer()
				n++
				gaps = append(gaps, gap)
				pc.start(li)
				b.StartTimer()
			}
			b.StopTimer()
			slices.Sort(gaps)
			b.ReportMetric(float64(gaps[len(gaps)/2].Microseconds())/1000, "median-ms")
			b.ReportMetric(float64(gaps[len(gaps)-1].Microseconds())/1000, "max-ms")
			b.ReportMetric(float64(gaps[0].Microseconds())/1000, "min-ms")
		})
	}
}

// BenchmarkPin measures pins (one fresh hash per request) against three
// server processes with LAN default timings, with 1 and 64 concurrent
// clients (each its own client.Client with its own connections).
func BenchmarkPin(b *testing.B) {
	pc := startProcs(b, 3, nil)
	pc.waitLeader(pc.newClient())
	var base atomic.Int64
	for _, clients := range []int{1, 64} {
		b.Run("clients="+strconv.Itoa(clients), func(b *testing.B) {
			cs := make([]*client.Client, clients)
			for i := range cs {
				cs[i] = pc.newClient()
				if _, err := cs[i].Stats(context.Background()); err != nil { // learn the leader
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			lat := make([][]time.Duration, clients)
			first := base.Add(int64(b.N)) - int64(b.N)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for g := 0; g < clients; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						t0 := time.Now()
						if _, err := cs[g].Pin(context.Background(), []client.Hash{hashN(int(first + i))}); err != nil {
							b.Error(err)
							return
						}
						lat[g] = append(lat[g], time.Since(t0))
					}
				}(g)
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) == 0 {
				return
			}
			b.ReportMetric(float64(len(all))/el.Seconds(), "pins/s")
			b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
