package systemtest

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/blobgc/blobgc/client"
)

// BenchmarkPausedLeaderFailover measures, per op, the time from SIGSTOP of
// the leader process to the first acknowledged write through a client that
// was talking to it, the freeze counterpart of BenchmarkFailover (a stopped
// process keeps its connections open, so nothing fails fast). The leader is
// continued and the cluster converges (untimed) before the next op. Run
// with -benchtime=3x.
func BenchmarkPausedLeaderFailover(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []client.Option
	}{
		{"client=default", nil},
		{"client=calltimeout-1s", []client.Option{client.WithCallTimeout(time.Second)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			pc := startProcs(b, 3, testTimings)
			all := pc.newClient()
			c, err := client.New(pc.addrs(), append([]client.Option{client.WithBackoff(5*time.Millisecond, 100*time.Millisecond)}, bc.opts...)...)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			var gaps []time.Duration
			n := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				leader := pc.waitLeader(all)
				pc.waitConverged(all)
				// The client learns the leader and opens its connection.
				if _, err := c.Pin(ctx, []client.Hash{hashN(n)}); err != nil {
					b.Fatal(err)
				}
				n++
				old := pc.procs[pc.index(leader)]
				b.StartTimer()
				start := time.Now()
				if err := old.pause(); err != nil {
					b.Fatal(err)
				}
				_, err := c.Pin(ctx, []client.Hash{hashN(n)})
				gap := time.Since(start)
				b.StopTimer()
				old.cmd.Process.Signal(syscall.SIGCONT)
				if err != nil {
					b.Fatalf("first write after SIGSTOP %d: %v", i, err)
				}
				n++
				gaps = append(gaps, gap)
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
