package systemtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/chaos"
	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/fsm"
)

// Wall-clock skew and jumps. Every server is started with its own wall-clock
// skew (--clock-skew for all plus a per-id line of one shared
// --clock-skew-file), and during the run the file is rewritten so that the
// leader's and the followers' wall clocks jump by hours, while the leader is
// also killed so that differently skewed servers lead in turn. The cluster
// clock runs on each leader's monotonic clock, so none of this may change
// when a blob becomes eligible. Every checker of the other process scenarios
// runs, except the one that compares the servers' own wall stamps with
// cluster time (CheckClockRate): here those stamps are skewed on purpose.
// Its place is taken by checkClusterRate, which compares cluster time with
// the test's own clock (the chaos history's), and checkSkewApplied, which
// makes sure the skews did reach the stamps.

// skewBase is the --clock-skew of every server: no server's wall clock is
// ever right, so every stamp of the run must show a skew.
const skewBase = -7 * time.Minute

// initialSkews are the file skews of s1, s2, s3 at start.
var initialSkews = []time.Duration{-2 * time.Hour, 0, 3 * time.Hour}

// skewFile is the shared skew file of a run and each server's current value.
type skewFile struct {
	path  string
	mu    sync.Mutex
	skews []time.Duration
	jumps int
}

func newSkewFile(t *testing.T, skews []time.Duration) *skewFile {
	f := &skewFile{path: filepath.Join(t.TempDir(), "clock-skew"), skews: slices.Clone(skews)}
	if err := f.write(); err != nil {
		t.Fatal(err)
	}
	return f
}

// write replaces the file atomically, so a server never reads half of it.
func (f *skewFile) write() error {
	var b strings.Builder
	b.WriteString("# per-server wall-clock skew, added to --clock-skew\n")
	for i, d := range f.skews {
		fmt.Fprintf(&b, "s%d=%v\n", i+1, d)
	}
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, f.path)
}

// jump moves server i's wall clock by d.
func (f *skewFile) jump(e *procEnv, i int, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.skews[i] += d
	if err := f.write(); err != nil {
		e.t.Errorf("writing the skew file: %v", err)
		return
	}
	f.jumps++
	e.Fault()
}

// randomJump is ±1..5 hours, whole hours, so a server's skew never comes
// back to within a minute of the real clock (skewBase is -7m).
func randomJump(r *rand.Rand) time.Duration {
	d := time.Duration(1+r.IntN(5)) * time.Hour
	if r.IntN(2) == 0 {
		d = -d
	}
	return d
}

// clockSkewInject returns one round of the skew scenario: the leader's wall
// clock jumps, then a follower's, then the leader is killed so another
// (differently skewed) server leads, and its clock jumps too while it leads.
func clockSkewInject(f *skewFile) func(e *procEnv) {
	return func(e *procEnv) {
		l := e.WaitLeaderIndex(procHold)
		if l < 0 {
			e.Hold(procRecover)
			return
		}
		f.jump(e, l, randomJump(e.Rand))
		e.Hold(procHold / 2)
		f.jump(e, (l+1+e.Rand.IntN(e.N()-1))%e.N(), randomJump(e.Rand))
		e.Hold(procHold / 2)
		e.Kill(l)
		if nl := e.WaitLeaderIndex(procHold); nl >= 0 {
			f.jump(e, nl, randomJump(e.Rand))
		}
		e.Hold(procHold / 2)
		e.Restart(l)
		e.Hold(procRecover)
	}
}

// clusterSample is a stamped write followed by a linearizable read of the
// cluster time, with the test clock (the chaos history's) at the write's
// invoke and the read's return.
type clusterSample struct {
	invoke, ret time.Duration
	cluster     int64
}

// clockRateSlack allows for the clock readings of the test and the servers
// being taken in different processes: they share one monotonic clock.
const clockRateSlack = 10 * time.Millisecond

// checkClusterRate is the wall-time half of invariant 2 measured on the
// test's clock instead of the servers' skewed stamps: between any two
// samples, cluster time advanced no more than the test clock (up to
// clockRateSlack). Each sample's read follows an acknowledged write that
// the leader stamped after the write's invoke, so the cluster time it
// returns is at least the cluster clock at that invoke; and a read returns
// no more than the cluster clock at its return. So between samples j and k
// at most ret_k - invoke_j can have passed, whatever the commit latency.
// With the cluster-time grace checks this bounds every grace period in
// real time: a leader that let its skewed or jumping wall clock into
// cluster time would advance it by hours here. It returns the largest
// excess of cluster time over test time seen (negative: none).
func checkClusterRate(samples []clusterSample, slack time.Duration) (time.Duration, []chaos.Violation) {
	worst := time.Duration(-1 << 62)
	var vs []chaos.Violation
	for j, a := range samples {
		for _, b := range samples[j+1:] {
			dc, dt := time.Duration(b.cluster-a.cluster), b.ret-a.invoke
			worst = max(worst, dc-dt)
			if dc > dt+slack && len(vs) < 5 {
				vs = append(vs, chaos.Violation{Invariant: 2, Msg: fmt.Sprintf("cluster time advanced %v in at most %v of the test's clock (samples [%v, %v] and [%v, %v])",
					dc, dt, a.invoke, a.ret, b.invoke, b.ret)})
			}
		}
	}
	return worst, vs
}

// clockSamplerNode is the VM node whose empty full reports are the
// sampler's stamped writes: each has a new sequence number, so each is a
// log entry, and an empty report protects nothing.
const clockSamplerNode = "clock-sampler"

