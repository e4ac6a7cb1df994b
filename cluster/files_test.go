package cluster_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

// The data directory, raft.db and every snapshot file are for the server's
// own user only, also when the directory existed before with wider modes.
func TestDataFilesAreOwnerOnly(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 1, Configure: func(_ int, cfg *cluster.Config) {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}})
	s := c.Leader()
	try(c.Client(s).RegisterBlobs(ctxT(t, time.Minute), &pb.HashesRequest{Hashes: hashes(0, 10)})).must(t)
	if err := s.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	dir := c.Configs[0].DataDir
	var snaps int
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", path, got, want)
		}
		if d.Name() == "state.bin" {
			snaps++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if snaps == 0 {
		t.Fatal("no snapshot written")
	}
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); err != nil {
		t.Fatal(err)
	}
}
