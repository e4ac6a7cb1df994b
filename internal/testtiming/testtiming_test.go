package testtiming

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func TestScaleFromEnvironment(t *testing.T) {
	t.Setenv(EnvScale, "3")
	if got, want := Hang(), time.Duration(float64(3*time.Minute)*raceScale); got != want {
		t.Fatalf("Hang() = %v, want %v", got, want)
	}
	t.Setenv(EnvScale, "")
	if got, want := Heartbeat(), time.Duration(float64(baseHeartbeat)*raceScale); got != want {
		t.Fatalf("Heartbeat() = %v, want %v", got, want)
	}
}

func TestBadScalePanics(t *testing.T) {
	for _, v := range []string{"0", "-1", "fast"} {
		t.Setenv(EnvScale, v)
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s=%q accepted", EnvScale, v)
				}
			}()
			Scale()
		}()
	}
}

// The timings must be a configuration raft accepts.
func TestConfigureIsValid(t *testing.T) {
	c := raft.DefaultConfig()
	c.LocalID = "a"
	Configure(c)
	if err := raft.ValidateConfig(c); err != nil {
		t.Fatal(err)
	}
}

// Server processes get half the in-process timings, scaled by the
// environment but not by the race detector of the test binary.
func TestServerFlags(t *testing.T) {
	t.Setenv(EnvScale, "")
	want := []string{"--heartbeat-timeout=200ms", "--election-timeout=200ms", "--leader-lease-timeout=100ms", "--commit-timeout=2.5ms"}
	if got := ServerFlags(); !slices.Equal(got, want) {
		t.Fatalf("ServerFlags() = %v, want %v", got, want)
	}
	t.Setenv(EnvScale, "3")
	if got, want := ServerFlags()[0], "--heartbeat-timeout=600ms"; got != want {
		t.Fatalf("with %s=3: %s, want %s", EnvScale, got, want)
	}
}

// A server whose heartbeat timeout is an hour is elected at once after
// Campaign: without it, the test would time out.
func TestCampaignStartsAnElection(t *testing.T) {
	c := raft.DefaultConfig()
	c.LocalID = "a"
	Configure(c)
	c.HeartbeatTimeout, c.ElectionTimeout = time.Hour, time.Hour
	c.Logger = hclog.NewNullLogger()
	addr, trans := raft.NewInmemTransport("a")
	store := raft.NewInmemStore()
	r, err := raft.NewRaft(c, &raft.MockFSM{}, store, store, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "a", Address: addr}}}).Error(); err != nil {
		t.Fatal(err)
	}
	Campaign(r)
	select {
	case <-r.LeaderCh():
	case <-time.After(Hang()):
		t.Fatalf("no election within %v of Campaign", Hang())
	}
	if got := r.ReloadableConfig().HeartbeatTimeout; got != time.Hour {
		t.Fatalf("heartbeat timeout %v after Campaign, want it set back to 1h", got)
	}
}