// startClusterSampler takes a sample every 25 ms until the returned
// function is called: a full report of clockSamplerNode, then, once it is
// acknowledged, a linearizable read of the cluster time. That function
// returns the samples (and may be called again).
func startClusterSampler(cl *client.Client, h *chaos.History) func() []clusterSample {
	stop, done := make(chan struct{}), make(chan []clusterSample, 1)
	go func() {
		var out []clusterSample
		tk := time.NewTicker(25 * time.Millisecond)
		defer tk.Stop()
		for seq := uint64(1); ; seq++ {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			inv := h.Now()
			_, err := cl.Report(ctx, &blobgcv1.ReportRequest{NodeId: clockSamplerNode, Kind: blobgcv1.ReportKind_REPORT_KIND_FULL, Seq: seq})
			var st *blobgcv1.Stats
			if err == nil {
				st, err = cl.Stats(ctx)
			}
			ret := h.Now()
			cancel()
			if err == nil {
				out = append(out, clusterSample{invoke: inv, ret: ret, cluster: st.ClusterTimeNs})
			}
			select {
			case <-stop:
				done <- out
				return
			case <-tk.C:
			}
		}
	}()
	var once sync.Once
	var samples []clusterSample
	return func() []clusterSample {
		once.Do(func() { close(stop); samples = <-done })
		return samples
	}
}

// checkSkewApplied checks that the servers' skews reached the stamps: every
// cycle's wall stamp lies outside the real wall-clock window of the run, and
// the run saw at least three different skews (leader changes and jumps).
func checkSkewApplied(t *testing.T, events []fsm.HistoryEvent, from, to time.Time) {
	t.Helper()
	offsets := map[time.Duration]bool{}
	for _, ev := range events {
		w := time.Unix(0, ev.WallTime)
		if !w.Before(from.Add(-time.Minute)) && !w.After(to.Add(time.Minute)) {
			t.Errorf("cycle %d stamped wall time %v, inside the run's real window [%v, %v]: the skew did not reach it", ev.Seq, w, from, to)
			return
		}
		// Each skew is skewBase plus whole hours; the run is shorter than
		// half an hour, so rounding recovers the hours.
		offsets[w.Sub(from).Round(time.Hour)] = true
	}
	if len(offsets) < 3 {
		t.Errorf("cycle stamps show %d different wall-clock skews, want at least 3", len(offsets))
	}
	t.Logf("cycle wall stamps: %d cycles, %d different skews (rounded to hours)", len(events), len(offsets))
}

// checkSkewedLogs checks that the servers' log times come from the skewed
// clock too: each server logs every jump it picks up, stamped with the
// clock that just jumped.
func checkSkewedLogs(t *testing.T, pc *procCluster, from, to time.Time) {
	t.Helper()
	lines := 0
	for _, p := range pc.procs {
		data, err := os.ReadFile(filepath.Join(p.dir, "..", p.id+".log"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if !strings.Contains(line, "wall clock skew changed") {
				continue
			}
			stamp, _, _ := strings.Cut(line, " ")
			at, err := time.Parse("2006-01-02T15:04:05.000Z0700", stamp)
			if err != nil {
				t.Errorf("%s log line %q: %v", p.id, line, err)
				continue
			}
			lines++
			if !at.Before(from.Add(-time.Minute)) && !at.After(to.Add(time.Minute)) {
				t.Errorf("%s logged %q at the real time, not the skewed one", p.id, line)
			}
		}
	}
	if lines == 0 {
		t.Error("no server logged a clock jump")
	}
}

func TestCheckClusterRate(t *testing.T) {
	const s = time.Second
	ok := []clusterSample{{0, s / 10, int64(5 * s)}, {2 * s, 2*s + s/10, int64(7 * s)}, {3 * s, 3 * s, int64(8 * s)}}
	if _, vs := checkClusterRate(ok, 0); len(vs) != 0 {
		t.Fatalf("cluster time at the test clock's rate: %v", vs)
	}
	// A leader that jumps cluster time by an hour (its wall clock jumped).
	jump := append(slices.Clone(ok), clusterSample{4 * s, 4 * s, int64(time.Hour)})
	worst, vs := checkClusterRate(jump, clockRateSlack)
	if len(vs) == 0 || worst < 50*time.Minute {
		t.Fatalf("an hour's jump: worst excess %v, violations %v", worst, vs)
	}
	// Elections only slow cluster time down.
	slow := []clusterSample{{0, 0, int64(5 * s)}, {10 * s, 10 * s, int64(6 * s)}}
	if _, vs := checkClusterRate(slow, 0); len(vs) != 0 {
		t.Fatalf("cluster time slower than the test clock: %v", vs)
	}
}

func TestProcChaos_ClockSkew(t *testing.T) {
	f := newSkewFile(t, initialSkews)
	realStart := time.Now()
	sc := procScenario{Name: "ClockSkew", Servers: len(initialSkews), Inject: clockSkewInject(f),
		Flags:        []string{"--clock-skew=" + skewBase.String(), "--clock-skew-file=" + f.path},
		SkewedClocks: true,
		After: func(t *testing.T, e *procEnv) {
			realEnd := time.Now()
			_, events := chaos.WireFinalState(t, e.api[0])
			t.Logf("%d clock jumps", f.jumps)
			checkSkewApplied(t, events, realStart, realEnd)
			checkSkewedLogs(t, e.pc, realStart, realEnd)
		}}
	o := defaultProcOpts()
	o.Servers = 0 // the skews are per server: -chaos.servers does not apply
	runProcChaos(t, sc, o)
}
