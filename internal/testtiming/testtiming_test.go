package testtiming

import (
	"slices"
	"testing"
	"time"

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
