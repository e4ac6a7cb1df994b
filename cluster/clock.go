package cluster

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// skewFileCheck is how often a skew file is looked at again, at most.
const skewFileCheck = 50 * time.Millisecond

// WallClock is the one source of wall-clock readings of a server: the wall
// time stamped beside the cluster time on every command, and log times. It is
// a fault-injection aid: it adds a skew to the real wall clock, and the skew
// can change while the server runs, which makes the wall clock jump.
//
// The cluster clock never reads it: cluster time is derived from the
// monotonic clock (differences of real time.Now() values), so skews and jumps
// change only the wall-time fields, which are for display.
//
// The skew is a fixed offset plus, with a skew file, the file's current
// value. The file is re-read when a reading is taken at least 50 ms after
// the last look, so writing the file makes the clock jump without a restart
// or signal. The file holds lines of "DURATION" (every server) or
// "ID=DURATION" (only the server with that id, replacing the bare line);
// blank lines and lines starting with # are ignored, and a missing or empty
// file means 0. A file that does not parse is reported and the last good
// value kept.
type WallClock struct {
	base time.Duration
	id   string
	path string
	log  hclog.Logger

	skew atomic.Int64 // base + the file's value, ns

	mu        sync.Mutex // serialises file reloads
	lastCheck time.Time  // real monotonic time of the last look at the file
	lastData  []byte
	lastErr   string
}

// NewWallClock returns a clock skewed by base. With path set, the skew file's
// value for server id is added to base (see WallClock).
func NewWallClock(base time.Duration, id, path string) (*WallClock, error) {
	c := &WallClock{base: base, id: id, path: path, log: hclog.NewNullLogger()}
	c.skew.Store(int64(base))
	if path != "" {
		data, err := readSkewFile(path)
		if err != nil {
			return nil, err
		}
		d, err := parseSkew(data, id)
		if err != nil {
			return nil, fmt.Errorf("clock skew file %s: %w", path, err)
		}
		c.skew.Store(int64(base + d))
		c.lastData, c.lastCheck = data, time.Now()
	}
	return c, nil
}

// SetLogger sets where reload problems and jumps are reported.
func (c *WallClock) SetLogger(l hclog.Logger) {
	if c == nil || l == nil {
		return
	}
	c.mu.Lock()
	c.log = l
	c.mu.Unlock()
}

// Now returns the skewed wall time. Its monotonic reading is dropped: the
// value is for display and stamping only, never for measuring durations.
func (c *WallClock) Now() time.Time {
	if c == nil {
		return time.Now().Round(0)
	}
	c.maybeReload()
	return time.Now().Round(0).Add(time.Duration(c.skew.Load()))
}

// Skew returns the current offset from the real wall clock.
func (c *WallClock) Skew() time.Duration {
	if c == nil {
		return 0
	}
	c.maybeReload()
	return time.Duration(c.skew.Load())
}

// maybeReload re-reads the skew file if it was last looked at long enough
// ago. Concurrent readers do not wait for a reload in progress.
func (c *WallClock) maybeReload() {
	if c.path == "" || !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	if time.Since(c.lastCheck) < skewFileCheck {
		return
	}
	c.lastCheck = time.Now()
	data, err := readSkewFile(c.path)
	if err == nil && bytes.Equal(data, c.lastData) {
		return
	}
	var d time.Duration
	if err == nil {
		d, err = parseSkew(data, c.id)
	}
	if err != nil {
		if msg := err.Error(); msg != c.lastErr {
			c.lastErr = msg
			c.log.Warn("clock skew file unusable; keeping the current skew", "path", c.path, "error", err)
		}
		return
	}
	c.lastData, c.lastErr = data, ""
	old := time.Duration(c.skew.Swap(int64(c.base + d)))
	if old != c.base+d {
		c.log.Warn("wall clock skew changed (fault injection)", "from", old, "to", c.base+d)
	}
}

// readSkewFile reads the skew file; a missing file is empty.
func readSkewFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	return data, err
}

// parseSkew returns the skew for server id from a skew file's content.
func parseSkew(data []byte, id string) (time.Duration, error) {
	var all, mine time.Duration
	var hasMine bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		who, val, keyed := strings.Cut(line, "=")
		if !keyed {
			val = who
		}
		d, err := time.ParseDuration(strings.TrimSpace(val))
		if err != nil {
			return 0, fmt.Errorf("line %d: %v", n, err)
		}
		switch {
		case !keyed:
			all = d
		case strings.TrimSpace(who) == id:
			mine, hasMine = d, true
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if hasMine {
		return mine, nil
	}
	return all, nil
}
