package dockertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/blobgc/blobgc/client"
)

// BenchmarkComposeFailover measures, on the 3- and the 5-server compose
// cluster, the time from `docker kill` of the leader's container (once the command has
// returned) to the first acknowledged write, sent from the host through the
// Go client to every published port. Between iterations (untimed) the
// container is started again and the servers converge. Each iteration takes
// several seconds: run it with a fixed count, e.g. -benchtime=5x.
func BenchmarkComposeFailover(b *testing.B) {
	for _, n := range []int{3, 5} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) { benchFailover(b, n) })
	}
}

func benchFailover(b *testing.B, n int) {
	c := startCluster(b, n)
	c.waitVoters(formTimeout, "")
	// Retry fast, so the measurement is the cluster's, not the backoff's.
	cl := c.newClient(client.WithCallTimeout(time.Second), client.WithBackoff(5*time.Millisecond, 25*time.Millisecond))
	var worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		m := c.waitVoters(failoverTimeout, "")
		id := c.containerID(m.LeaderId)
		h, err := client.ParseHash(newHash())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := docker("kill", id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		var idx uint64
		waitFor(b, failoverTimeout, "a write after the kill", func(ctx context.Context) error {
			resp, err := cl.RegisterBlobs(ctx, []client.Hash{h})
			if err == nil {
				idx = resp.AppliedIndex
			}
			return err
		})
		d := time.Since(start)
		b.StopTimer()
		worst = max(worst, d)
		if _, err := docker("start", id); err != nil {
			b.Fatal(err)
		}
		c.waitConverged(catchUpTimeout, idx)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/failover")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
}
