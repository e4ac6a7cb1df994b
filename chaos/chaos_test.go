package chaos_test

import (
	"flag"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/blobgc/blobgc/cluster/clustertest"

	"github.com/blobgc/blobgc/chaos"
)

var (
	duration = flag.Duration("chaos.duration", envDuration("BLOBGC_CHAOS_DURATION", 8*time.Second), "fault phase of each chaos scenario (a soak: 10m)")
	servers  = flag.Int("chaos.servers", envInt("BLOBGC_CHAOS_SERVERS", 0), "servers per scenario (0: the scenario's own, 3 or 5)")
	seed     = flag.Uint64("chaos.seed", uint64(envInt("BLOBGC_CHAOS_SEED", 0)), "random seed (0: time-based, logged)")
)

func envDuration(k string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(k)); err == nil {
		return d
	}
	return def
}

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return n
	}
	return def
}

func TestMain(m *testing.M) {
	// raft leaves a waiter on a future queued at shutdown (see cluster tests).
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction(clustertest.UnansweredFutureWaiter))
}

func run(t *testing.T, name string) {
	sc, ok := chaos.ScenarioByName(name)
	if !ok {
		t.Fatalf("no scenario %q (have %s)", name, chaos.Names())
	}
	res := chaos.Run(t, sc, chaos.Options{Duration: *duration, Servers: *servers, Seed: *seed})
	if res.Faults == 0 && name != "None" {
		t.Errorf("no fault was injected")
	}
	if res.Ops[chaos.OK] == 0 {
		t.Errorf("no operation succeeded")
	}
}

func TestChaos_LeaderIsolated(t *testing.T)    { run(t, "LeaderIsolated") }
func TestChaos_MinorityPartition(t *testing.T) { run(t, "MinorityPartition") }
func TestChaos_MajorityPartition(t *testing.T) { run(t, "MajorityPartition") }
func TestChaos_OneWayPartition(t *testing.T)   { run(t, "OneWayPartition") }
func TestChaos_Delays(t *testing.T)            { run(t, "Delays") }
func TestChaos_Drops(t *testing.T)             { run(t, "Drops") }
func TestChaos_CrashRestart(t *testing.T)      { run(t, "CrashRestart") }
func TestChaos_Mixed(t *testing.T)             { run(t, "Mixed") }
func TestChaos_None(t *testing.T)              { run(t, "None") }

// The suite must catch a sweeper that deletes what is eligible without
// claiming it (no re-check at delete time): files of blobs that VMs
// referenced again are deleted, and no claim granted them.
func TestChaos_CatchesUnsafeSweeper(t *testing.T) {
	sc, _ := chaos.ScenarioByName("None")
	res := chaos.Run(t, sc, chaos.Options{Duration: 4 * time.Second, Seed: *seed, UnsafeSweep: true})
	found := false
	for _, v := range res.Violations {
		found = found || v.Invariant == 6
	}
	if !found {
		t.Fatalf("no invariant 6 violation among %v", res.Violations)
	}
}
