package dockertest

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/chaos"
	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/sweeper"
)

// Container chaos. TestDockerChaos_<Scenario> starts a compose cluster,
// drives it from the host with the chaos package's workload (through the
// published 127.0.0.1 ports, its client mapping service names to them)
// while a scenario kills, disconnects and restarts containers, heals, waits
// for one digest at one applied index on every server and runs the chaos
// package's checkers. What the in-process suite reads from a server's
// memory is read over the wire from each server itself, as the process
// suite does: stale reads for blob states and cluster time, Members with
// the member-self metadata for the raft role and term.

// The knobs share their names with the other chaos suites.
var (
	dockerChaosDuration = flag.Duration("chaos.duration", envDuration("BLOBGC_CHAOS_DURATION", 10*time.Second), "fault phase of each docker chaos scenario")
	dockerChaosSeed     = flag.Uint64("chaos.seed", uint64(envInt("BLOBGC_CHAOS_SEED", 0)), "random seed (0: time-based, logged)")
	// Accepted so that scripts/chaos.sh passes the same flags to every
	// suite; the compose file fixes the layouts (3, or 5 with "five").
	dockerChaosServers = flag.Int("chaos.servers", envInt("BLOBGC_CHAOS_SERVERS", 0), "servers per scenario (0: the scenario's own; 3 or 5)")
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

// dockerChaosCycle is short against chaos.Grace, so blobs are marked,
// claimed and deleted many times a run.
const dockerChaosCycle = 150 * time.Millisecond

// dockerClockSlack is CheckClockRate's slack here, wider than the other
// suites' 5 ms. This suite found that a cycle stamped just before another
// command but enqueued after it showed the later cluster time beside its own
// earlier wall time (6 ms ahead of its neighbours, where about 1 µs is
// usual); the leader now stamps and enqueues under one lock, and the wider
// slack is a margin for containers on a loaded host. The faults this check
// exists for are larger by far: a leader counting an election gap (300 ms
// and more here) as elapsed, or starting its cluster clock from its wall
// clock.
const dockerClockSlack = 50 * time.Millisecond

// maxClockExcess returns by how much cluster time ran furthest ahead of
// wall time between two consecutive cycles, and the later cycle's number.
func maxClockExcess(events []fsm.HistoryEvent) (time.Duration, uint64) {
	var worst time.Duration
	var at uint64
	for i := 1; i < len(events); i++ {
		a, b := events[i-1], events[i]
		if d := time.Duration((b.Time - a.Time) - (b.WallTime - a.WallTime)); d > worst {
			worst, at = d, b.Seq
		}
	}
	return worst, at
}

// dockerScenario is a fault schedule against containers.
type dockerScenario struct {
	Name    string
	Servers int
	// Inject runs one round of faults (inject, hold, recover); it is called
	// until the fault phase is over.
	Inject func(e *dockerEnv)
}

var dockerScenarios = []dockerScenario{
	{Name: "KillLeader", Servers: 3, Inject: func(e *dockerEnv) {
		l := e.WaitLeaderIndex(5 * time.Second)
		if l < 0 {
			return
		}
		e.Kill(l)
		e.Hold(1500 * time.Millisecond)
		e.Start(l)
		e.Hold(1500 * time.Millisecond)
	}},
	{Name: "PartitionLeader", Servers: 3, Inject: func(e *dockerEnv) {
		l := e.WaitLeaderIndex(5 * time.Second)
		if l < 0 {
			return
		}
		e.Disconnect(l)
		e.Hold(2 * time.Second)
		e.Reconnect(l)
		e.Hold(1500 * time.Millisecond)
	}},
	{Name: "RestartRandom", Servers: 3, Inject: func(e *dockerEnv) {
		e.Restart(e.Rand.IntN(e.N()))
		e.Hold(time.Second)
	}},
	// Five servers tolerate two down: kill the leader and cut a follower
	// off together, bring both back, then restart a random server.
	{Name: "Mixed5", Servers: 5, Inject: func(e *dockerEnv) {
		l := e.WaitLeaderIndex(5 * time.Second)
		if l < 0 {
			return
		}
		f := (l + 1 + e.Rand.IntN(e.N()-1)) % e.N()
		e.Kill(l)
		e.Disconnect(f)
		e.Hold(2 * time.Second)
		e.Reconnect(f)
		e.Start(l)
		e.Restart(e.Rand.IntN(e.N()))
		e.Hold(time.Second)
	}},
}

func TestDockerChaos_KillLeader(t *testing.T) {
	runDockerChaos(t, dockerScenarioNamed(t, "KillLeader"), defaultDockerOpts())
}

func TestDockerChaos_PartitionLeader(t *testing.T) {
	runDockerChaos(t, dockerScenarioNamed(t, "PartitionLeader"), defaultDockerOpts())
}

func TestDockerChaos_RestartRandom(t *testing.T) {
	runDockerChaos(t, dockerScenarioNamed(t, "RestartRandom"), defaultDockerOpts())
}

func TestDockerChaos_Mixed5(t *testing.T) {
	runDockerChaos(t, dockerScenarioNamed(t, "Mixed5"), defaultDockerOpts())
}

// The whole container pipeline (workload through the published ports,
// observer, end-state reads, checkers) catches a sweeper that deletes
// without claiming: the suite can fail.
func TestDockerChaos_CatchesUnsafeSweeper(t *testing.T) {
	o := defaultDockerOpts()
	o.Duration, o.UnsafeSweep = 4*time.Second, true
	res := runDockerChaos(t, dockerScenarioNamed(t, "KillLeader"), o)
	found := false
	for _, v := range res.Violations {
		found = found || v.Invariant == 6
	}
	if !found {
		t.Fatalf("no invariant 6 violation among %v", res.Violations)
	}
}

// dockerOpts are the options of one docker chaos run.
type dockerOpts struct {
	Duration time.Duration // of the fault phase
	Servers  int           // overrides the scenario's server count when 3 or 5
	Seed     uint64
	// UnsafeSweep runs the chaos workload's sabotaged sweeper: violations
	// are then expected, logged and returned instead of failing t.
	UnsafeSweep bool
}

// defaultDockerOpts are the options from the flags and environment.
func defaultDockerOpts() dockerOpts {
	return dockerOpts{Duration: *dockerChaosDuration, Servers: *dockerChaosServers, Seed: *dockerChaosSeed}
}

func dockerScenarioNamed(t *testing.T, name string) dockerScenario {
	for _, sc := range dockerScenarios {
		if sc.Name == name {
			return sc
		}
	}
	t.Fatalf("no docker chaos scenario %q", name)
	return dockerScenario{}
}

// dockerEnv is what a scenario's faults act on. Fault methods run on the
// test goroutine; the observer reads the liveness state under mu.
type dockerEnv struct {
	t    *testing.T
	c    *cluster
	Rand *rand.Rand
	ids  []string                // container of each server
	net  string                  // the compose network
	api  []blobgcv1.BlobGCClient // one direct connection per server

	mu     sync.Mutex
	alive  []bool // the container runs
	cut    []bool // the container is off the compose network
	inc    []int  // incarnation: bumped by every (re)start
	faults int
	stop   time.Time
}

func (e *dockerEnv) N() int { return len(e.c.services) }

// Hold waits d, or less if the fault phase is over.
func (e *dockerEnv) Hold(d time.Duration) {
	if left := time.Until(e.stop); left < d {
		d = max(left, 0)
	}
	time.Sleep(d)
}

func (e *dockerEnv) docker(args ...string) {
	if _, err := docker(args...); err != nil {
		e.t.Errorf("%v", err)
	}
}

// reachable reports whether server i runs and is connected.
func (e *dockerEnv) reachable(i int) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.alive[i] && !e.cut[i]
}

