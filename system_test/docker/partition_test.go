package dockertest

import (
	"context"
	"fmt"
	"testing"
)

// TestCompose3PartitionLeader cuts the leader's container off the compose
// network: the other two elect a new leader and take writes; reconnected
// (under its service name, which peers dial), the old leader steps down,
// catches up and serves the writes it missed.
func TestCompose3PartitionLeader(t *testing.T) {
	c := startCluster(t, 3)
	m := c.waitVoters(formTimeout, "")
	h1 := newHash()
	c.mustWrite("register", h1)
	c.mustWrite("pin", h1)

	old := m.LeaderId
	id := c.containerID(old)
	net, err := network(id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docker("network", "disconnect", net, id); err != nil {
		t.Fatal(err)
	}
	m = c.waitVoters(failoverTimeout, old)
	h2 := newHash()
	c.mustWrite("register", h2)
	idx := c.mustWrite("pin", h2)
	t.Logf("isolated leader %s: %s leads at term %d", old, m.LeaderId, m.Term)
	for _, h := range []string{h1, h2} {
		if err := c.pinnedVia(c.hostAddrs(), false, h); err != nil {
			t.Fatal(err)
		}
	}

	// Compose gave the container its service name as a network alias;
	// reconnecting must give it back, or the peers cannot dial it.
	if _, err := docker("network", "connect", "--alias", old, net, id); err != nil {
		t.Fatal(err)
	}
	c.waitConverged(catchUpTimeout, idx)
	own := []string{fmt.Sprintf("127.0.0.1:%d", c.ports[old])}
	waitFor(t, catchUpTimeout, "stale read from the reconnected server", func(context.Context) error {
		return c.pinnedVia(own, true, h2)
	})
	c.waitVoters(failoverTimeout, "")
}
