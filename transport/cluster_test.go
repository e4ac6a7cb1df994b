package transport

import (
	"bytes"
	"crypto/tls"
	"encoding/gob"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/blobgc/blobgc/internal/testnet"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// testFSM records every distinct applied command in order. Commands are
// idempotent, so a write retried after an unknown outcome (leadership lost
// while committing) is applied once.
type testFSM struct {
	mu       sync.Mutex
	data     [][]byte
	seen     map[string]bool
	restores int
}

func (f *testFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = make(map[string]bool)
	}
	if !f.seen[string(l.Data)] {
		f.seen[string(l.Data)] = true
		f.data = append(f.data, bytes.Clone(l.Data))
	}
	return len(f.data)
}

func (f *testFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &testSnapshot{data: append([][]byte(nil), f.data...)}, nil
}

func (f *testFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var data [][]byte
	if err := gob.NewDecoder(rc).Decode(&data); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data = data
	f.seen = make(map[string]bool, len(data))
	for _, d := range data {
		f.seen[string(d)] = true
	}
	f.restores++
	return nil
}

func (f *testFSM) state() (n int, restores int, digest string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.data), f.restores, fmt.Sprintf("%x", bytes.Join(f.data, []byte{0}))
}

type testSnapshot struct{ data [][]byte }

func (s *testSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := gob.NewEncoder(sink).Encode(s.data); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *testSnapshot) Release() {}

type clusterNode struct {
	dir   string
	store *raftboltdb.BoltStore
	id    raft.ServerID
	addr  raft.ServerAddress
	raft  *raft.Raft
	fsm   *testFSM
	net   *node
	trans raft.Transport
}

type cluster struct {
	t      *testing.T
	faults *Faults
	nodes  []*clusterNode
	// trailingLogs is small so that a snapshot compacts the log and a
	// joining node must be sent the snapshot.
	trailingLogs uint64
	// pki, if set, makes every node use mTLS with certificates from it.
	pki *testPKI
	// maxMessageSize is every node's gRPC message limit (0: the default).
	maxMessageSize int
}

func testRaftConfig(id raft.ServerID, trailing uint64) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = id
	testtiming.Configure(c)
	c.SnapshotThreshold = 1 << 30 // snapshots only when the test asks
	c.SnapshotInterval = time.Hour
	c.TrailingLogs = trailing
	c.Logger = hclog.NewNullLogger()
	return c
}

// newCluster starts n raft servers on the gRPC transport (behind a shared
// Faults table) with raft-boltdb stores and bootstraps them as one cluster,
// whose first election the bootstrapping server starts at once.
func newCluster(t *testing.T, n int, pki *testPKI) *cluster {
	return newClusterWith(&cluster{t: t, faults: NewFaults(), trailingLogs: 10, pki: pki}, n)
}

func newClusterWith(c *cluster, n int) *cluster {
	t := c.t
	var servers []raft.Server
	for range n {
		cn := c.start()
		servers = append(servers, raft.Server{ID: cn.id, Address: cn.addr})
	}
	f := c.nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers})
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	testtiming.Campaign(c.nodes[0].raft)
	return c
}

// start launches one raft server that is not part of any configuration yet.
func (c *cluster) start() *clusterNode {
	lis := testnet.Listen(c.t)
	cn := &clusterNode{id: raft.ServerID(fmt.Sprintf("node%d", len(c.nodes))), dir: c.t.TempDir()}
	c.boot(cn, lis)
	c.nodes = append(c.nodes, cn)
	return cn
}

// boot starts cn's transport, stores and raft on lis, from cn's directory.
func (c *cluster) boot(cn *clusterNode, lis net.Listener) {
	t := c.t
	cfg := Config{Timeout: testtiming.RPC(), HeartbeatTimeout: testtiming.Heartbeat(), MaxMessageSize: c.maxMessageSize}
	var serverTLS *tls.Config
	if c.pki != nil {
		cfg.TLS, serverTLS = c.pki.peerTLS(t)
	}
	nd := newNodeOn(t, lis, cfg, serverTLS)
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cn.dir, "raft.db"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cn.dir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	cn.addr, cn.fsm, cn.net, cn.store = nd.addr, &testFSM{}, nd, store
	cn.trans = c.faults.Wrap(nd.trans)
	r, err := raft.NewRaft(testRaftConfig(cn.id, c.trailingLogs), cn.fsm, store, store, snaps, cn.trans)
	if err != nil {
		t.Fatal(err)
	}
	cn.raft = r
	t.Cleanup(func() {
		if err := r.Shutdown().Error(); err != nil {
			t.Errorf("shutdown %s: %v", cn.id, err)
		}
		_ = store.Close()
	})
}

