package systemtest

import (
	"syscall"
	"testing"
	"time"

	"github.com/blobgc/blobgc/client"
)

// pausedLeaderWrite stops the leader with SIGSTOP and pins a fresh hash
// through c, which must succeed while the old leader is still stopped. The
// 5 s deadline is 25 election timeouts: only an attempt stuck on the stopped
// leader until the caller's deadline misses it.
func pausedLeaderWrite(t *testing.T, pc *procCluster, c *client.Client, leader string, h client.Hash) {
	t.Helper()
	old := pc.procs[pc.index(leader)]
	if err := old.pause(); err != nil {
		t.Fatal(err)
	}
	_, err := c.Pin(ctxT(t, 5*time.Second), []client.Hash{h})
	old.cmd.Process.Signal(syscall.SIGCONT)
	if err != nil {
		t.Fatalf("a write while the leader %s was stopped: %v", old.id, err)
	}
}

// Found by TestProcChaos_PausedLeaderServesNoStaleState: a follower that
// receives a write forwards it to the leader it knows; when that leader is
// stopped (SIGSTOP, a long GC or VM pause), the forward waited for the
// caller's whole deadline although the followers elect a new leader within
// a few election timeouts. The follower now abandons the forward when it
// follows another leader.
func TestRegression_WriteViaFollowerWhileLeaderPaused(t *testing.T) {
	pc := startProcs(t, 3, testTimings)
	c := pc.newClient()
	leader := pc.waitLeader(c) // also opens the followers' forwarding connections
	var others []string
	for _, a := range pc.addrs() {
		if a != leader {
			others = append(others, a)
		}
	}
	// A call timeout longer than the deadline: only the follower giving up
	// on the stopped leader can make the write succeed in time.
	c2, err := client.New(others, client.WithCallTimeout(time.Minute), client.WithBackoff(5*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	pausedLeaderWrite(t, pc, c2, leader, hashN(1))
}

// Found the same way: a client with default options whose connection to
// the leader is established waited its whole call timeout (then 15 s) on a
// stopped leader before it tried another server; an attempt now gives up
// after 2 s.
func TestRegression_WriteViaClientWhileLeaderPaused(t *testing.T) {
	pc := startProcs(t, 3, testTimings)
	c := pc.newClient()
	leader := pc.waitLeader(c)
	if _, err := c.Pin(ctxT(t, 30*time.Second), []client.Hash{hashN(0)}); err != nil {
		t.Fatal(err)
	}
	pausedLeaderWrite(t, pc, c, leader, hashN(1))
}
