package chaos

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

	"github.com/hashicorp/raft"

	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/sweeper"
)

// Grace is the grace period scenarios run with: short, so blobs are marked,
// claimed and deleted many times in a run, and long against the cycle
// interval so the grace check is meaningful.
const Grace = time.Second

// Scenario is one fault schedule.
type Scenario struct {
	Name    string
	Servers int
	// Inject runs one round of faults (inject, hold, heal) on env; it is
	// called repeatedly until the run's duration is over.
	Inject func(env *Env)
}

// Env is what a scenario's faults act on. Its methods run on the test
// goroutine.
type Env struct {
	T    testing.TB
	C    *clustertest.Cluster
	Rand *rand.Rand

	mu     sync.Mutex // guards C.Servers against the observer
	faults int
	stop   time.Time
}

// Addr is server i's raft (and API) address.
func (e *Env) Addr(i int) raft.ServerAddress { return raft.ServerAddress(e.C.Configs[i].ListenAddr) }

// N is the number of servers.
func (e *Env) N() int { return len(e.C.Configs) }

// Fault counts one injected fault.
func (e *Env) Fault() { e.faults++ }

// LeaderIndex returns the index of a running server that leads now, or -1.
func (e *Env) LeaderIndex() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, s := range e.C.Servers {
		if s != nil && s.IsLeader() {
			return i
		}
	}
	return -1
}

// Hold waits d, or less if the run is over.
func (e *Env) Hold(d time.Duration) {
	if left := time.Until(e.stop); left < d {
		d = max(left, 0)
	}
	time.Sleep(d)
}

// Kill crashes server i (no graceful shutdown).
func (e *Env) Kill(i int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.C.Servers[i] != nil {
		e.C.Kill(i)
		e.faults++
	}
}

// Restart starts server i again from its data directory.
func (e *Env) Restart(i int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.C.Servers[i] == nil {
		e.C.Restart(i)
	}
}

func (e *Env) servers() []*cluster.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.C.Servers)
}

// Result summarises one run.
type Result struct {
	Scenario       string
	Servers        int
	Duration       time.Duration
	Faults         int
	Ops            map[Outcome]int
	OpsByKind      map[Kind]int
	LeaderChanges  int
	MaxUnavailable time.Duration // longest time without an acknowledged write
	LostWrites     int           // invariant 3 violations
	MarksChecked   int
	Deleted        int
	Violations     []Violation
}

// Header is the summary table's header line.
const Header = "| scenario | servers | duration | faults | ops ok | ops failed | ops unknown | leader changes | longest write unavailability | acked writes lost | marks checked | files deleted | violations |"

// Row is the result as a summary table row.
func (r Result) Row() string {
	return fmt.Sprintf("| %s | %d | %v | %d | %d | %d | %d | %d | %v | %d | %d | %d | %d |",
		r.Scenario, r.Servers, r.Duration.Round(time.Second), r.Faults, r.Ops[OK], r.Ops[Failed], r.Ops[Unknown],
		r.LeaderChanges, r.MaxUnavailable.Round(time.Millisecond), r.LostWrites, r.MarksChecked, r.Deleted, len(r.Violations))
}

// Options of a run.
type Options struct {
	Duration time.Duration // of the fault phase
	Servers  int           // overrides the scenario's server count when nonzero
	Seed     uint64
	// UnsafeSweep runs the sabotaged sweeper (see Workload.UnsafeSweep);
	// violations are then expected and logged instead of failing t.
	UnsafeSweep bool
}