// restart stops cn completely (raft, transport, server, stores) and starts
// it again on the same address and data directory.
func (c *cluster) restart(cn *clusterNode) {
	c.t.Helper()
	if err := cn.raft.Shutdown().Error(); err != nil {
		c.t.Fatal(err)
	}
	cn.net.stop()
	if err := cn.store.Close(); err != nil {
		c.t.Fatal(err)
	}
	var lis net.Listener
	waitFor(c.t, testtiming.Hang(), "the port to be free", func() bool {
		var err error
		lis, err = net.Listen("tcp", string(cn.addr))
		return err == nil
	})
	c.boot(cn, lis)
}

// leader waits until exactly one of nodes is leader and every other one of
// them follows it, and returns it.
func (c *cluster) leader(nodes []*clusterNode) *clusterNode {
	c.t.Helper()
	var found *clusterNode
	waitFor(c.t, testtiming.Hang(), "a single agreed leader", func() bool {
		found = nil
		for _, n := range nodes {
			if n.raft.State() == raft.Leader {
				if found != nil {
					return false
				}
				found = n
			}
		}
		if found == nil {
			return false
		}
		for _, n := range nodes {
			if addr, _ := n.raft.LeaderWithID(); addr != found.addr {
				return false
			}
		}
		return true
	})
	return found
}

// apply commits count commands, starting at leader. A command whose outcome
// is unknown because leadership moved is retried on the current leader among
// nodes (commands are idempotent).
func (c *cluster) apply(leader *clusterNode, nodes []*clusterNode, prefix string, count int) {
	c.t.Helper()
	futures := make([]raft.ApplyFuture, count)
	for i := range count {
		futures[i] = leader.raft.Apply([]byte(fmt.Sprintf("%s-%d", prefix, i)), testtiming.Apply())
	}
	for i, f := range futures {
		err := f.Error()
		for attempt := 0; err != nil; attempt++ {
			if attempt == 20 || (err != raft.ErrLeadershipLost && err != raft.ErrNotLeader) {
				c.t.Fatalf("apply %s-%d: %v", prefix, i, err)
			}
			leader = c.leader(nodes)
			err = leader.raft.Apply([]byte(fmt.Sprintf("%s-%d", prefix, i)), testtiming.Apply()).Error()
		}
	}
}

// converged waits until every node's FSM holds the same want commands.
func (c *cluster) converged(nodes []*clusterNode, want int) {
	c.t.Helper()
	waitFor(c.t, testtiming.Hang(), fmt.Sprintf("%d FSMs to hold the same %d commands", len(nodes), want), func() bool {
		_, _, d0 := nodes[0].fsm.state()
		for _, n := range nodes {
			got, _, d := n.fsm.state()
			if got != want || d != d0 {
				return false
			}
		}
		return true
	})
}

// onLeader runs op on the current leader until it does not fail with
// ErrNotLeader or ErrLeadershipLost (leadership may move under short timings).
func (c *cluster) onLeader(nodes []*clusterNode, what string, op func(*clusterNode) error) *clusterNode {
	c.t.Helper()
	for attempt := 0; ; attempt++ {
		l := c.leader(nodes)
		err := op(l)
		if err == nil {
			return l
		}
		if attempt == 20 || (err != raft.ErrNotLeader && err != raft.ErrLeadershipLost) {
			c.t.Fatalf("%s: %v", what, err)
		}
	}
}

// transfer moves leadership away from the current leader and returns the
// new leader. A transfer may fail and is retried: raft gives up on it when
// the target does not take over within an election timeout (a slow
// machine), or when leadership moves under it.
func (c *cluster) transfer() *clusterNode {
	c.t.Helper()
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		from := c.leader(c.nodes)
		if err = from.raft.LeadershipTransfer().Error(); err != nil {
			c.t.Logf("leadership transfer from %s: %v", from.id, err)
			continue
		}
		if to := c.leader(c.nodes); to != from {
			return to
		}
	}
	c.t.Fatalf("leadership never moved: %v", err)
	return nil
}

func others(nodes []*clusterNode, not *clusterNode) []*clusterNode {
	var out []*clusterNode
	for _, n := range nodes {
		if n != not {
			out = append(out, n)
		}
	}
	return out
}