// LeaderIndex returns a running, connected server that says it leads (the
// one with the highest term if several do), or -1.
func (e *dockerEnv) LeaderIndex() int { return chaos.WireLeader(e, e.reachable) }

// WaitLeaderIndex waits up to d for a leader and returns it, or -1.
func (e *dockerEnv) WaitLeaderIndex(d time.Duration) int {
	return chaos.WaitWireLeader(e, e.reachable, d, 50*time.Millisecond)
}

// Kill SIGKILLs server i's container (docker kill).
func (e *dockerEnv) Kill(i int) {
	e.mu.Lock()
	up := e.alive[i]
	e.alive[i] = false
	if up {
		e.faults++
	}
	e.mu.Unlock()
	if up {
		e.docker("kill", e.ids[i])
	}
}

// Start starts server i's killed container again, from its volume.
func (e *dockerEnv) Start(i int) {
	e.mu.Lock()
	up := e.alive[i]
	e.mu.Unlock()
	if up {
		return
	}
	e.docker("start", e.ids[i])
	e.mu.Lock()
	e.alive[i] = true
	e.inc[i]++
	e.mu.Unlock()
}

// Restart restarts server i's container (docker restart: SIGTERM, then a
// fresh start from its volume).
func (e *dockerEnv) Restart(i int) {
	e.mu.Lock()
	if !e.alive[i] {
		e.mu.Unlock()
		return
	}
	e.alive[i] = false
	e.faults++
	e.mu.Unlock()
	e.docker("restart", "--time", "10", e.ids[i])
	e.mu.Lock()
	e.alive[i] = true
	e.inc[i]++
	e.mu.Unlock()
}

