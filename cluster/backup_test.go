package cluster_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

// Scheduled backups: each new applied state is written, the newest
// BackupKeep files are kept, and the newest holds exactly the server's state.
func TestScheduledBackups(t *testing.T) {
	dir := t.TempDir()
	c := clustertest.Start(t, clustertest.Options{N: 1, Configure: func(i int, cfg *cluster.Config) {
		cfg.BackupDir = dir
		cfg.BackupInterval = 20 * time.Millisecond
		cfg.BackupKeep = 2
	}})
	s := c.Servers[0]
	files := func() []string {
		fs, _ := filepath.Glob(filepath.Join(dir, "blobgc-s1-*.snap"))
		slices.Sort(fs)
		return fs
	}
	for i := 0; i < 4; i++ {
		retryWrite(t, time.Minute, func(ctx context.Context) error {
			_, err := c.Client(s).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(i*10, 10)})
			return err
		})
		idx, _ := s.FSM().Digest()
		c.Eventually(time.Minute, "a backup of the new state", func() bool {
			fs := files()
			if len(fs) == 0 {
				return false
			}
			h, _, err := cluster.ReadBackup(fs[len(fs)-1])
			return err == nil && h.Index == idx
		})
	}
	// The newest backup is in place before the oldest is pruned.
	var fs []string
	c.Eventually(time.Minute, "the newest 2 backups kept", func() bool {
		fs = files()
		return len(fs) == 2
	}, func() string { return fmt.Sprint(fs) })
	_, f, err := cluster.ReadBackup(fs[1])
	if err != nil {
		t.Fatal(err)
	}
	gotIdx, got := f.Digest()
	wantIdx, want := s.FSM().Digest()
	if gotIdx != wantIdx || got != want {
		t.Fatalf("newest backup: index %d digest %x; server: index %d digest %x", gotIdx, got, wantIdx, want)
	}
}
