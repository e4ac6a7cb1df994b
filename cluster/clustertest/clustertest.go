// Package clustertest starts in-process blobgc clusters on loopback for
// tests: N servers with the raft timings of package testtiming, data in
// t.TempDir(), a shared transport.Faults table, API clients, and helpers
// that wait on conditions (for testtiming.Hang, so that only a hang fails
// them on a loaded machine).
package clustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/internal/testnet"
	"github.com/blobgc/blobgc/internal/testtiming"
	"github.com/blobgc/blobgc/transport"
)

// Options configure a test cluster.
type Options struct {
	N int // servers (default 3)
	// Configure, if set, adjusts each server's config before it is created.
	Configure func(i int, c *cluster.Config)
}

// Cluster is a set of in-process servers.
type Cluster struct {
	t       testing.TB
	Faults  *transport.Faults
	Servers []*cluster.Server // nil while a server is stopped
	Configs []cluster.Config

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// Logger returns a logger for test servers: silent unless BLOBGC_TEST_LOG
// names a level (e.g. "debug").
func Logger(name string) hclog.Logger {
	lvl := os.Getenv("BLOBGC_TEST_LOG")
	if lvl == "" {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.LevelFromString(lvl), Output: os.Stderr})
}

// EnvLogStore names the environment variable that picks the raft log store
// of test servers (boltdb or wal; empty: the default), so that every suite
// can run on either.
const EnvLogStore = "BLOBGC_TEST_LOG_STORE"

// TestConfig returns a server config with the test raft timings for
// loopback tests. The caller sets the listener or address and peers.
func TestConfig(id, dir string) cluster.Config {
	return cluster.Config{
		ID:                 id,
		LogStore:           os.Getenv(EnvLogStore),
		DataDir:            dir,
		HeartbeatTimeout:   testtiming.Heartbeat(),
		ElectionTimeout:    testtiming.Election(),
		LeaderLeaseTimeout: testtiming.LeaderLease(),
		CommitTimeout:      testtiming.Commit(),
		ApplyTimeout:       testtiming.Apply(),
		CycleInterval:      -1,
		Logger:             Logger(id),
	}
}

// Start starts and bootstraps a cluster of opts.N servers, has one of them,
// picked at random, campaign at once (testtiming.Campaign) and waits for a
// leader. Servers are shut down when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.N == 0 {
		opts.N = 3
	}
	c := &Cluster{t: t, Faults: transport.NewFaults(), conns: map[string]*grpc.ClientConn{}}
	lis := make([]net.Listener, opts.N)
	var peers []cluster.Peer
	for i := range lis {
		l := testnet.Listen(t)
		lis[i] = l
		peers = append(peers, cluster.Peer{ID: fmt.Sprintf("s%d", i+1), Address: l.Addr().String()})
	}
	base := t.TempDir()
	for i := range lis {
		cfg := TestConfig(peers[i].ID, filepath.Join(base, peers[i].ID))
		cfg.Listener = lis[i]
		cfg.ListenAddr = peers[i].Address
		cfg.Peers = peers
		cfg.Faults = c.Faults
		if opts.Configure != nil {
			opts.Configure(i, &cfg)
		}
		c.Configs = append(c.Configs, cfg)
		c.Servers = append(c.Servers, nil)
	}
	t.Cleanup(c.Close)
	for i := range c.Configs {
		c.startServer(i)
	}
	testtiming.Campaign(c.Servers[rand.IntN(len(c.Servers))].Raft())
	c.Leader()
	return c
}

func (c *Cluster) startServer(i int) {
	c.t.Helper()
	s, err := cluster.New(c.Configs[i])
	if err != nil {
		c.t.Fatalf("server %d: %v", i, err)
	}
	if err := s.Start(); err != nil {
		s.Close()
		c.t.Fatalf("server %d: start: %v", i, err)
	}
	c.Servers[i] = s
}

// Add creates and starts one more server from cfg (for joins); it is shut
// down with the cluster.
func (c *Cluster) Add(cfg cluster.Config) *cluster.Server {
	c.t.Helper()
	if cfg.Faults == nil {
		cfg.Faults = c.Faults
	}
	c.Configs = append(c.Configs, cfg)
	c.Servers = append(c.Servers, nil)
	c.startServer(len(c.Servers) - 1)
	return c.Servers[len(c.Servers)-1]
}

// Close stops every running server.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for i, s := range c.Servers {
		if s == nil {
			continue
		}
		wg.Add(1)
		go func(s *cluster.Server) {
			defer wg.Done()
			s.Close() // no leadership hand-over: the whole cluster goes
		}(s)
		c.Servers[i] = nil
	}
	wg.Wait()
	c.mu.Lock()
	for a, cc := range c.conns {
		cc.Close()
		delete(c.conns, a)
	}
	c.mu.Unlock()
}

// Stop shuts server i down gracefully (leadership is handed over).
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testtiming.Hang())
	defer cancel()
	if err := c.Servers[i].Shutdown(ctx); err != nil {
		c.t.Logf("shutdown %d: %v", i, err)
	}
	c.Servers[i] = nil
}

// Kill stops server i at once, as a crash would.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	if err := c.Servers[i].Close(); err != nil {
		c.t.Logf("close %d: %v", i, err)
	}
	c.Servers[i] = nil
}