// Disconnect takes server i's container off the compose network.
func (e *dockerEnv) Disconnect(i int) {
	e.mu.Lock()
	if e.cut[i] || !e.alive[i] {
		e.mu.Unlock()
		return
	}
	e.cut[i] = true
	e.faults++
	e.mu.Unlock()
	e.docker("network", "disconnect", e.net, e.ids[i])
}

// Reconnect puts server i back on the network under its service name,
// which its peers dial.
func (e *dockerEnv) Reconnect(i int) {
	e.mu.Lock()
	cut := e.cut[i]
	e.mu.Unlock()
	if !cut {
		return
	}
	e.docker("network", "connect", "--alias", e.c.services[i], e.net, e.ids[i])
	e.mu.Lock()
	e.cut[i] = false
	e.mu.Unlock()
}

// heal reconnects every cut server and starts every killed one.
func (e *dockerEnv) heal() {
	for i := range e.N() {
		e.Reconnect(i)
		e.Start(i)
	}
}

// Up returns, for each server, whether its container runs, and its
// incarnation. A disconnected server counts as up: the host may not reach
// it, but what it answers is its own state.
func (e *dockerEnv) Up() ([]bool, []int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]bool(nil), e.alive...), append([]int(nil), e.inc...)
}

// Name and API make dockerEnv a chaos.WireCluster: servers are read
// through their published ports.
func (e *dockerEnv) Name(i int) string               { return e.c.services[i] }
func (e *dockerEnv) API(i int) blobgcv1.BlobGCClient { return e.api[i] }

// startChaosCluster is startCluster with the cycle interval of the chaos
// suites (the compose file passes BLOBGC_CYCLE_INTERVAL to the servers).
func startChaosCluster(t *testing.T, n int) *cluster {
	t.Helper()
	tag, bin := buildImage(t)
	c := &cluster{
		t: t, root: repoRoot(t), project: "blobgc-test-" + randomHex(4), image: tag, bin: bin,
		ports: map[string]int{}, metrics: map[string]int{},
	}
	if n == 5 {
		c.profiles = []string{"five"}
	}
	t.Cleanup(c.down)
	for attempt := 1; ; attempt++ {
		c.setPorts(n, freePorts(t, 2*maxServers))
		c.env = append(c.env, "BLOBGC_CYCLE_INTERVAL="+dockerChaosCycle.String(), "BLOBGC_LOG_LEVEL=warn")
		out, err := c.compose(3*time.Minute, "up", "-d")
		if err == nil {
			break
		}
		taken := strings.Contains(string(out), "already allocated") || strings.Contains(string(out), "address already in use")
		if !taken || attempt == 3 {
			t.Fatalf("compose up: %v\n%s", err, out)
		}
		if out, err := c.compose(2*time.Minute, "down", "-v", "--remove-orphans", "-t", "2"); err != nil {
			t.Fatalf("compose down: %v\n%s", err, out)
		}
	}
	c.client = c.newClient(client.WithCallTimeout(3*time.Second), client.WithRetryTimeout(5*time.Second))
	return c
}

