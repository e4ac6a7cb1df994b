package cluster_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testnet"
	"github.com/blobgc/blobgc/internal/testtiming"
	"github.com/hashicorp/raft"
)

// Every acknowledged write survives a restart of every server, through
// snapshots and log replay.
func TestRestartAllKeepsAcknowledgedWrites(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(i int, cfg *cluster.Config) {
		cfg.SnapshotThreshold = 16
		cfg.SnapshotInterval = 50 * time.Millisecond
		cfg.TrailingLogs = 8
	}})
	ctx := ctxT(t, testtiming.Hang())
	cl := c.Client(c.Followers()[0])
	const batches, per = 40, 25
	for b := 0; b < batches; b++ {
		try(cl.RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(b*per, per)})).must(t)
		if b%4 == 0 {
			try(cl.Pin(ctx, &pb.HashesRequest{Hashes: hashes(b*per, 1)})).must(t)
		}
	}
	try(cl.Report(ctx, &pb.ReportRequest{NodeId: "vm-a", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 7, Active: hashes(1, 5)})).must(t)
	idx, digest := c.WaitConverged()
	// Wait until a snapshot was taken on every server, so restart restores one.
	c.Eventually(testtiming.Hang(), "snapshots on every server", func() bool {
		for _, s := range c.Running() {
			m, _ := filepath.Glob(filepath.Join(c.Configs[c.Index(s)].DataDir, "snapshots", "*", "meta.json"))
			if len(m) == 0 {
				return false
			}
		}
		return true
	})
	for i := range c.Servers {
		c.Stop(i)
	}
	for i := range c.Servers {
		c.Restart(i)
	}
	c.Leader()
	// Equal digests are not enough: right after the restart every server
	// may still be at the same snapshot, short of the log's end.
	c.Eventually(testtiming.Hang(), "every server to apply what it applied before", func() bool {
		for _, s := range c.Running() {
			if i, _ := s.FSM().Digest(); i < idx {
				return false
			}
		}
		return true
	})
	idx2, digest2 := c.WaitConverged()
	if idx2 != idx || digest2 != digest {
		t.Fatalf("after restart: index %d digest %x, want %d %x", idx2, digest2, idx, digest)
	}
	for _, s := range c.Running() {
		for _, n := range []int{0, per * 4, batches*per - 1} {
			if st := state(t, c, s, hashN(n), pb.Consistency_CONSISTENCY_STALE); st == pb.BlobState_BLOB_STATE_NOT_FOUND {
				t.Errorf("%s: blob %d lost", s.ID(), n)
			}
		}
		if seq, ok := s.FSM().NodeSeq("vm-a"); !ok || seq != 7 {
			t.Errorf("%s: vm-a seq %d %v", s.ID(), seq, ok)
		}
	}
	// The restarted cluster takes writes.
	try(c.Client(c.Leader()).Pin(ctx, &pb.HashesRequest{Hashes: hashes(5000, 1)})).must(t)
}

func TestJoinAndRemoveServer(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, testtiming.Hang())
	try(c.Client(c.Leader()).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 50)})).must(t)

	// A fourth server joins through a follower.
	cfg := clustertest.TestConfig("s4", filepath.Join(t.TempDir(), "s4"))
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Join = []string{c.Followers()[0].Addr()}
	s4 := c.Add(cfg)
	c.Eventually(testtiming.Hang(), "s4 a voter in Members", func() bool {
		m, err := c.Client(s4).Members(ctx, &pb.MembersRequest{})
		if err != nil || len(m.Members) != 4 {
			return false
		}
		for _, x := range m.Members {
			if x.Id == "s4" {
				return x.Voter && x.Address == s4.Addr()
			}
		}
		return false
	})
	c.WaitConverged()
	if st := state(t, c, s4, hashN(7), pb.Consistency_CONSISTENCY_STALE); st != pb.BlobState_BLOB_STATE_ACTIVE {
		t.Fatalf("s4: blob 7 is %v", st)
	}
	// Joining again is harmless (a restarted joiner retries).
	try(c.Client(s4).AddServer(ctx, &pb.AddServerRequest{Id: "s4", Address: s4.Addr()})).must(t)

	// Remove a follower through another member.
	var victim *cluster.Server
	for _, f := range c.Followers() {
		if f != s4 {
			victim = f
			break
		}
	}
	m := try(c.Client(s4).RemoveServer(ctx, &pb.RemoveServerRequest{Id: victim.ID()})).must(t)
	if len(m.Members) != 3 {
		t.Fatalf("after remove: %d members", len(m.Members))
	}
	for _, x := range m.Members {
		if x.Id == victim.ID() {
			t.Fatalf("%s still a member", victim.ID())
		}
	}
	c.Stop(c.Index(victim))
	try(c.Client(s4).Pin(ctx, &pb.HashesRequest{Hashes: hashes(0, 1)})).must(t)
	if _, err := c.Client(s4).RemoveServer(ctx, &pb.RemoveServerRequest{Id: "nope"}); codeOf(err) != "NotFound" {
		t.Errorf("remove unknown: %v", err)
	}
	c.WaitConverged()
}

