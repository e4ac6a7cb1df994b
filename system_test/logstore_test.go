package systemtest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blobgc/blobgc/client"
)

// Torn writes: servers are SIGKILLed while a stream of concurrent writes is
// being appended to their logs (the leader first, mid group commit), and
// restarted from what reached the disk. For each log store, every server
// restarts with a log it can use, the replicas converge to the same digest
// at the same index, and every acknowledged write is there.
func TestKilledMidAppendRestartsWithAConsistentLog(t *testing.T) {
	for _, store := range []string{"wal", "boltdb"} {
		t.Run(store, func(t *testing.T) {
			pc := startProcs(t, 3, testTimings, "--log-store="+store, "--snapshot-threshold=500", "--trailing-logs=200")
			c := pc.newClient()
			pc.waitLeader(c)
			ctx := ctxT(t, 3*time.Minute)

			var (
				mu    sync.Mutex
				acked []client.Hash
				next  atomic.Int64
				stop  = make(chan struct{})
				wg    sync.WaitGroup
			)
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						h := hashN(int(next.Add(1)))
						cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
						_, err := c.Pin(cctx, []client.Hash{h})
						cancel()
						if err == nil {
							mu.Lock()
							acked = append(acked, h)
							mu.Unlock()
						}
					}
				}()
			}
			count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
			for round := 0; round < 4; round++ {
				at := count() + 150
				eventually(t, time.Minute, "writes flowing before a kill", func() bool { return count() >= at })
				victim := pc.index(pc.waitLeader(c))
				if round%2 == 1 {
					victim = (victim + 1) % len(pc.procs) // a follower, mid append too
				}
				pc.kill(victim)
				pc.start(victim)
			}
			at := count() + 150
			eventually(t, time.Minute, "writes flowing after the last restart", func() bool { return count() >= at })
			close(stop)
			wg.Wait()

			pc.waitLeader(c)
			pc.waitConverged(c)
			mu.Lock()
			defer mu.Unlock()
			for i, h := range acked {
				st, err := c.Status(ctx, h)
				if err != nil {
					t.Fatal(err)
				}
				if !st.CoordinatorPin {
					t.Fatalf("acknowledged pin %d of %d lost after the kills: %v", i, len(acked), st)
				}
			}
			t.Logf("%s: %d acknowledged pins survived 4 SIGKILLs mid-append", store, len(acked))
		})
	}
}
