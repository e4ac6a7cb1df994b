package cluster_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

// A cluster on the WAL log store keeps every acknowledged write across a
// crash of every server, with snapshots and log truncation in between, and
// its log is in DataDir/wal, not in raft.db.
func TestWALLogStoreKeepsWritesAcrossCrashes(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(i int, cfg *cluster.Config) {
		cfg.LogStore = cluster.LogStoreWAL
		cfg.SnapshotThreshold = 32
		cfg.SnapshotInterval = 50 * time.Millisecond
		cfg.TrailingLogs = 16
	}})
	ctx := ctxT(t, 2*time.Minute)
	cl := c.Client(c.Leader())
	const batches, per = 60, 10
	for b := 0; b < batches; b++ {
		try(cl.RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(b*per, per)})).must(t)
	}
	idx, digest := c.WaitConverged()
	for i := range c.Servers {
		if _, err := os.Stat(filepath.Join(c.Configs[i].DataDir, "wal", "wal-meta.db")); err != nil {
			t.Fatalf("server %d has no WAL: %v", i, err)
		}
		c.Kill(i)
	}
	for i := range c.Servers {
		c.Restart(i)
	}
	// Restarted servers restore their snapshot and apply the rest of the
	// log once a new leader has committed an entry of its term.
	c.Leader()
	c.Eventually(time.Minute, "every server to apply its whole log again", func() bool {
		for _, s := range c.Running() {
			if s.FSM().AppliedIndex() < idx {
				return false
			}
		}
		return true
	})
	if idx2, digest2 := c.WaitConverged(); idx2 == idx && digest2 != digest {
		t.Fatalf("after crash and restart: digest %x at index %d, want %x", digest2, idx2, digest)
	}
	for _, s := range c.Running() {
		for _, n := range []int{0, batches*per/2 + 3, batches*per - 1} {
			if st := state(t, c, s, hashN(n), pb.Consistency_CONSISTENCY_STALE); st == pb.BlobState_BLOB_STATE_NOT_FOUND {
				t.Errorf("%s: blob %d lost", s.ID(), n)
			}
		}
	}
}

// A data dir keeps the log store it was created with: opening it with the
// other one is refused with what to do, in both directions.
func TestLogStoreOfADataDirIsKept(t *testing.T) {
	for _, tc := range []struct{ created, asked string }{
		{cluster.LogStoreBoltDB, cluster.LogStoreWAL},
		{cluster.LogStoreWAL, cluster.LogStoreBoltDB},
	} {
		t.Run(tc.created+"_then_"+tc.asked, func(t *testing.T) {
			c := clustertest.Start(t, clustertest.Options{N: 1, Configure: func(i int, cfg *cluster.Config) {
				cfg.LogStore = tc.created
			}})
			ctx := ctxT(t, time.Minute)
			try(c.Client(c.Leader()).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 3)})).must(t)
			c.Kill(0)
			cfg := c.Configs[0]
			cfg.Listener, cfg.ListenAddr, cfg.AdvertiseAddr, cfg.LogStore = nil, "127.0.0.1:0", cfg.Peers[0].Address, tc.asked
			s, err := cluster.New(cfg)
			if err == nil {
				s.Close()
				t.Fatalf("a %s data dir opened with log store %s", tc.created, tc.asked)
			}
			if msg := err.Error(); !strings.Contains(msg, "holds a "+tc.created+" raft log") || !strings.Contains(msg, "--log-store "+tc.created) {
				t.Fatalf("error does not say what is on disk and what to do: %v", err)
			}
			c.Restart(0) // and the store it was made with still opens it
			if st := state(t, c, c.Leader(), hashN(1), pb.Consistency_CONSISTENCY_LINEARIZABLE); st == pb.BlobState_BLOB_STATE_NOT_FOUND {
				t.Fatal("blob lost")
			}
		})
	}
}

// Without a log store asked for, a server keeps the one its data dir holds
// (an existing boltdb server stays boltdb) and a new server gets
// DefaultLogStore.
func TestLogStoreDefaultsToTheOneOnDisk(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 2, Configure: func(i int, cfg *cluster.Config) {
		cfg.LogStore = []string{cluster.LogStoreBoltDB, ""}[i]
	}})
	ctx := ctxT(t, time.Minute)
	try(c.Client(c.Leader()).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 3)})).must(t)
	c.WaitConverged()
	walOf := func(i int) bool {
		_, err := os.Stat(filepath.Join(c.Configs[i].DataDir, "wal", "wal-meta.db"))
		return err == nil
	}
	if walOf(0) || !walOf(1) || cluster.DefaultLogStore != cluster.LogStoreWAL {
		t.Fatalf("wal in data dirs: boltdb server %v, new server %v; want only the new one", walOf(0), walOf(1))
	}
	c.Kill(0)
	c.Configs[0].LogStore = ""
	c.Restart(0)
	if walOf(0) {
		t.Fatal("the boltdb server was moved to a new, empty WAL")
	}
	c.WaitConverged()
	if st := state(t, c, c.Servers[0], hashN(1), pb.Consistency_CONSISTENCY_STALE); st == pb.BlobState_BLOB_STATE_NOT_FOUND {
		t.Fatal("the boltdb server lost its blob")
	}
}
