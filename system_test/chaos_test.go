package systemtest

import (
	"context"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/chaos"
	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/sweeper"
)

// Process chaos. TestProcChaos_<Scenario> starts `blobgc server` processes
// (startProcs), drives them with the chaos package's workload and history
// while a scenario SIGKILLs, SIGSTOPs/SIGCONTs and restarts them from disk,
// heals, and runs the chaos package's checkers. What the in-process suite
// reads from a server's memory is read here over the wire, from each
// server itself: stale reads (answered from that server's state machine)
// for the observer's blob states and cluster time, Members with the
// member-self metadata for its raft role and term, Digest for invariant 4,
// and per-blob stale GetStatus plus History for the end state.

// The process chaos scenarios share the chaos package's knobs: the same
// environment variables, and flags of the same names for this test binary.
var (
	chaosDuration = flag.Duration("chaos.duration", envDuration("BLOBGC_CHAOS_DURATION", 10*time.Second), "fault phase of each process chaos scenario (a soak: 10m)")
	chaosServers  = flag.Int("chaos.servers", envInt("BLOBGC_CHAOS_SERVERS", 0), "servers per scenario (0: the scenario's own, 3 or 5)")
	chaosSeed     = flag.Uint64("chaos.seed", uint64(envInt("BLOBGC_CHAOS_SEED", 0)), "random seed (0: time-based, logged)")
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

// chaosCycle is the cycle interval of the chaos servers: short against
// chaos.Grace, so blobs are marked, claimed and deleted many times a run.
const chaosCycle = 150 * time.Millisecond

// procScenario is a fault schedule against server processes.
type procScenario struct {
	Name    string
	Servers int
	// Inject runs one round of faults (inject, hold, recover); it is called
	// until the fault phase is over.
	Inject func(e *procEnv)
	// Flags are extra server flags.
	Flags []string
	// After, if set, checks the scenario's own expectations at the end.
	After func(t *testing.T, e *procEnv)
	// SkewedClocks says the servers' wall clocks are skewed on purpose: the
	// servers' wall stamps then say nothing about real time, so cluster
	// time is checked against the test's own clock (checkClusterRate)
	// instead of against the cycles' wall stamps (chaos.CheckClockRate).
	SkewedClocks bool
}

// procEnv is what a process scenario's faults act on. Its fault methods run
// on the test goroutine; the observer reads the liveness state under mu.
type procEnv struct {
	t    *testing.T
	pc   *procCluster
	Rand *rand.Rand
	api  []blobgcv1.BlobGCClient // one direct connection per server

	mu     sync.Mutex
	alive  []bool // the process runs
	paused []bool // the process is stopped by SIGSTOP
	inc    []int  // incarnation: bumped by every (re)start
	faults int
	stop   time.Time
}

func (e *procEnv) N() int { return len(e.pc.procs) }

// Fault counts one injected fault.
func (e *procEnv) Fault() {
	e.mu.Lock()
	e.faults++
	e.mu.Unlock()
}

// Hold waits d, or less if the fault phase is over.
func (e *procEnv) Hold(d time.Duration) {
	if left := time.Until(e.stop); left < d {
		d = max(left, 0)
	}
	time.Sleep(d)
}

// reachable reports whether server i runs and is not paused.
func (e *procEnv) reachable(i int) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.alive[i] && !e.paused[i]
}

// LeaderIndex returns a running, unpaused server that says it leads (the
// one with the highest term if several do), or -1.
func (e *procEnv) LeaderIndex() int { return chaos.WireLeader(e, e.reachable) }

// WaitLeaderIndex waits up to d for a leader and returns it, or -1.
func (e *procEnv) WaitLeaderIndex(d time.Duration) int {
	return chaos.WaitWireLeader(e, e.reachable, d, 20*time.Millisecond)
}

// Kill sends SIGKILL to server i (resuming it first if paused does not
// matter: SIGKILL ends a stopped process too).
func (e *procEnv) Kill(i int) {
	e.mu.Lock()
	up := e.alive[i]
	e.alive[i], e.paused[i] = false, false
	if up {
		e.faults++
	}
	e.mu.Unlock()
	if up {
		e.pc.kill(i)
	}
}

// Restart starts server i again from its data directory.
func (e *procEnv) Restart(i int) {
	e.mu.Lock()
	up := e.alive[i]
	e.mu.Unlock()
	if up {
		return
	}
	e.pc.start(i)
	e.mu.Lock()
	e.alive[i] = true
	e.inc[i]++
	e.mu.Unlock()
}

// Pause stops server i with SIGSTOP.
func (e *procEnv) Pause(i int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.alive[i] || e.paused[i] {
		return
	}
	if err := e.pc.procs[i].pause(); err != nil {
		e.t.Errorf("%v", err)
		return
	}
	e.paused[i] = true
	e.faults++
}

// Resume continues server i with SIGCONT.
func (e *procEnv) Resume(i int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.alive[i] || !e.paused[i] {
		return
	}
	if err := e.pc.procs[i].cmd.Process.Signal(syscall.SIGCONT); err != nil {
		e.t.Errorf("SIGCONT %s: %v", e.pc.procs[i].id, err)
	}
	e.paused[i] = false
}

// heal resumes every paused server and restarts every killed one.
func (e *procEnv) heal() {
	for i := range e.N() {
		e.Resume(i)
		e.Restart(i)
	}
}

// Up returns, for each server, whether it runs unpaused, and its incarnation.
func (e *procEnv) Up() ([]bool, []int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ups := make([]bool, e.N())
	for i := range ups {
		ups[i] = e.alive[i] && !e.paused[i]
	}
	return ups, append([]int(nil), e.inc...)
}

