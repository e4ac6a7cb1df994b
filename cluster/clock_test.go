package cluster

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/blobgc/blobgc/internal/testtiming"
)

// writeSkew replaces the skew file's content.
func writeSkew(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitSkew waits until the clock has picked up want from its file.
func waitSkew(t *testing.T, c *WallClock, want time.Duration) {
	t.Helper()
	deadline := time.Now().Add(testtiming.Hang())
	for c.Skew() != want {
		if time.Now().After(deadline) {
			t.Fatalf("skew %v, want %v", c.Skew(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParseSkew(t *testing.T) {
	for _, tc := range []struct {
		in   string
		id   string
		want time.Duration
		bad  bool
	}{
		{in: "", want: 0},
		{in: "# nothing\n\n", want: 0},
		{in: "+3h", want: 3 * time.Hour},
		{in: "-2h\ns2=+1h30m\n", id: "s2", want: 90 * time.Minute},
		{in: "s2=+1h30m\n-2h\n", id: "s2", want: 90 * time.Minute},
		{in: "-2h\ns2=+1h30m\n", id: "s1", want: -2 * time.Hour},
		{in: "s1 = -5m", id: "s1", want: -5 * time.Minute},
		{in: "soon", bad: true},
		{in: "s1=", id: "s1", bad: true},
	} {
		got, err := parseSkew([]byte(tc.in), tc.id)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("parseSkew(%q, %q) = %v, %v; want %v (error %v)", tc.in, tc.id, got, err, tc.want, tc.bad)
		}
	}
}

// The skew is the fixed offset plus the file's value; rewriting the file
// makes the clock jump, a broken file keeps the last good value and a
// removed one means no file offset.
func TestWallClockSkewFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "skew")
	writeSkew(t, path, "-2h\ns2=+3h\n")
	c, err := NewWallClock(30*time.Minute, "s2", path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Skew(), 3*time.Hour+30*time.Minute; got != want {
		t.Fatalf("initial skew %v, want %v", got, want)
	}
	before := time.Now()
	now := c.Now()
	after := time.Now()
	if lo, hi := before.Add(c.Skew()), after.Add(c.Skew()); now.Before(lo.Round(0)) || now.After(hi.Round(0)) {
		t.Fatalf("Now() = %v, want within [%v, %v]", now, lo, hi)
	}
	if now != now.Round(0) {
		t.Fatal("Now() carries a monotonic reading")
	}

	writeSkew(t, path, "s2=-4h\n")
	waitSkew(t, c, -4*time.Hour+30*time.Minute)
	writeSkew(t, path, "s2=whenever\n")
	c.mu.Lock()
	c.lastCheck = time.Time{} // the next reading reloads the broken file
	c.mu.Unlock()
	if got := c.Skew(); got != -4*time.Hour+30*time.Minute {
		t.Fatalf("a broken file changed the skew to %v", got)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitSkew(t, c, 30*time.Minute)

	if _, err := NewWallClock(0, "s1", writeBroken(t)); err == nil {
		t.Fatal("a broken skew file at start was accepted")
	}
	var real *WallClock
	if real.Skew() != 0 || real.Now().IsZero() {
		t.Fatal("the nil clock is not the real clock")
	}
}

func writeBroken(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "broken")
	writeSkew(t, path, "tomorrow")
	return path
}

// The stamped cluster time is T0 plus the real monotonic time since M0,
// whatever the wall clock's skew and however it jumps; only the stamped wall
// time follows the skew.
func TestSessionClockIgnoresWallSkew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "skew")
	writeSkew(t, path, "+3h")
	wc, err := NewWallClock(0, "s1", path)
	if err != nil {
		t.Fatal(err)
	}
	const t0 = int64(time.Hour)
	ss := &session{t0: t0, m0: time.Now(), wall: wc}
	check := func(skew time.Duration) int64 {
		t.Helper()
		lo, wlo := time.Since(ss.m0), time.Now()
		c, w := ss.now()
		hi, whi := time.Since(ss.m0), time.Now()
		if d := time.Duration(c - t0); d < lo || d > hi {
			t.Fatalf("skew %v: cluster time %v after T0, want within the real elapsed [%v, %v]", skew, d, lo, hi)
		}
		if wl, wh := wlo.UnixNano()+int64(skew), whi.UnixNano()+int64(skew); w < wl || w > wh {
			t.Fatalf("skew %v: wall stamp %d, want within [%d, %d]", skew, w, wl, wh)
		}
		return c
	}
	prev := check(3 * time.Hour)
	for _, jump := range []time.Duration{-2 * time.Hour, 5 * time.Hour, -10 * time.Hour, 0} {
		writeSkew(t, path, jump.String())
		waitSkew(t, wc, jump)
		c := check(jump)
		if c < prev {
			t.Fatalf("cluster time went back from %d to %d when the wall clock jumped to %v", prev, c, jump)
		}
		prev = c
	}
}

// BenchmarkWallClockNow is the cost of one stamped wall time: the real
// clock (nil), a fixed skew, and a skew file (looked at every 50 ms).
func BenchmarkWallClockNow(b *testing.B) {
	path := filepath.Join(b.TempDir(), "skew")
	if err := os.WriteFile(path, []byte("s1=+3h\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	fixed, err := NewWallClock(time.Hour, "s1", "")
	if err != nil {
		b.Fatal(err)
	}
	file, err := NewWallClock(0, "s1", path)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		c    *WallClock
	}{{"real", nil}, {"fixed", fixed}, {"file", file}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = bc.c.Now()
			}
		})
	}
}
