package systemtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testnet"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// blobgcBin is the blobgc binary built by TestMain.
var blobgcBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "blobgc-systemtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	blobgcBin = filepath.Join(dir, "blobgc")
	build := exec.Command("go", "build", "-o", blobgcBin, "github.com/blobgc/blobgc/cmd/blobgc")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build blobgc:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// timings are raft flags for the servers.
type timings []string

// testTimings are the raft timings of server processes in tests (package
// testtiming: 200 ms heartbeat and election timeouts, scaled by
// BLOBGC_TEST_TIMEOUT_SCALE).
var testTimings = timings(testtiming.ServerFlags())

// proc is one `blobgc server` process.
type proc struct {
	id, addr, dir string
	args          []string
	cmd           *exec.Cmd
	done          chan struct{} // closed when the process has exited
	err           error         // its exit status, once done
}

// pause stops the process with SIGSTOP and waits until all its threads
// are stopped. Stopping is not instant once kill(2) returns: a CI run saw a
// leader apply a write that was sent after its SIGSTOP, so a test that
// needs the process frozen waits for the kernel to say so.
func (p *proc) pause() error {
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("SIGSTOP %s: %w", p.id, err)
	}
	for deadline := time.Now().Add(time.Minute); !allThreadsStopped(p.cmd.Process.Pid); time.Sleep(time.Millisecond) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited instead of stopping", p.id)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not stopped a minute after SIGSTOP", p.id)
		}
	}
	return nil
}

// procCluster is three server processes.
type procCluster struct {
	t     testing.TB
	procs []*proc
	mu    sync.Mutex
	// clientOpts are added to every client of the cluster (TLS).
	clientOpts []client.Option
}

// startProcs starts n server processes bootstrapping one cluster, without
// TLS.
func startProcs(t testing.TB, n int, tm timings, extra ...string) *procCluster {
	t.Helper()
	return startProcsWith(t, n, tm, func(*proc) []string { return append([]string{"--insecure"}, extra...) })
}

// startProcsWith starts n server processes bootstrapping one cluster, each
// with the extra flags argsOf gives it.
func startProcsWith(t testing.TB, n int, tm timings, argsOf func(*proc) []string) *procCluster {
	t.Helper()
	pc := newProcsWith(t, n, tm, argsOf)
	for i := range pc.procs {
		pc.start(i)
	}
	return pc
}

// newProcs prepares n server processes of one cluster without starting
// them, without TLS.
func newProcs(t testing.TB, n int, tm timings, extra ...string) *procCluster {
	t.Helper()
	return newProcsWith(t, n, tm, func(*proc) []string { return append([]string{"--insecure"}, extra...) })
}

// newProcsWith prepares n server processes of one cluster without starting
// them, each with the extra flags argsOf gives it.
func newProcsWith(t testing.TB, n int, tm timings, argsOf func(*proc) []string) *procCluster {
	t.Helper()
	pc := &procCluster{t: t}
	var peers []string
	base := t.TempDir()
	for i := 0; i < n; i++ {
		p := &proc{id: fmt.Sprintf("s%d", i+1), addr: testnet.Addr(t), dir: filepath.Join(base, fmt.Sprintf("s%d", i+1))}
		peers = append(peers, p.id+"="+p.addr)
		pc.procs = append(pc.procs, p)
	}
	for _, p := range pc.procs {
		p.args = append([]string{"server", "--id", p.id, "--data-dir", p.dir, "--listen", p.addr,
			"--peers", strings.Join(peers, ","), "--cycle-interval=-1s", "--log-level=info"}, tm...)
		if store := os.Getenv(clustertest.EnvLogStore); store != "" {
			p.args = append(p.args, "--log-store="+store) // a test's own --log-store comes later and wins
		}
		p.args = append(p.args, argsOf(p)...)
	}
	t.Cleanup(pc.killAll)
	return pc
}

func (pc *procCluster) start(i int) {
	pc.t.Helper()
	p := pc.procs[i]
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		pc.t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(p.dir, "..", p.id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		pc.t.Fatal(err)
	}
	cmd := exec.Command(blobgcBin, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	orphanProof(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		pc.t.Fatal(err)
	}
	done := make(chan struct{})
	pc.mu.Lock()
	p.cmd, p.done = cmd, done
	pc.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		pc.mu.Lock()
		p.err = err
		pc.mu.Unlock()
		close(done)
	}()
}

// kill sends SIGKILL to process i and waits until it has exited.
func (pc *procCluster) kill(i int) {
	p := pc.procs[i]
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// terminate sends SIGTERM to process i and returns its exit error.
func (pc *procCluster) terminate(i int) error {
	p := pc.procs[i]
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		pc.t.Fatalf("%s did not exit within 30s of SIGTERM", p.id)
	}
	p.cmd = nil
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return p.err
}

func (pc *procCluster) killAll() {
	for i := range pc.procs {
		pc.kill(i)
	}
	if tt, ok := pc.t.(*testing.T); ok && tt.Failed() {
		for _, p := range pc.procs {
			b, _ := os.ReadFile(filepath.Join(p.dir, "..", p.id+".log"))
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			tt.Logf("log of %s (tail):\n%s", p.id, b)
		}
	}
}

func (pc *procCluster) addrs() []string {
	var out []string
	for _, p := range pc.procs {
		out = append(out, p.addr)
	}
	return out
}

// index returns the process listening on addr.
func (pc *procCluster) index(addr string) int {
	for i, p := range pc.procs {
		if p.addr == addr {
			return i
		}
	}
	pc.t.Fatalf("no process at %s", addr)
	return -1
}

// newClient returns a client of the given servers (all when none).
func (pc *procCluster) newClient(addrs ...string) *client.Client {
	pc.t.Helper()
	if len(addrs) == 0 {
		addrs = pc.addrs()
	}
	c, err := client.New(addrs, append([]client.Option{client.WithBackoff(5*time.Millisecond, 100*time.Millisecond)}, pc.clientOpts...)...)
	if err != nil {
		pc.t.Fatal(err)
	}
	pc.t.Cleanup(func() { c.Close() })
	return c
}

// waitLeader waits until the running servers agree on a leader and returns
// its address.
func (pc *procCluster) waitLeader(c *client.Client) string {
	pc.t.Helper()
	var leader string
	eventually(pc.t, 30*time.Second, "an agreed leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		leader = ""
		for _, p := range pc.procs {
			if p.cmd == nil {
				continue
			}
			m, err := c.MembersOf(ctx, p.addr)
			if err != nil || m.LeaderAddress == "" || leader != "" && m.LeaderAddress != leader {
				return false
			}
			leader = m.LeaderAddress
		}
		return leader != ""
	})
	return leader
}

// waitConverged waits until every running server has the same digest at the
// same applied index.
func (pc *procCluster) waitConverged(c *client.Client) {
	pc.t.Helper()
	eventually(pc.t, 30*time.Second, "equal digests on all running servers", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var first string
		for _, p := range pc.procs {
			if p.cmd == nil {
				continue
			}
			d, err := c.DigestOf(ctx, p.addr)
			if err != nil {
				return false
			}
			k := fmt.Sprintf("%d/%x", d.AppliedIndex, d.Digest)
			if first == "" {
				first = k
			} else if k != first {
				return false
			}
		}
		return true
	})
}

func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