// runDockerChaos runs one scenario: compose cluster, workload, faults,
// heal, convergence and every checker of the chaos package. Every
// violation fails t; the summary row is logged and appended to the file
// named by BLOBGC_CHAOS_REPORT.
func runDockerChaos(t *testing.T, sc dockerScenario, o dockerOpts) chaos.Result {
	n := sc.Servers
	if o.Servers == 3 || o.Servers == 5 {
		n = o.Servers
	}
	seed, dur := o.Seed, o.Duration
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("docker scenario %s: %d servers, %v, seed %d", sc.Name, n, dur, seed)
	c := startChaosCluster(t, n)
	c.waitVoters(formTimeout, "")

	env := &dockerEnv{t: t, c: c, Rand: rand.New(rand.NewPCG(seed, 13)),
		alive: make([]bool, n), cut: make([]bool, n), inc: make([]int, n)}
	for i, svc := range c.services {
		env.alive[i] = true
		env.ids = append(env.ids, c.containerID(svc))
		cc, err := grpc.NewClient("passthrough:///"+fmt.Sprintf("127.0.0.1:%d", c.ports[svc]), grpc.WithTransportCredentials(credentials.NewTLS(c.tlsConfig())))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		env.api = append(env.api, blobgcv1.NewBlobGCClient(cc))
	}
	var err error
	if env.net, err = network(env.ids[0]); err != nil {
		t.Fatal(err)
	}

	// The compose file sets no GC config: set the chaos grace period, and a
	// stale threshold no run reaches, in the replicated config.
	setupCtx, cancelSetup := context.WithTimeout(context.Background(), time.Minute)
	defer cancelSetup()
	grace, stale := chaos.Grace.Nanoseconds(), time.Hour.Nanoseconds()
	waitFor(t, 30*time.Second, "the chaos GC config applied", func(ctx context.Context) error {
		cfg, err := c.client.SetConfig(ctx, &blobgcv1.SetConfigRequest{GracePeriodNs: &grace, StaleThresholdNs: &stale})
		if err != nil {
			return err
		}
		if cfg.GetGracePeriodNs() != grace || cfg.GetStaleThresholdNs() != stale {
			return fmt.Errorf("config %v", cfg)
		}
		return nil
	})

	cl := c.newClient(client.WithCallTimeout(time.Second), client.WithBackoff(5*time.Millisecond, 100*time.Millisecond))
	h := chaos.NewHistory()
	w := &chaos.Workload{Client: cl, Store: sweeper.Dir(filepath.Join(t.TempDir(), "store")), H: h, Seed: seed, UnsafeSweep: o.UnsafeSweep}
	if err := w.Setup(setupCtx, 48, 6); err != nil {
		t.Fatal(err)
	}

	obs := chaos.NewWireObserver(env, chaos.Grace, w.Blobs)
	bg := chaos.StartBackground(w, obs, 50*time.Millisecond)
	defer bg.Stop()

	start := h.Now()
	env.stop = time.Now().Add(dur)
	for time.Now().Before(env.stop) {
		sc.Inject(env)
	}
	env.heal()
	if env.WaitLeaderIndex(30*time.Second) < 0 {
		t.Errorf("%s: no leader within 30s of healing", sc.Name)
	}
	// The healed cluster serves the workload for a moment, so the run ends
	// with a working cluster.
	time.Sleep(time.Second)
	end := h.Now()
	bg.StopWorkload()

	name := "Docker" + sc.Name
	if o.UnsafeSweep {
		name += "+UnsafeSweep"
	}
	res := chaos.Result{Scenario: name, Servers: n, Duration: dur, Faults: env.faults,
		Ops: map[chaos.Outcome]int{}, OpsByKind: map[chaos.Kind]int{}}
	// Invariant 4: all servers reach one digest at one index.
	res.Violations = append(res.Violations, chaos.WireDigests(t, env, 60*time.Second)...)
	bg.StopObserver()
	obs.Poll()

	ops := h.Ops()
	final, events := chaos.WireFinalState(t, env.api[0])
	histChecked := res.Judge(ops, w, final, events, obs.Tracker)
	res.Violations = append(res.Violations, chaos.CheckClockRate(events, dockerClockSlack)...)
	excess, at := maxClockExcess(events)
	t.Logf("grace checked against the cycle history for %d marks, clock rate over %d cycles (largest excess of cluster over wall time %v, before cycle %d); observer polls %d",
		histChecked, len(events), excess, at, obs.Polls())
	if excess > 5*time.Millisecond {
		// A clock that runs ahead keeps its offset; a reordered stamp
		// shows one cycle off and the next back.
		for _, ev := range events {
			if ev.Seq+2 >= at && ev.Seq <= at+2 {
				t.Logf("cycle %d: cluster time minus wall time %v", ev.Seq, time.Duration(ev.Time-ev.WallTime))
			}
		}
	}
	res.MaxUnavailable = chaos.MaxWriteGap(ops, start, end)
	chaos.Finish(t, &res, ops, o.UnsafeSweep)
	res.CheckRan(t, obs.Tracker)
	return res
}
