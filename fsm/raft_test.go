package fsm

import (
	"io"
	"testing"
	"time"

	"github.com/blobgc/blobgc/fsm/fsmpb"
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
	cfg.HeartbeatTimeout = 100 * time.Millisecond
	cfg.ElectionTimeout = 100 * time.Millisecond
	cfg.LeaderLeaseTimeout = 100 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
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
	deadline := time.Now().Add(20 * time.Second)
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
	var leader *raftNode
	waitFor(t, "a leader", func() bool {
		for _, n := range nodes {
			if n.raft.State() == raft.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	now := int64(0)
	apply := func(op any) *Result {
		t.Helper()
		now += int64(time.Second)
		b, err := Encode(NewCommand(now, 0, op))
		if err != nil {
			t.Fatal(err)
		}
		fut := leader.raft.Apply(b, 5*time.Second)
		if err := fut.Error(); err != nil {
			t.Fatal(err)
		}
		return fut.Response().(*Result)
	}
	g := int64(0)
	apply(&fsmpb.SetConfig{GracePeriodNs: &g})
	var hs []Hash
	for i := uint64(0); i < 300; i++ {
		hs = append(hs, hn(i))
	}
	apply(&fsmpb.RegisterBlobs{Hashes: PackHashes(hs)})
	apply(&fsmpb.Report{NodeId: "vm1", Kind: fsmpb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: PackHashes(hs[:200])})
	r := apply(&fsmpb.RunCycle{})
	if len(r.Cycle.NewlyMarked) != 100 {
		t.Fatalf("%+v", r.Cycle)
	}
	if got := apply(&fsmpb.Claim{Hashes: PackHashes(hs[200:250])}).Claimed; len(got) != 50 {
		t.Fatalf("claimed %d", len(got))
	}
	apply(&fsmpb.ConfirmCollected{Hashes: PackHashes(hs[200:220])})
	idx := leader.raft.AppliedIndex()
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
	waitFor(t, "all servers to apply", func() bool { return sameDigest(nodes) })

	// Compact the log, then add a fourth server.
	if err := leader.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		apply(&fsmpb.Report{NodeId: "vm1", Kind: fsmpb.ReportKind_REPORT_KIND_DELTA, Seq: uint64(2 + i), Active: PackHashes(hs[250+i : 251+i])})
	}
	if err := leader.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	s4 := newRaftNode(t, "s4")
	for _, n := range nodes {
		n.trans.Connect(s4.trans.LocalAddr(), s4.trans)
		s4.trans.Connect(n.trans.LocalAddr(), n.trans)
	}
	if err := leader.raft.AddVoter("s4", s4.trans.LocalAddr(), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	apply(&fsmpb.RunCycle{})
	idx = leader.raft.AppliedIndex()
	all := append(nodes, s4)
	waitFor(t, "the new server to catch up", func() bool { return sameDigest(all) })
	if si := s4.raft.Stats()["last_snapshot_index"]; si == "0" {
		t.Fatal("the new server was not brought up by a snapshot")
	}
	if c := s4.fsm.Counts(); c.Collected != 20 || c.Deleting != 30 {
		t.Fatalf("restored counts %+v", c)
	}
}