// Removing the leader: it commits its own removal and steps down to a
// follower outside the configuration, and raft stays up until the server is
// stopped, so Shutdown waits for raft's goroutines before it closes the
// stores (with raft's ShutdownOnRemove, raft stopped itself and Shutdown
// returned at once). The other two elect a leader and take writes.
func TestRemoveTheLeader(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, testtiming.Hang())
	old := c.Leader()
	try(c.Client(old).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 3)})).must(t)
	// The answer may be lost as the leader steps down.
	if _, err := c.Client(old).RemoveServer(ctx, &pb.RemoveServerRequest{Id: old.ID()}); err != nil && codeOf(err) != "Unavailable" {
		t.Fatalf("remove the leader: %v", err)
	}
	c.Eventually(testtiming.Hang(), "the removed leader steps down", func() bool { return !old.IsLeader() })
	if st := old.Raft().State(); st != raft.Follower {
		t.Fatalf("the removed leader's raft is %v, want Follower until it is stopped", st)
	}
	if err := old.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown of the removed leader: %v", err)
	}
	c.Stop(c.Index(old))
	nl := c.Leader()
	m := try(c.Client(nl).Members(ctx, &pb.MembersRequest{})).must(t)
	if len(m.Members) != 2 {
		t.Fatalf("after removing the leader: %d members", len(m.Members))
	}
	for _, x := range m.Members {
		if x.Id == old.ID() {
			t.Fatalf("%s still a member", old.ID())
		}
	}
	try(c.Client(nl).Pin(ctx, &pb.HashesRequest{Hashes: hashes(0, 1)})).must(t)
}

func TestLeadershipTransfer(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, testtiming.Hang())
	old := c.Leader()
	try(c.Client(old).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 3)})).must(t)
	before := try(c.Client(old).GetStats(ctx, &pb.GetStatsRequest{})).must(t).ClusterTimeNs

	fs := c.Followers()
	target := fs[1]
	// Asked through the other follower: forwarded to the leader.
	resp := try(c.Client(fs[0]).TransferLeadership(ctx, &pb.TransferLeadershipRequest{TargetId: target.ID()})).must(t)
	if resp.LeaderId != target.ID() || resp.LeaderAddress != target.Addr() {
		t.Fatalf("transfer answered %v, want %s", resp, target.ID())
	}
	if l := c.Leader(); l != target {
		t.Fatalf("leader is %s, want %s", l.ID(), target.ID())
	}
	try(c.Client(old).Pin(ctx, &pb.HashesRequest{Hashes: hashes(0, 1)})).must(t)
	after := try(c.Client(target).GetStats(ctx, &pb.GetStatsRequest{})).must(t).ClusterTimeNs
	if after < before {
		t.Errorf("cluster time went back across the transfer: %d -> %d", before, after)
	}
	// Without a target raft picks a follower.
	resp = try(c.Client(target).TransferLeadership(ctx, &pb.TransferLeadershipRequest{})).must(t)
	if resp.LeaderId == target.ID() || resp.LeaderId == "" {
		t.Fatalf("transfer to any answered %v", resp)
	}
	if _, err := c.Client(target).TransferLeadership(ctx, &pb.TransferLeadershipRequest{TargetId: "nope"}); codeOf(err) != "NotFound" {
		t.Errorf("transfer to unknown: %v", err)
	}
}

// Graceful shutdown of the leader hands leadership over first: the followers
// are made to wait far longer than the test waits before they would start an
// election of their own, so a new leader can only come from the hand-over.
func TestShutdownTransfersLeadership(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	old := c.Leader()
	fs := c.Followers()
	for _, f := range fs {
		rc := f.Raft().ReloadableConfig()
		rc.HeartbeatTimeout, rc.ElectionTimeout = 10*testtiming.Hang(), 10*testtiming.Hang()
		if err := f.Raft().ReloadConfig(rc); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop(c.Index(old))
	c.Eventually(testtiming.Hang(), "a new leader", func() bool {
		for _, f := range fs {
			if f.IsLeader() {
				return true
			}
		}
		return false
	})
	retryWrite(t, testtiming.Hang(), func(ctx context.Context) error {
		_, err := c.Client(fs[0]).Pin(ctx, &pb.HashesRequest{Hashes: hashes(0, 1)})
		return err
	})
}

func TestMembers(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, testtiming.Hang())
	leader := c.Leader()
	try(c.Client(leader).Pin(ctx, &pb.HashesRequest{Hashes: hashes(0, 1)})).must(t)
	c.WaitConverged()
	m := try(c.Client(c.Followers()[0]).Members(ctx, &pb.MembersRequest{})).must(t)
	if m.LeaderId != leader.ID() || m.LeaderAddress != leader.Addr() || m.Term == 0 || len(m.Members) != 3 {
		t.Fatalf("members: %v", m)
	}
	leaders := 0
	for _, x := range m.Members {
		if !x.Voter || x.CommitIndex == 0 || x.AppliedIndex == 0 {
			t.Errorf("member %v", x)
		}
		switch x.State {
		case "leader":
			leaders++
			if !x.Leader || x.Id != leader.ID() || x.LastContactMs != 0 {
				t.Errorf("leader entry %v", x)
			}
		case "follower":
			if x.Leader || x.LastContactMs < 0 || x.LastContactMs > 10_000 {
				t.Errorf("follower entry %v", x)
			}
		default:
			t.Errorf("member state %q", x.State)
		}
	}
	if leaders != 1 {
		t.Errorf("%d leaders listed", leaders)
	}
	// A stopped member is listed with an unknown state.
	f := c.Followers()[0]
	c.Kill(c.Index(f))
	m = try(c.Client(leader).Members(ctx, &pb.MembersRequest{})).must(t)
	for _, x := range m.Members {
		if x.Id == f.ID() && (x.State != "unknown" || x.LastContactMs != -1) {
			t.Errorf("stopped member %v", x)
		}
	}
}

