package testtiming

import (
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
