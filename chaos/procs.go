package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/sweeper"
)

// Procs is a cluster of `blobgc server` processes on loopback, for faults
// only a real process has: SIGKILL at any instruction, SIGSTOP pauses
// longer than the election timeout, restart from disk.
type Procs struct {
	T    testing.TB
	Rand *rand.Rand

	bin    string
	ids    []string
	addrs  []string
	args   [][]string
	dir    string
	cl     *client.Client
	faults int
	stop   time.Time

	mu     sync.Mutex
	cmds   []*exec.Cmd
	done   []chan struct{}
	paused []bool
}

// ProcScenario is a fault schedule for server processes.
type ProcScenario struct {
	Name    string
	Servers int
	Inject  func(p *Procs)
}

// ProcScenarios are the process-level fault schedules.
var ProcScenarios = []ProcScenario{
	{Name: "ProcKillLeader", Servers: 3, Inject: procKillLeader},
	{Name: "ProcPauseLeader", Servers: 3, Inject: procPauseLeader},
	{Name: "ProcMixed", Servers: 5, Inject: procMixed},
}

// ProcScenarioByName returns the process scenario called name.
func ProcScenarioByName(name string) (ProcScenario, bool) {
	for _, s := range ProcScenarios {
		if s.Name == name {
			return s, true
		}
	}
	return ProcScenario{}, false
}

