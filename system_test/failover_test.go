package systemtest

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/blobgc/blobgc/client"
)

// electionWatch polls the servers other than a stopped leader and records
// when one of them first names another leader: the moment the cluster
// elected (and a follower learned) the new leader.
type electionWatch struct {
	mu      sync.Mutex
	at      time.Time
	leader  string
	stop    chan struct{}
	stopped sync.WaitGroup
}

func watchElection(t testing.TB, addrs []string, old string) *electionWatch {
	t.Helper()
	w := &electionWatch{stop: make(chan struct{})}
	for _, a := range addrs {
		if a == old {
			continue
		}
		cc, err := grpc.NewClient("passthrough:///"+a, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		w.stopped.Add(1)
		go func() {
			defer w.stopped.Done()
			defer cc.Close()
			hc := healthpb.NewHealthClient(cc)
			for {
				select {
				case <-w.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				var hdr metadata.MD
				_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
				cancel()
				now := time.Now()
				if l := hdr.Get(client.LeaderHeader); err == nil && len(l) > 0 && l[0] != old {
					w.mu.Lock()
					if w.at.IsZero() || now.Before(w.at) {
						w.at, w.leader = now, l[0]
					}
					w.mu.Unlock()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return w
}

// result stops the watch and returns when and which new leader was seen.
func (w *electionWatch) result() (time.Time, string) {
	close(w.stop)
	w.stopped.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.at, w.leader
}

// A write sent to a leader that then freezes (SIGSTOP) is taken over by the
// new leader: another server names it while the attempt waits, and the
// client retries there. The call timeout is longer than the caller's
// deadline, so only that leader check can make the write succeed.
func TestFrozenLeader_WriteSucceedsOnNewLeader(t *testing.T) {
	pc := startProcs(t, 3, testTimings)
	all := pc.newClient()
	c, err := client.New(pc.addrs(), client.WithCallTimeout(time.Hour), client.WithBackoff(5*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The client learns the leader and connects to it.
	var leader string
	eventually(t, time.Minute, "the client following the leader", func() bool {
		if _, err := c.Pin(ctxT(t, time.Minute), []client.Hash{hashN(0)}); err != nil {
			return false
		}
		leader = pc.waitLeader(all)
		return c.Leader() == leader
	})
	old := pc.procs[pc.index(leader)]
	w := watchElection(t, pc.addrs(), leader)
	if err := old.pause(); err != nil {
		t.Fatal(err)
	}
	defer old.cmd.Process.Signal(syscall.SIGCONT)
	_, err = c.Pin(ctxT(t, time.Minute), []client.Hash{hashN(1)})
	_, newLeader := w.result()
	if err != nil {
		t.Fatalf("write while the leader %s was stopped: %v", old.id, err)
	}
	if newLeader == "" || c.Leader() != newLeader {
		t.Fatalf("client follows %q after the write; the new leader seen by the followers is %q", c.Leader(), newLeader)
	}
	st, err := c.Status(ctxT(t, time.Minute), hashN(1))
	if err != nil || !st.CoordinatorPin {
		t.Fatalf("the acknowledged pin is not in the new leader's state: %v %v", st, err)
	}
}

// BenchmarkFrozenLeaderElectionToWrite measures, per op, the time from the
// moment a follower first names the new leader (polled every 5 ms) to the
// first acknowledged write of a client that was talking to the frozen
// leader: how long a client lags behind the election. The frozen leader is
// continued and the cluster converges (untimed) before the next op. Run with
// -benchtime=5x.
func BenchmarkFrozenLeaderElectionToWrite(b *testing.B) {
	pc := startProcs(b, 3, testTimings)
	all := pc.newClient()
	c, err := client.New(pc.addrs(), client.WithBackoff(5*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var gaps, freezeToWrite []time.Duration
	n := 0
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		leader := pc.waitLeader(all)
		pc.waitConverged(all)
		if _, err := c.Pin(context.Background(), []client.Hash{hashN(n)}); err != nil {
			b.Fatal(err)
		}
		n++
		old := pc.procs[pc.index(leader)]
		w := watchElection(b, pc.addrs(), leader)
		b.StartTimer()
		start := time.Now()
		if err := old.pause(); err != nil {
			b.Fatal(err)
		}
		_, err := c.Pin(context.Background(), []client.Hash{hashN(n)})
		done := time.Now()
		b.StopTimer()
		elected, _ := w.result()
		old.cmd.Process.Signal(syscall.SIGCONT)
		if err != nil {
			b.Fatalf("first write after SIGSTOP %d: %v", i, err)
		}
		n++
		if elected.IsZero() {
			b.Fatalf("op %d: no follower named a new leader", i)
		}
		gaps = append(gaps, done.Sub(elected))
		freezeToWrite = append(freezeToWrite, done.Sub(start))
	}
	slices.Sort(gaps)
	slices.Sort(freezeToWrite)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(gaps[len(gaps)/2]), "election-to-write-median-ms")
	b.ReportMetric(ms(gaps[len(gaps)-1]), "election-to-write-max-ms")
	b.ReportMetric(ms(freezeToWrite[len(freezeToWrite)/2]), "freeze-to-write-median-ms")
	b.Logf("election to first write: %v; freeze to first write: %v", gaps, freezeToWrite)
}
