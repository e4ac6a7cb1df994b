package fsm

import (
	"io"
	"testing"
	"time"

	"github.com/blobgc/blobgc/fsm/fsmpb"
	"github.com/blobgc/blobgc/internal/testtiming"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

type raftNode struct {
	fsm   *FSM
	raft  *raft.Raft
	trans *raft.InmemTransport
}

func newRaftNode(t *testing.T, id string) *raftNode {
	t.Helper()
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(id)
	testtiming.Configure(cfg)
	cfg.TrailingLogs = 4
	cfg.SnapshotThreshold = 1 << 30 // snapshots are taken by the test
	cfg.SnapshotInterval = time.Hour
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off})
	_, trans := raft.NewInmemTransport(raft.ServerAddress(id))
	store := raft.NewInmemStore()
	n := &raftNode{fsm: New(), trans: trans}
	r, err := raft.NewRaft(cfg, n.fsm, store, store, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatal(err)
	}
	n.raft = r
	t.Cleanup(func() { _ = r.Shutdown().Error() })
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testtiming.Hang())
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The FSM under real hashicorp/raft: three servers apply the same log to
// the same digest; a fourth server that joins after the log was compacted
// is brought up by InstallSnapshot (Persist on the leader, Restore on the
// follower) and reaches the same digest.
func TestRaftReplicationAndInstallSnapshot(t *testing.T) {
	nodes := []*raftNode{newRaftNode(t, "s1"), newRaftNode(t, "s2"), newRaftNode(t, "s3")}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.trans.Connect(b.trans.LocalAddr(), b.trans)
			}
		}
	}
	var servers []raft.Server
	for _, n := range nodes {
		servers = append(servers, raft.Server{ID: raft.ServerID(n.trans.LocalAddr()), Address: n.trans.LocalAddr()})
	}
	if err := nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	testtiming.Campaign(nodes[0].raft)
	leaderOf := func(ns []*raftNode) *raftNode {
		t.Helper()
		var leader *raftNode
		waitFor(t, "a leader", func() bool {
			for _, n := range ns {
				if n.raft.State() == raft.Leader {
					leader = n
					return true
				}
			}
			return false
		})
		return leader
	}
	// onLeader runs op on the current leader, again on the next one while
	// leadership moves under it (commands here are idempotent, and a cycle
	// or claim run twice is checked by the counts, not by its result).
	onLeader := func(ns []*raftNode, what string, op func(*raftNode) error) {
		t.Helper()
		for attempt := 0; ; attempt++ {
			err := op(leaderOf(ns))
			if err == nil {
				return
			}
			if attempt == 20 || (err != raft.ErrNotLeader && err != raft.ErrLeadershipLost) {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}
	now := int64(0)
	var idx uint64 // the index of the last command applied
	apply := func(op any) {
		t.Helper()
		now += int64(time.Second)
		b, err := Encode(NewCommand(now, 0, op))
		if err != nil {
			t.Fatal(err)
		}
		onLeader(nodes, "apply", func(l *raftNode) error {
			fut := l.raft.Apply(b, testtiming.Apply())
			if err := fut.Error(); err != nil {
				return err
			}
			if r := fut.Response().(*Result); r.Err != nil {
				t.Fatalf("apply %T: %v", op, r.Err)
			}
			idx = fut.Index()
			return nil
		})
	}
	g := int64(0)
	apply(&fsmpb.SetConfig{GracePeriodNs: &g})
	var hs []Hash
	for i := uint64(0); i < 300; i++ {
		hs = append(hs, hn(i))
	}
	apply(&fsmpb.RegisterBlobs{Hashes: PackHashes(hs)})
	apply(&fsmpb.Report{NodeId: "vm1", Kind: fsmpb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: PackHashes(hs[:200])})
	// sameDigest: every server has applied idx, and all hold the same state.
	sameDigest := func(ns []*raftNode) bool {
		var first [32]byte
		for i, n := range ns {
			ai, d := n.fsm.Digest()
			if ai < idx {
				return false
			}
			if i == 0 {
				first = d
			} else if d != first {
				t.Fatalf("server %d digest differs at index %d", i, ai)
			}
		}
		return true
	}
	// converge waits for sameDigest and returns the state's counts.
	converge := func(ns []*raftNode, what string) Counts {
		t.Helper()
		waitFor(t, what, func() bool { return sameDigest(ns) })
		return ns[0].fsm.Counts()
	}
	apply(&fsmpb.RunCycle{})
	if c := converge(nodes, "all servers to apply the cycle"); c.Marked != 100 {
		t.Fatalf("after the cycle: %+v, want 100 marked", c)
	}
	apply(&fsmpb.Claim{Hashes: PackHashes(hs[200:250])})
	if c := converge(nodes, "all servers to apply the claim"); c.Deleting != 50 {
		t.Fatalf("after the claim: %+v, want 50 deleting", c)
	}
	apply(&fsmpb.ConfirmCollected{Hashes: PackHashes(hs[200:220])})
	converge(nodes, "all servers to apply")

	// Compact the log on every server (leadership may move), then add a
	// fourth server: whoever leads must send it a snapshot.
	snapshotAll := func() {
		t.Helper()
		for _, n := range nodes {
			if err := n.raft.Snapshot().Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	snapshotAll()
	for i := 0; i < 10; i++ {
		apply(&fsmpb.Report{NodeId: "vm1", Kind: fsmpb.ReportKind_REPORT_KIND_DELTA, Seq: uint64(2 + i), Active: PackHashes(hs[250+i : 251+i])})
	}
	converge(nodes, "all servers to apply the reports")
	snapshotAll()
	s4 := newRaftNode(t, "s4")
	for _, n := range nodes {
		n.trans.Connect(s4.trans.LocalAddr(), s4.trans)
		s4.trans.Connect(n.trans.LocalAddr(), n.trans)
	}
	onLeader(nodes, "add voter", func(l *raftNode) error {
		return l.raft.AddVoter("s4", s4.trans.LocalAddr(), 0, testtiming.Apply()).Error()
	})
	all := append(nodes, s4)
	nodes = all // the next apply may go to whichever of the four leads
	apply(&fsmpb.RunCycle{})
	converge(all, "the new server to catch up")
	if si := s4.raft.Stats()["last_snapshot_index"]; si == "0" {
		t.Fatal("the new server was not brought up by a snapshot")
	}
	if c := s4.fsm.Counts(); c.Collected != 20 || c.Deleting != 30 {
		t.Fatalf("restored counts %+v", c)
	}
}
