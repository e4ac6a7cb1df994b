package dockertest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestCompose3StopAndRestart stops the leader's container the way an
// operator does (docker stop: SIGTERM to the binary, which runs as PID 1):
// the server must shut down gracefully, exit 0 well before Docker's SIGKILL
// and leave a leader behind; then it restarts a follower (docker restart)
// and checks that both come back and converge with every write.
func TestCompose3StopAndRestart(t *testing.T) {
	c := startCluster(t, 3)
	m := c.waitVoters(formTimeout, "")
	h1 := newHash()
	c.mustWrite("register", h1)

	old := m.LeaderId
	id := c.containerID(old)
	// Docker's SIGKILL comes after 20 s; the server's own shutdown is
	// bounded by 10 s, so exit code 0 shows SIGTERM was handled.
	stopping := time.Now()
	if _, err := docker("stop", "--time", "20", id); err != nil {
		t.Fatal(err)
	}
	stopped := time.Since(stopping)
	code, err := docker("inspect", "--format", "{{.State.ExitCode}}", id)
	if err != nil {
		t.Fatal(err)
	}
	if code != "0" {
		t.Errorf("leader container exited with %s after docker stop, want 0 (graceful shutdown)", code)
	}
	m = c.waitVoters(failoverTimeout, old)
	t.Logf("stopped leader %s in %v: %s leads at term %d", old, stopped.Round(time.Millisecond), m.LeaderId, m.Term)
	h2 := newHash()
	c.mustWrite("register", h2)
	c.mustWrite("pin", h2)
	if _, err := docker("start", id); err != nil {
		t.Fatal(err)
	}

	// Restart a follower while the cluster keeps taking writes.
	follower := c.services[0]
	if follower == m.LeaderId {
		follower = c.services[1]
	}
	if _, err := docker("restart", "--time", "20", c.containerID(follower)); err != nil {
		t.Fatal(err)
	}
	h3 := newHash()
	c.mustWrite("register", h3)
	idx := c.mustWrite("pin", h3)
	c.waitConverged(catchUpTimeout, idx)
	for _, svc := range []string{old, follower} {
		own := []string{fmt.Sprintf("127.0.0.1:%d", c.ports[svc])}
		for _, h := range []string{h2, h3} {
			waitFor(t, catchUpTimeout, svc+" serves "+h, func(context.Context) error {
				return c.pinnedVia(own, true, h)
			})
		}
	}
}