// TestCluster_ThreeNodes runs over mTLS.
func TestCluster_ThreeNodes(t *testing.T) {
	c := newCluster(t, 3, newTestPKI(t))
	leader := c.leader(c.nodes)
	c.apply(leader, c.nodes, "a", 200)
	c.converged(c.nodes, 200)

	// Leadership transfer uses TimeoutNow.
	next := c.transfer()
	c.apply(next, c.nodes, "b", 50)
	c.converged(c.nodes, 250)

	// Partition the leader from both followers: they elect a new leader
	// while the old one steps down; after healing everything converges.
	for _, o := range others(c.nodes, next) {
		c.faults.Partition(next.addr, o.addr)
	}
	rest := others(c.nodes, next)
	newLeader := c.leader(rest)
	waitFor(t, testtiming.Hang(), "the partitioned leader to step down", func() bool {
		return next.raft.State() != raft.Leader
	})
	// A write to the old leader cannot commit while it is cut off.
	if err := next.raft.Apply([]byte("lost"), 200*time.Millisecond).Error(); err == nil {
		t.Fatal("partitioned old leader committed a write")
	}
	c.apply(newLeader, rest, "c", 50)
	c.faults.Heal()
	final := c.leader(c.nodes)
	c.apply(final, c.nodes, "d", 10)
	c.converged(c.nodes, 310)

	// A follower restarts on the same address from its stores; the others'
	// connections to it recover and it catches up.
	follower := others(c.nodes, c.leader(c.nodes))[0]
	c.restart(follower)
	c.apply(c.leader(c.nodes), c.nodes, "e", 10)
	c.converged(c.nodes, 320)

	// Elections went through pre-vote on this transport.
	var preVotes float64
	for _, n := range c.nodes {
		preVotes += counterValue(n.net.trans.metrics.served[rpcRequestPreVote])
	}
	if preVotes == 0 {
		t.Fatal("no pre-vote was served")
	}
}

func TestCluster_FiveNodesJoinBySnapshot(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.leader(c.nodes)
	c.apply(leader, c.nodes, "a", 100)
	// Snapshot and compact the log on every server, so the joining nodes
	// cannot be replicated to from the log and get the snapshot instead.
	c.converged(c.nodes, 100)
	c.apply(c.leader(c.nodes), c.nodes, "b", 20)
	c.converged(c.nodes, 120)
	for _, n := range c.nodes {
		if err := n.raft.Snapshot().Error(); err != nil {
			t.Fatal(err)
		}
	}
	members := c.nodes
	for range 2 {
		joiner := c.start()
		c.onLeader(members, "add voter", func(l *clusterNode) error {
			return l.raft.AddVoter(joiner.id, joiner.addr, 0, testtiming.Apply()).Error()
		})
		members = c.nodes
	}
	c.converged(c.nodes, 120)
	for _, joiner := range c.nodes[3:] {
		if _, restores, _ := joiner.fsm.state(); restores == 0 {
			t.Fatalf("%s caught up without InstallSnapshot", joiner.id)
		}
	}
	if got := len(leader.raft.GetConfiguration().Configuration().Servers); got != 5 {
		t.Fatalf("configuration has %d servers", got)
	}

	// Black-hole the leader: the other four elect a new one; after the heal
	// the old leader rejoins and every FSM converges.
	leader = c.leader(c.nodes)
	c.faults.BlackHole(leader.addr)
	rest := others(c.nodes, leader)
	newLeader := c.leader(rest)
	waitFor(t, testtiming.Hang(), "the black-holed leader to step down", func() bool {
		return leader.raft.State() != raft.Leader
	})
	c.apply(newLeader, rest, "c", 30)
	c.faults.Heal()
	final := c.leader(c.nodes)
	c.apply(final, c.nodes, "d", 10)
	c.converged(c.nodes, 160)
}

// TestCluster_BatchesOverTheMessageLimit: with 256 KiB entries and a 1 MiB
// message limit, raft's batches of up to 64 entries are far over the limit;
// the transport splits them and the followers keep up.
func TestCluster_BatchesOverTheMessageLimit(t *testing.T) {
	c := newClusterWith(&cluster{t: t, faults: NewFaults(), trailingLogs: 10, maxMessageSize: 1 << 20}, 3)
	leader := c.leader(c.nodes)
	// One follower falls behind, so that catching it up needs big batches.
	// It is cut off from both others: cut off only from the leader, it
	// could be caught up by the other follower once leadership moved there,
	// and then win an election the test does not wait for.
	behind := others(c.nodes, leader)[0]
	c.faults.Isolate(behind.addr)
	payload := bytes.Repeat([]byte{'x'}, 256<<10)
	for i := range 24 {
		cmd := append([]byte(fmt.Sprintf("big-%d-", i)), payload...)
		c.onLeader(others(c.nodes, behind), "apply", func(l *clusterNode) error {
			return l.raft.Apply(cmd, testtiming.Apply()).Error()
		})
	}
	c.faults.Heal()
	c.converged(c.nodes, 24)
	var splits float64
	for _, n := range c.nodes {
		splits += counterValue(n.net.trans.metrics.splits)
	}
	if splits == 0 {
		t.Fatal("no batch was over the limit: the test does not test splitting")
	}
}
