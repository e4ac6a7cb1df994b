package systemtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/cluster"
)

// A leader stopped with SIGSTOP while the others elect a new one, then
// resumed, never answers the leader health check SERVING, never lists two
// leaders in Members and never serves a linearizable read that misses a
// write the new leader committed, until it has learnt of the new term.
//
// Found by CI: raft's VerifyLeader counts answers that queued in the stopped
// leader's sockets, to requests sent before the pause, so the resumed
// leader confirmed itself; leadership is now confirmed only by answers to
// requests sent after the check started (transport.Ack).
func TestResumedStaleLeaderNeverServes(t *testing.T) {
	pc := startProcs(t, 3, testTimings)
	c := pc.newClient()
	leader := pc.waitLeader(c)
	old := pc.procs[pc.index(leader)]
	if st, err := c.Health(ctxT(t, 10*time.Second), leader, cluster.LeaderHealthService); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("leader health before the pause: %v %v", st, err)
	}
	if err := old.pause(); err != nil {
		t.Fatal(err)
	}
	var others []string
	for _, a := range pc.addrs() {
		if a != leader {
			others = append(others, a)
		}
	}
	var newLeader string
	eventually(t, time.Minute, "a new leader while the old one is stopped", func() bool {
		// Members asks every member, and waits a second for the stopped one.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		newLeader = ""
		for _, a := range others {
			m, err := c.MembersOf(ctx, a)
			if err != nil || m.LeaderAddress == "" || m.LeaderAddress == leader || newLeader != "" && m.LeaderAddress != newLeader {
				return false
			}
			newLeader = m.LeaderAddress
		}
		return true
	})

	// A write the stopped server cannot know of.
	written := hashN(7)
	if _, err := c.Pin(ctxT(t, time.Minute), []client.Hash{written}); err != nil {
		t.Fatalf("a write while the old leader is stopped: %v", err)
	}
	// Only the old leader: its client cannot move to another server.
	one := pc.newClient(leader)

	// Checks, reads and Members calls queue up at the stopped server, so
	// they are served the moment it resumes, and more follow until it has
	// learnt of the new term.
	var (
		stop   atomic.Bool
		wg     sync.WaitGroup
		issued atomic.Int64
		mu     sync.Mutex
		bad    []string
	)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				issued.Add(1)
				st, err := c.Health(ctx, leader, cluster.LeaderHealthService)
				if err == nil && st == healthpb.HealthCheckResponse_SERVING {
					mu.Lock()
					bad = append(bad, "the resumed old leader answered the leader health check SERVING")
					mu.Unlock()
				}
				if st, err := one.Status(ctx, written); err == nil && len(st.PinnedBy) == 0 && !st.CoordinatorPin {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("a linearizable read on the resumed old leader missed a committed pin: %v", st))
					mu.Unlock()
				}
				if m, err := c.MembersOf(ctx, leader); err == nil {
					leaders := 0
					for _, mb := range m.Members {
						if mb.State == "leader" {
							leaders++
						}
					}
					if leaders > 1 {
						mu.Lock()
						bad = append(bad, fmt.Sprintf("Members from the resumed old leader lists %d leaders: %v", leaders, m.Members))
						mu.Unlock()
					}
				}
				cancel()
			}
		}()
	}
	eventually(t, time.Minute, "checks sent to the stopped server", func() bool { return issued.Load() >= 8 })
	if err := old.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Under load the leader may change again: any leader but itself will do.
	eventually(t, time.Minute, "the resumed server to follow another leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, err := one.MembersOf(ctx, leader)
		return err == nil && m.LeaderAddress != "" && m.LeaderAddress != leader
	})
	stop.Store(true)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d bad answers, the first: %s", len(bad), bad[0])
	}
	eventually(t, time.Minute, "the current leader to answer the leader health check SERVING", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, err := c.Members(ctx)
		if err != nil || m.LeaderAddress == "" {
			return false
		}
		st, err := c.Health(ctx, m.LeaderAddress, cluster.LeaderHealthService)
		return err == nil && st == healthpb.HealthCheckResponse_SERVING
	})
}