func TestGCConfigProposedByFirstLeader(t *testing.T) {
	gc := clustertest.TestConfig("x", "").GC
	if gc != nil {
		t.Fatal("test config sets GC")
	}
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(i int, cfg *cluster.Config) {
		g := defaultGC()
		g.GracePeriod = 42 * time.Second
		g.MinNodesReporting = 2
		cfg.GC = &g
	}})
	ctx := ctxT(t, testtiming.Hang())
	c.Eventually(testtiming.Hang(), "config applied", func() bool {
		cfg, err := c.Client(c.Followers()[0]).GetConfig(ctx, &pb.GetConfigRequest{})
		return err == nil && cfg.GracePeriodNs == int64(42*time.Second) && cfg.MinNodesReporting == 2
	})
	// An operator's later change is not overwritten by a new leader.
	grace := int64(time.Minute)
	try(c.Client(c.Leader()).SetConfig(ctx, &pb.SetConfigRequest{GracePeriodNs: &grace})).must(t)
	c.Kill(c.Index(c.Leader()))
	l := c.Leader()
	c.WaitConverged()
	if cfg := try(c.Client(l).GetConfig(ctx, &pb.GetConfigRequest{})).must(t); cfg.GracePeriodNs != grace {
		t.Errorf("grace %v after leader change, want %v", time.Duration(cfg.GracePeriodNs), time.Minute)
	}
}

func TestParsePeers(t *testing.T) {
	ps, err := cluster.ParsePeers(" a=127.0.0.1:1, b=h:2 ,c=[::1]:3")
	if err != nil {
		t.Fatal(err)
	}
	want := []cluster.Peer{{"a", "127.0.0.1:1"}, {"b", "h:2"}, {"c", "[::1]:3"}}
	if fmt.Sprint(ps) != fmt.Sprint(want) {
		t.Fatalf("got %v", ps)
	}
	if ps, err := cluster.ParsePeers(""); err != nil || ps != nil {
		t.Fatalf("empty: %v %v", ps, err)
	}
	for _, bad := range []string{"a", "a=", "=h:1", "a=h", "a=h:1,a=h:2", "a=h:1,b=h:1", "a=h:1,,b=h:2"} {
		if _, err := cluster.ParsePeers(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	bad := map[string]cluster.Config{
		"no id":                              {DataDir: dir, ListenAddr: "127.0.0.1:0"},
		"no data dir":                        {ID: "a", ListenAddr: "127.0.0.1:0"},
		"no listen":                          {ID: "a", DataDir: dir},
		"peers and join":                     {ID: "a", DataDir: dir, ListenAddr: "127.0.0.1:0", Peers: []cluster.Peer{{"a", "127.0.0.1:1"}}, Join: []string{"x:1"}},
		"self not peer":                      {ID: "a", DataDir: dir, ListenAddr: "127.0.0.1:0", Peers: []cluster.Peer{{"b", "127.0.0.1:1"}}},
		"partial tls":                        {ID: "a", DataDir: dir, ListenAddr: "127.0.0.1:0", Peers: []cluster.Peer{{"a", "127.0.0.1:1"}}, TLS: cluster.TLSFiles{CertFile: "x"}},
		"peer address differs from listener": {ID: "a", DataDir: dir, ListenAddr: "127.0.0.1:0", Peers: []cluster.Peer{{"a", "127.0.0.1:1"}}},
	}
	for name, cfg := range bad {
		if s, err := cluster.New(cfg); err == nil {
			s.Close()
			t.Errorf("%s: no error", name)
		}
	}
	// No peers, no join and no state: Start refuses.
	s, err := cluster.New(cluster.Config{ID: "a", DataDir: dir, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(); err == nil {
		t.Error("Start without peers, join or state succeeded")
	}
}

// A join that no member accepts fails after JoinTimeout instead of hanging.
func TestJoinTimesOut(t *testing.T) {
	dead := testnet.Addr(t)
	cfg := clustertest.TestConfig("j", t.TempDir())
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Join = []string{dead}
	cfg.JoinTimeout = 300 * time.Millisecond
	s, err := cluster.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), "join through "+dead) {
		t.Fatalf("Start: %v", err)
	}
}