// procOpts are the options of one process chaos run.
type procOpts struct {
	Duration time.Duration // of the fault phase
	Servers  int           // overrides the scenario's server count when nonzero
	Seed     uint64
	// UnsafeSweep runs the chaos workload's sabotaged sweeper: violations
	// are then expected, logged and returned instead of failing t.
	UnsafeSweep bool
}

// defaultProcOpts are the options from the flags and environment.
func defaultProcOpts() procOpts {
	return procOpts{Duration: *chaosDuration, Servers: *chaosServers, Seed: *chaosSeed}
}

// runProcChaos starts server processes, runs the chaos workload against
// them while sc injects faults, heals, and runs every checker of the chaos
// package. Every violation fails t; the summary row is logged and appended
// to the file named by BLOBGC_CHAOS_REPORT.
func runProcChaos(t *testing.T, sc procScenario, o procOpts) chaos.Result {
	if testing.Short() {
		t.Skip("chaos scenarios do not run with -short")
	}
	n := sc.Servers
	if o.Servers != 0 {
		n = o.Servers
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	t.Logf("process scenario %s: %d servers, %v, seed %d", sc.Name, n, o.Duration, o.Seed)
	flags := []string{"--cycle-interval=" + chaosCycle.String(), "--grace-period=" + chaos.Grace.String(),
		// Nodes never go stale within a run: liveness stays simple for the checkers.
		"--stale-threshold=1h", "--log-level=warn"}
	pc := startProcs(t, n, testTimings, append(flags, sc.Flags...)...)
	env := &procEnv{t: t, pc: pc, Rand: rand.New(rand.NewPCG(o.Seed, 11)),
		alive: make([]bool, n), paused: make([]bool, n), inc: make([]int, n)}
	for i, p := range pc.procs {
		env.alive[i] = true
		cc, err := grpc.NewClient("passthrough:///"+p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		env.api = append(env.api, blobgcv1.NewBlobGCClient(cc))
	}
	// SIGKILL ends paused processes too, but a paused process must not
	// outlive a test that failed between Pause and Resume.
	t.Cleanup(func() {
		env.mu.Lock()
		defer env.mu.Unlock()
		for i, p := range pc.procs {
			if env.paused[i] && p.cmd != nil {
				p.cmd.Process.Signal(syscall.SIGCONT)
			}
		}
	})

	cl, err := client.New(pc.addrs(), client.WithCallTimeout(time.Second), client.WithBackoff(5*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	setupCtx, cancelSetup := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelSetup()
	eventually(t, 30*time.Second, "the GC config applied", func() bool {
		cfg, err := cl.GetConfig(setupCtx)
		return err == nil && cfg.GetGracePeriodNs() == chaos.Grace.Nanoseconds()
	})
	h := chaos.NewHistory()
	w := &chaos.Workload{Client: cl, Store: sweeper.Dir(filepath.Join(t.TempDir(), "store")), H: h, Seed: o.Seed, UnsafeSweep: o.UnsafeSweep}
	if err := w.Setup(setupCtx, 48, 6); err != nil {
		t.Fatal(err)
	}

	obs := chaos.NewWireObserver(env, chaos.Grace, w.Blobs)
	bg := chaos.StartBackground(w, obs, 50*time.Millisecond)
	defer bg.Stop()

	var samples func() []clusterSample
	if sc.SkewedClocks {
		samples = startClusterSampler(cl, h)
		defer samples()
	}
	start := h.Now()
	env.stop = time.Now().Add(o.Duration)
	for time.Now().Before(env.stop) {
		sc.Inject(env)
	}
	env.heal()
	// The healed cluster serves the workload for a moment, so the run ends
	// with a working cluster.
	if env.WaitLeaderIndex(20*time.Second) < 0 {
		t.Errorf("%s: no leader within 20s of healing", sc.Name)
	}
	time.Sleep(time.Second)
	end := h.Now()
	bg.StopWorkload()

	name := "Proc" + sc.Name
	if o.UnsafeSweep {
		name += "+UnsafeSweep"
	}
	res := chaos.Result{Scenario: name, Servers: n, Duration: o.Duration, Faults: env.faults,
		Ops: map[chaos.Outcome]int{}, OpsByKind: map[chaos.Kind]int{}}
	// Invariant 4: all servers reach one digest at one index.
	res.Violations = append(res.Violations, chaos.WireDigests(t, env, 30*time.Second)...)
	bg.StopObserver()
	obs.Poll()

	ops := h.Ops()
	final, events := chaos.WireFinalState(t, env.api[0])
	histChecked := res.Judge(ops, w, final, events, obs.Tracker)
	// All processes read one machine's wall clock.
	if sc.SkewedClocks {
		worst, vs := checkClusterRate(samples(), clockRateSlack)
		res.Violations = append(res.Violations, vs...)
		t.Logf("cluster time against the test's clock: largest excess %v (slack %v)", worst, clockRateSlack)
	} else {
		res.Violations = append(res.Violations, chaos.CheckClockRate(events, 5*time.Millisecond)...)
	}
	t.Logf("grace checked against the cycle history for %d marks, clock rate over %d cycles; observer polls %d", histChecked, len(events), obs.Polls())
	res.MaxUnavailable = chaos.MaxWriteGap(ops, start, end)
	chaos.Finish(t, &res, ops, o.UnsafeSweep)
	res.CheckRan(t, obs.Tracker)
	if sc.After != nil {
		sc.After(t, env)
	}
	return res
}

// Name and API make procEnv a chaos.WireCluster.
func (e *procEnv) Name(i int) string               { return e.pc.procs[i].id }
func (e *procEnv) API(i int) blobgcv1.BlobGCClient { return e.api[i] }