// Run starts a cluster, runs the workload while sc injects faults, heals,
// and checks every invariant. It reports every violation with t.Errorf,
// logs the summary row, and appends it to the file named by
// BLOBGC_CHAOS_REPORT if set.
func Run(t testing.TB, sc Scenario, o Options) Result {
	n := sc.Servers
	if o.Servers != 0 {
		n = o.Servers
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	t.Logf("scenario %s: %d servers, %v, seed %d", sc.Name, n, o.Duration, o.Seed)
	gc := fsm.DefaultConfig()
	gc.GracePeriod = Grace
	gc.StaleThreshold = time.Hour // nodes never go stale: liveness stays simple
	c := clustertest.Start(t, clustertest.Options{N: n, Configure: func(i int, cfg *cluster.Config) {
		cfg.GC = &gc
		cfg.CycleInterval = 150 * time.Millisecond
	}})
	env := &Env{T: t, C: c, Rand: rand.New(rand.NewPCG(o.Seed, 7))}
	var addrs []string
	for i := range c.Configs {
		addrs = append(addrs, c.Configs[i].ListenAddr)
	}
	cl, err := client.New(addrs, client.WithCallTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	setupCtx, cancelSetup := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelSetup()
	clustertest.Eventually(t, 20*time.Second, "the GC config applied", func() bool {
		cfg, err := cl.GetConfig(setupCtx)
		return err == nil && cfg.GetGracePeriodNs() == Grace.Nanoseconds()
	})
	h := NewHistory()
	w := &Workload{Client: cl, Store: sweeper.Dir(filepath.Join(t.TempDir(), "store")), H: h, Seed: o.Seed, UnsafeSweep: o.UnsafeSweep}
	if err := w.Setup(setupCtx, 48, 6); err != nil {
		t.Fatal(err)
	}

	obs := NewObserver(Grace, env.servers, w.Blobs)
	bg := StartBackground(w, obs, 40*time.Millisecond)
	defer bg.Stop()

	start := h.Now()
	env.stop = time.Now().Add(o.Duration)
	for time.Now().Before(env.stop) {
		sc.Inject(env)
	}
	c.Faults.Heal()
	for i := range c.Servers {
		env.Restart(i)
	}
	// Let the healed cluster serve the workload for a moment, so the run
	// ends with a working cluster, then stop it.
	time.Sleep(time.Second)
	end := h.Now()
	bg.StopWorkload()

	name := sc.Name
	if o.UnsafeSweep {
		name += "+UnsafeSweep"
	}
	res := Result{Scenario: name, Servers: n, Duration: o.Duration, Faults: env.faults,
		Ops: map[Outcome]int{}, OpsByKind: map[Kind]int{}}
	// Invariant 4: all servers converge to one digest at one index. Cycles
	// keep running, so look for a moment where all agree.
	var idx []uint64
	var digests [][32]byte
	converged := false
	deadline := time.Now().Add(30 * time.Second)
	for !converged && time.Now().Before(deadline) {
		idx, digests = idx[:0], digests[:0]
		for _, s := range env.servers() {
			i, d := s.FSM().Digest()
			idx, digests = append(idx, i), append(digests, d)
		}
		converged = len(CheckDigests(idx, digests)) == 0
		if !converged {
			time.Sleep(5 * time.Millisecond)
		}
	}
	res.Violations = append(res.Violations, CheckDigests(idx, digests)...)
	bg.StopObserver()
	obs.Poll()

	ops := h.Ops()
	final := env.servers()[0].FSM()
	events, _ := final.History(0, 1<<20)
	histChecked := res.Judge(ops, w, final, events, obs.Tracker)
	res.Violations = append(res.Violations, CheckClockRate(events, 5*time.Millisecond)...)
	t.Logf("grace checked against the cycle history for %d marks, clock rate over %d cycles", histChecked, len(events))
	res.MaxUnavailable = MaxWriteGap(ops, start, end)
	Finish(t, &res, ops, o.UnsafeSweep)
	return res
}

// Background runs a scenario's workload and its observer's polls while the
// faults are injected.
type Background struct {
	cancel   context.CancelFunc
	wlDone   chan struct{}
	stopObs  chan struct{}
	obsDone  chan struct{}
	stopOnce sync.Once
}

// StartBackground starts w and polls of obs (an Observer or a
// WireObserver) every interval.
func StartBackground(w *Workload, obs interface {
	Run(stop <-chan struct{}, interval time.Duration)
}, interval time.Duration) *Background {
	ctx, cancel := context.WithCancel(context.Background())
	b := &Background{cancel: cancel, wlDone: make(chan struct{}), stopObs: make(chan struct{}), obsDone: make(chan struct{})}
	go func() {
		defer close(b.obsDone)
		obs.Run(b.stopObs, interval)
	}()
	go func() {
		defer close(b.wlDone)
		w.Run(ctx)
	}()
	return b
}

// StopWorkload stops the workload and waits until it has returned.
func (b *Background) StopWorkload() {
	b.cancel()
	<-b.wlDone
}

// StopObserver stops the polls and waits until the last has returned.
func (b *Background) StopObserver() {
	b.stopOnce.Do(func() { close(b.stopObs) })
	<-b.obsDone
}

// Stop stops both; deferred, it keeps a t.Fatal on the way from leaving
// them running against the next test's servers.
func (b *Background) Stop() {
	b.StopWorkload()
	b.StopObserver()
}

// Judge runs the end-of-run checks every suite shares, however it reads the
// servers: no acknowledged write lost (against final, one server's end
// state), the claims, the sweeper (against what w's store still holds),
// linearizability, what the observer found, and the grace period against
// the cycle history. It fills res's counts of those and returns how many
// marks the history check covered. Each suite adds its own clock-rate check.
func (res *Result) Judge(ops []Op, w *Workload, final FinalState, events []fsm.HistoryEvent, obs *Tracker) int {
	lost := CheckNoLostWrites(ops, final)
	res.LostWrites = len(lost)
	res.Violations = append(res.Violations, CheckClaims(ops)...)
	res.Violations = append(res.Violations, lost...)
	res.Violations = append(res.Violations, CheckSweeper(ops, w.Gone())...)
	res.Violations = append(res.Violations, CheckLinearizable(ops, time.Minute)...)
	res.Violations = append(res.Violations, obs.Violations()...)
	histChecked, histVs := CheckGraceHistory(obs.Marked(), events, Grace)
	res.Violations = append(res.Violations, histVs...)
	res.LeaderChanges = obs.LeaderChanges()
	res.MarksChecked = obs.Marks()
	return histChecked
}

// CheckRan fails t unless the run did what gives its checks meaning: a
// fault injected, an operation acknowledged, and an observer that saw a
// leader and checked a mark.
func (res *Result) CheckRan(t testing.TB, obs *Tracker) {
	t.Helper()
	if res.Faults == 0 {
		t.Errorf("%s: no fault was injected", res.Scenario)
	}
	if res.Ops[OK] == 0 {
		t.Errorf("%s: no operation succeeded", res.Scenario)
	}
	if obs.LeadersSeen() == 0 || res.MarksChecked == 0 {
		t.Errorf("%s: the observer saw %d leaders and %d marks: the leader-per-term and grace checks did not run", res.Scenario, obs.LeadersSeen(), res.MarksChecked)
	}
}

// Finish counts the operations, reports the violations (t.Errorf, or
// t.Logf when an unsafe sweeper makes them expected) and the summary row,
// which it also appends to the file BLOBGC_CHAOS_REPORT names.
func Finish(t testing.TB, res *Result, ops []Op, unsafeSweep bool) {
	t.Helper()
	for _, op := range ops {
		res.Ops[op.Outcome]++
		res.OpsByKind[op.Kind]++
		if op.Kind == OpDelete {
			res.Deleted += len(op.Hashes)
		}
	}
	for _, v := range res.Violations {
		if unsafeSweep {
			t.Logf("%s (expected): %v", res.Scenario, v)
			continue
		}
		t.Errorf("%s: %v", res.Scenario, v)
	}
	t.Logf("ops by kind: %v", res.OpsByKind)
	t.Logf("\n%s\n%s", Header, res.Row())
	if p := os.Getenv("BLOBGC_CHAOS_REPORT"); p != "" {
		if f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(f, res.Row())
			f.Close()
		}
	}
}

// MaxWriteGap is the longest stretch of [from, to] in which no write was
// acknowledged.
func MaxWriteGap(ops []Op, from, to time.Duration) time.Duration {
	var rets []time.Duration
	for _, o := range ops {
		if o.Kind.IsWrite() && o.Outcome == OK && o.Return >= from && o.Return <= to {
			rets = append(rets, o.Return)
		}
	}
	slices.Sort(rets)
	gap, prev := time.Duration(0), from
	for _, r := range append(rets, to) {
		gap = max(gap, r-prev)
		prev = r
	}
	return gap
}

// Names lists the scenarios.
func Names() string {
	var ns []string
	for _, s := range Scenarios {
		ns = append(ns, s.Name)
	}
	return strings.Join(ns, ", ")
}