// Restart starts a stopped server again from its data directory, on the same
// address. When that makes a majority of the servers run and none of them
// leads (the whole cluster is being restarted, or the leader was stopped),
// it campaigns at once (testtiming.Campaign); otherwise it just rejoins.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	cfg := c.Configs[i]
	cfg.ListenAddr = c.Configs[i].ListenAddr
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = cfg.Listener.Addr().String()
	}
	cfg.Listener = nil
	var err error
	deadline := time.Now().Add(testtiming.Hang())
	for {
		var l net.Listener
		if l, err = net.Listen("tcp", cfg.ListenAddr); err == nil {
			cfg.Listener = l
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("restart %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Configs[i] = cfg
	c.startServer(i)
	running := c.Running()
	if 2*len(running) <= len(c.Servers) {
		return // no quorum yet: the next server restarted campaigns
	}
	for _, s := range running {
		if s.IsLeader() {
			return
		}
	}
	testtiming.Campaign(c.Servers[i].Raft())
}

// Index returns the position of s in Servers.
func (c *Cluster) Index(s *cluster.Server) int {
	for i, x := range c.Servers {
		if x == s {
			return i
		}
	}
	return -1
}

// Running returns the servers that are not stopped.
func (c *Cluster) Running() []*cluster.Server {
	var out []*cluster.Server
	for _, s := range c.Servers {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// Leader waits until exactly one running server leads and every running
// server that is a voter agrees on it, and returns it.
func (c *Cluster) Leader() *cluster.Server {
	c.t.Helper()
	var leader *cluster.Server
	c.Eventually(testtiming.Hang(), "a leader agreed by all running servers", func() bool {
		leader = nil
		for _, s := range c.Running() {
			if s.IsLeader() {
				if leader != nil {
					return false
				}
				leader = s
			}
		}
		if leader == nil {
			return false
		}
		for _, s := range c.Running() {
			if _, addr := s.Leader(); addr != leader.Addr() {
				return false
			}
		}
		return true
	})
	return leader
}

// Followers returns the running servers that do not lead.
func (c *Cluster) Followers() []*cluster.Server {
	var out []*cluster.Server
	for _, s := range c.Running() {
		if !s.IsLeader() {
			out = append(out, s)
		}
	}
	return out
}

// Client returns an API client connected to s that retries calls failing
// with Unavailable (a leader change under load) for up to 15 s (scaled), as
// the Go client does; every blobgc command is idempotent or deduplicated.
func (c *Cluster) Client(s *cluster.Server) pb.BlobGCClient {
	return pb.NewBlobGCClient(c.conn(s.Addr(), true))
}

// RawClient returns an API client connected to s that never retries.
func (c *Cluster) RawClient(s *cluster.Server) pb.BlobGCClient {
	return pb.NewBlobGCClient(c.conn(s.Addr(), false))
}

// Conn returns a cached client connection to addr (no retries).
func (c *Cluster) Conn(addr string) *grpc.ClientConn { return c.conn(addr, false) }

func (c *Cluster) conn(addr string, retry bool) *grpc.ClientConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := fmt.Sprintf("%s/%v", addr, retry)
	if cc, ok := c.conns[key]; ok {
		return cc
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20))}
	if retry {
		opts = append(opts, grpc.WithUnaryInterceptor(retryUnavailable))
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.conns[key] = cc
	return cc
}

func retryUnavailable(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	deadline := time.Now().Add(testtiming.Scaled(15 * time.Second))
	for {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Eventually polls cond every 10 ms until it holds, failing the test after
// timeout.
func (c *Cluster) Eventually(timeout time.Duration, what string, cond func() bool, detail ...func() string) {
	c.t.Helper()
	Eventually(c.t, timeout, what, cond, detail...)
}

// Eventually polls cond every 10 ms until it holds, failing t after timeout;
// detail, if given, says what was last seen.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("timed out after %v waiting for %s", timeout, what)
			for _, d := range detail {
				msg += ": " + d()
			}
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitConverged waits until every running server has applied the same index
// with the same state digest, and returns the digest.
func (c *Cluster) WaitConverged() (uint64, [32]byte) {
	c.t.Helper()
	var idx uint64
	var d [32]byte
	var seen []string // the last look, for the failure message
	c.Eventually(testtiming.Hang(), "equal digests on all running servers", func() bool {
		seen = seen[:0]
		equal := true
		for n, s := range c.Running() {
			i, dd := s.FSM().Digest()
			seen = append(seen, fmt.Sprintf("%s: index %d raft applied %d digest %x", s.ID(), i, s.Raft().AppliedIndex(), dd[:6]))
			if n == 0 {
				idx, d = i, dd
			} else if i != idx || dd != d {
				equal = false
			}
		}
		return equal
	}, func() string { return strings.Join(seen, "; ") })
	return idx, d
}

// UnansweredFutureWaiter names, for goleak, the goroutine that waits on a
// raft future: raft never answers a future still queued in one of its
// buffered channels (apply, verify, leadership transfer) when it shuts down,
// so that waiter stays blocked. Every other goroutine of a stopped server
// must be gone.
const UnansweredFutureWaiter = "github.com/blobgc/blobgc/cluster.waitFutureUntil.func1"