// BuildBinary builds cmd/blobgc into dir and returns its path.
func BuildBinary(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "blobgc")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/blobgc/blobgc/cmd/blobgc").CombinedOutput()
	if err != nil {
		t.Fatalf("go build cmd/blobgc: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// StartProcs starts n server processes that bootstrap one cluster with the
// scenario GC settings (grace Grace, stale threshold 1 h, a cycle every
// 150 ms) and raft timings as short as the in-process suite's.
func StartProcs(t testing.TB, bin string, n int, seed uint64) *Procs {
	p := &Procs{T: t, bin: bin, dir: t.TempDir(), Rand: rand.New(rand.NewPCG(seed, 8))}
	var peers []string
	for i := range n {
		p.ids = append(p.ids, fmt.Sprintf("s%d", i+1))
		p.addrs = append(p.addrs, freeAddr(t))
		peers = append(peers, p.ids[i]+"="+p.addrs[i])
	}
	for i := range n {
		p.args = append(p.args, []string{"server", "--id", p.ids[i], "--data-dir", filepath.Join(p.dir, p.ids[i]),
			"--listen", p.addrs[i], "--peers", strings.Join(peers, ","),
			"--heartbeat-timeout=250ms", "--election-timeout=250ms", "--leader-lease-timeout=250ms", "--commit-timeout=5ms",
			"--cycle-interval=150ms", "--grace-period=" + Grace.String(), "--stale-threshold=1h", "--log-level=warn"})
	}
	p.cmds, p.done, p.paused = make([]*exec.Cmd, n), make([]chan struct{}, n), make([]bool, n)
	t.Cleanup(p.killAll)
	for i := range n {
		p.start(i)
	}
	cl, err := client.New(p.addrs, client.WithCallTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	p.cl = cl
	return p
}

func (p *Procs) start(i int) {
	p.T.Helper()
	logf, err := os.OpenFile(filepath.Join(p.dir, p.ids[i]+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.T.Fatal(err)
	}
	cmd := exec.Command(p.bin, p.args[i]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	orphanProof(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.T.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmds[i], p.done[i], p.paused[i] = cmd, done, false
	p.mu.Unlock()
}

// N is the number of servers.
func (p *Procs) N() int { return len(p.addrs) }

// Addrs are the servers' addresses.
func (p *Procs) Addrs() []string { return p.addrs }

// Hold waits d, or less if the run is over.
func (p *Procs) Hold(d time.Duration) {
	if left := time.Until(p.stop); left < d {
		d = max(left, 0)
	}
	time.Sleep(d)
}

// LeaderIndex asks the cluster for its leader; -1 if none answers in time.
func (p *Procs) LeaderIndex() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m, err := p.cl.Members(ctx)
	if err != nil {
		return -1
	}
	for i, a := range p.addrs {
		if a == m.GetLeaderAddress() {
			return i
		}
	}
	return -1
}

// Kill sends SIGKILL to server i and waits for it to exit.
func (p *Procs) Kill(i int) {
	p.mu.Lock()
	cmd, done := p.cmds[i], p.done[i]
	p.cmds[i] = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	p.faults++
}

// Restart starts a killed server again from its data directory.
func (p *Procs) Restart(i int) {
	p.mu.Lock()
	running := p.cmds[i] != nil
	p.mu.Unlock()
	if !running {
		p.start(i)
	}
}

// Pause stops server i with SIGSTOP.
func (p *Procs) Pause(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmds[i] != nil && !p.paused[i] {
		p.cmds[i].Process.Signal(syscall.SIGSTOP)
		p.paused[i] = true
		p.faults++
	}
}

// Resume continues server i with SIGCONT.
func (p *Procs) Resume(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmds[i] != nil && p.paused[i] {
		p.cmds[i].Process.Signal(syscall.SIGCONT)
		p.paused[i] = false
	}
}

func (p *Procs) killAll() {
	for i := range p.addrs {
		p.Resume(i)
		p.mu.Lock()
		cmd, done := p.cmds[i], p.done[i]
		p.cmds[i] = nil
		p.mu.Unlock()
		if cmd != nil {
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	}
}

func procKillLeader(p *Procs) {
	if l := p.LeaderIndex(); l >= 0 {
		p.Kill(l)
		p.Hold(hold)
		p.Restart(l)
	}
	p.Hold(recoverFor)
}

func procPauseLeader(p *Procs) {
	if l := p.LeaderIndex(); l >= 0 {
		p.Pause(l)
		p.Hold(hold)
		p.Resume(l)
	}
	p.Hold(recoverFor)
}

// procMixed kills or pauses the leader or a random server.
func procMixed(p *Procs) {
	i := p.Rand.IntN(p.N())
	if l := p.LeaderIndex(); l >= 0 && p.Rand.IntN(2) == 0 {
		i = l
	}
	if p.Rand.IntN(2) == 0 {
		p.Kill(i)
		p.Hold(hold)
		p.Restart(i)
	} else {
		p.Pause(i)
		p.Hold(hold)
		p.Resume(i)
	}
	p.Hold(recoverFor)
}

// apiState reads the end state through the API (linearizable reads).
type apiState struct {
	ctx context.Context
	cl  *client.Client
	err error
}

func (a *apiState) Blob(h fsm.Hash) fsm.BlobInfo {
	st, err := a.cl.Status(a.ctx, h)
	if err != nil {
		a.err = err
		return fsm.BlobInfo{Hash: h}
	}
	s := fsm.StatusNotFound
	if st.GetState() > blobgcv1.BlobState_BLOB_STATE_NOT_FOUND {
		s = fsm.Status(st.GetState() - blobgcv1.BlobState_BLOB_STATE_NOT_FOUND)
	}
	return fsm.BlobInfo{Hash: h, Status: s, CoordinatorPin: st.GetCoordinatorPin(),
		ReferencedBy: st.GetReferencedBy(), PinnedBy: st.GetPinnedBy(), Registered: st.GetRegistered()}
}

// RunProcs runs a process scenario: like Run, with the checks that need no
// access to a server's memory (claims, lost writes and the end state
// through the API, digests through the Digest call, linearizability, the
// sweeper, the clock rate of the cycle history, one leader per term as the
// servers report it).
func RunProcs(t testing.TB, bin string, sc ProcScenario, o Options) Result {
	n := sc.Servers
	if o.Servers != 0 {
		n = o.Servers
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	t.Logf("scenario %s: %d server processes, %v, seed %d", sc.Name, n, o.Duration, o.Seed)
	p := StartProcs(t, bin, n, o.Seed)
	cl := p.cl
	setupCtx, cancelSetup := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelSetup()
	clustertest.Eventually(t, 30*time.Second, "the GC config applied", func() bool {
		cfg, err := cl.GetConfig(setupCtx)
		return err == nil && cfg.GetGracePeriodNs() == Grace.Nanoseconds()
	})
	h := NewHistory()
	w := &Workload{Client: cl, Store: sweeper.Dir(filepath.Join(t.TempDir(), "store")), H: h, Seed: o.Seed}
	if err := w.Setup(setupCtx, 48, 6); err != nil {
		t.Fatal(err)
	}
	obs := NewObserver(Grace, nil, nil)
	stopObs, obsDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(obsDone)
		pollTerms(stopObs, obs, p.addrs, cl)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	wlDone := make(chan struct{})
	go func() {
		defer close(wlDone)
		w.Run(ctx)
	}()
	start := h.Now()
	p.stop = time.Now().Add(o.Duration)
	for time.Now().Before(p.stop) {
		sc.Inject(p)
	}
	for i := range p.addrs {
		p.Resume(i)
		p.Restart(i)
	}
	time.Sleep(time.Second)
	end := h.Now()
	cancel()
	<-wlDone

	res := Result{Scenario: sc.Name, Servers: n, Duration: o.Duration, Faults: p.faults,
		Ops: map[Outcome]int{}, OpsByKind: map[Kind]int{}}
	var idx []uint64
	var digests [][32]byte
	converged := false
	for deadline := time.Now().Add(30 * time.Second); !converged && time.Now().Before(deadline); {
		idx, digests = idx[:0], digests[:0]
		for _, a := range p.addrs {
			dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
			d, err := cl.DigestOf(dctx, a)
			dcancel()
			var dd [32]byte
			if err == nil {
				copy(dd[:], d.GetDigest())
				idx = append(idx, d.GetAppliedIndex())
			} else {
				idx = append(idx, 0)
			}
			digests = append(digests, dd)
		}
		converged = len(CheckDigests(idx, digests)) == 0 && idx[0] != 0
		if !converged {
			time.Sleep(5 * time.Millisecond)
		}
	}
	res.Violations = append(res.Violations, CheckDigests(idx, digests)...)
	close(stopObs)
	<-obsDone

	ops := h.Ops()
	endCtx, endCancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer endCancel()
	final := &apiState{ctx: endCtx, cl: cl}
	var gone []Hash
	for _, b := range w.Stored() {
		if !w.Store.Has(b) {
			gone = append(gone, b)
		}
	}
	lost := CheckNoLostWrites(ops, final)
	if final.err != nil {
		t.Fatalf("reading the end state: %v", final.err)
	}
	res.LostWrites = len(lost)
	res.Violations = append(res.Violations, CheckClaims(ops)...)
	res.Violations = append(res.Violations, lost...)
	res.Violations = append(res.Violations, CheckSweeper(ops, gone)...)
	res.Violations = append(res.Violations, CheckLinearizable(ops, time.Minute)...)
	var events []fsm.HistoryEvent
	for e, err := range cl.History(endCtx) {
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		events = append(events, fsm.HistoryEvent{Seq: e.GetSeq(), Time: e.GetTimeNs(), WallTime: e.GetWallTimeNs()})
	}
	res.Violations = append(res.Violations, CheckClockRate(events, 5*time.Millisecond)...)
	res.Violations = append(res.Violations, obs.Violations()...)
	res.LeaderChanges = obs.LeaderChanges()
	res.MaxUnavailable = MaxWriteGap(ops, start, end)
	finish(t, &res, ops, o)
	return res
}

// pollTerms asks every server for its term and role until stop closes.
func pollTerms(stop <-chan struct{}, obs *Observer, addrs []string, cl *client.Client) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		for _, a := range addrs {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			m, err := cl.MembersOf(ctx, a)
			cancel()
			if err != nil {
				continue
			}
			for _, mem := range m.GetMembers() {
				if mem.GetAddress() == a && mem.GetState() == "leader" {
					obs.sawLeader(m.GetTerm(), mem.GetId())
				}
			}
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
