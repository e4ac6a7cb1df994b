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
package testtiming

import (
	"fmt"
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
func Scale() float64 {
	s := 1.0
	if v := os.Getenv(EnvScale); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			panic(fmt.Sprintf("%s=%q: want a positive number", EnvScale, v))
		}
		s = f
	}
	return s * raceScale
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
