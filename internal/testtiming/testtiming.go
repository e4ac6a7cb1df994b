// Package testtiming is the one source of raft timings and hang deadlines
// for tests that drive raft clusters.
//
// Tests must pass on a loaded machine (two cores shared with compilers and
// other test binaries, -race slowing everything down), where a goroutine can
// wait hundreds of milliseconds to be scheduled. Raft is allowed to change
// leaders then, and tests retry across that; the timings here are long
// enough that it stays rare, and deadlines that only bound a hang are a
// minute, not seconds.
//
// Every duration is multiplied by Scale: the BLOBGC_TEST_TIMEOUT_SCALE
// environment variable (a positive number, default 1), times 2 in builds
// with the race detector.
//
// Servers that tests start as processes of their own (`blobgc server`,
// system_test) take their timings from ServerFlags: half the in-process
// ones, since each has a runtime to itself and is built without the race
// detector, and scaled by the environment only.
package testtiming

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// EnvScale names the environment variable that multiplies every timing.
const EnvScale = "BLOBGC_TEST_TIMEOUT_SCALE"

// Base timings, before scaling.
const (
	baseHeartbeat   = 400 * time.Millisecond
	baseElection    = 400 * time.Millisecond
	baseLeaderLease = 200 * time.Millisecond
	baseCommit      = 5 * time.Millisecond
	baseApply       = 10 * time.Second
	baseRPC         = 5 * time.Second
	baseHang        = time.Minute
)

// Scale is the factor every duration of this package is multiplied by.
func Scale() float64 { return envScale() * raceScale }

// envScale is the factor of BLOBGC_TEST_TIMEOUT_SCALE alone.
func envScale() float64 {
	s := 1.0
	if v := os.Getenv(EnvScale); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			panic(fmt.Sprintf("%s=%q: want a positive number", EnvScale, v))
		}
		s = f
	}
	return s
}

// Scaled returns d multiplied by Scale.
func Scaled(d time.Duration) time.Duration { return time.Duration(float64(d) * Scale()) }

// Raft timings for test clusters on loopback.
func Heartbeat() time.Duration   { return Scaled(baseHeartbeat) }
func Election() time.Duration    { return Scaled(baseElection) }
func LeaderLease() time.Duration { return Scaled(baseLeaderLease) }
func Commit() time.Duration      { return Scaled(baseCommit) }

// Apply bounds one raft apply or membership change in a test.
func Apply() time.Duration { return Scaled(baseApply) }

// Hang bounds a wait that only exists so that a hang fails the test instead
// of blocking it: a leader, convergence, a replicated write.
func Hang() time.Duration { return Scaled(baseHang) }

// Configure sets c's heartbeat, election, leader lease and commit timeouts.
func Configure(c *raft.Config) {
	c.HeartbeatTimeout = Heartbeat()
	c.ElectionTimeout = Election()
	c.LeaderLeaseTimeout = LeaderLease()
	c.CommitTimeout = Commit()
}

// RPC is the per-call deadline of a raft transport in tests (AppendEntries,
// snapshots): long enough for big batches on a slow machine, short enough
// that a call into a black hole fails while the test runs.
func RPC() time.Duration { return Scaled(baseRPC) }

// serverDivisor is how much shorter ServerFlags' timings are than the
// in-process ones.
const serverDivisor = 2

// Server returns d for a server process: d/serverDivisor times the
// environment's scale (the server binary has no race detector).
func Server(d time.Duration) time.Duration {
	return time.Duration(math.Round(float64(d) / serverDivisor * envScale()))
}

// ServerElection is the election timeout of ServerFlags, for sizing faults.
func ServerElection() time.Duration { return Server(baseElection) }

// ServerFlags are the raft timing flags of `blobgc server` processes in
// tests: heartbeat, election, leader lease and commit timeouts.
func ServerFlags() []string {
	return []string{
		"--heartbeat-timeout=" + Server(baseHeartbeat).String(),
		"--election-timeout=" + Server(baseElection).String(),
		"--leader-lease-timeout=" + Server(baseLeaderLease).String(),
		"--commit-timeout=" + Server(baseCommit).String(),
	}
}

// Campaign makes r, a server just started that has not heard from a leader
// yet, stand for election now instead of after its first heartbeat timeout
// (up to twice Heartbeat, most of the time a test spends starting a
// cluster). Raft restarts a follower's heartbeat timer at once when its
// heartbeat timeout is shortened, and a follower that has had no contact
// with a leader then campaigns; the timeout is set back straight away. The
// election is an ordinary one: should it fail (a split vote on a loaded
// machine), the usual timeouts elect a leader as they would have anyway.
// Call it once the servers it needs for a quorum are running.
func Campaign(r *raft.Raft) {
	rc := r.ReloadableConfig()
	shorter := rc
	shorter.HeartbeatTimeout--
	if r.ReloadConfig(shorter) == nil {
		_ = r.ReloadConfig(rc)
	}
}
