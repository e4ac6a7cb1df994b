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

	"github.com/blobgc/blobgc/cluster"
)

// A leader stopped with SIGSTOP while the others elect a new one, then
// resumed, never answers the leader health check SERVING and never lists two
// leaders in Members, until it has learnt of the new term.
func TestResumedStaleLeaderNeverServes(t *testing.T) {
	pc := startProcs(t, 3, testTimings)
	c := pc.newClient()
	leader := pc.waitLeader(c)
	old := pc.procs[pc.index(leader)]
	if st, err := c.Health(ctxT(t, 10*time.Second), leader, cluster.LeaderHealthService); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("leader health before the pause: %v %v", st, err)
	}
	if err := old.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
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

	// Checks and Members calls queue up at the stopped server, so they are
	// served the moment it resumes, and more follow until it has learnt of
	// the new term.
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
	one := pc.newClient(leader)
	eventually(t, time.Minute, "the resumed server to follow the new leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, err := one.MembersOf(ctx, leader)
		return err == nil && m.LeaderAddress == newLeader
	})
	stop.Store(true)
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d bad answers, the first: %s", len(bad), bad[0])
	}
	if st, err := c.Health(ctxT(t, 10*time.Second), newLeader, cluster.LeaderHealthService); err != nil || st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("the new leader's health: %v %v", st, err)
	}
}
