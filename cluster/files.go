package cluster

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// The data directory holds the whole replicated state, so only the server's
// own user may read it: the directory is 0700 (also when it already
// existed), raft.db is 0600 (raft-boltdb creates it so), and snapshots are
// 0600 files in 0700 directories. raft's file snapshot store creates them
// 0644 in 0755 directories, hence privateSnapshots.
const (
	privateDir  fs.FileMode = 0o700
	privateFile fs.FileMode = 0o600
)

// makePrivateDir creates dir, or restricts an existing one, to its owner.
func makePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, privateDir); err != nil {
		return err
	}
	return os.Chmod(dir, privateDir)
}

// restrictTree makes every directory under root 0700 and every file 0600.
func restrictTree(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := privateFile
		if d.IsDir() {
			mode = privateDir
		}
		return os.Chmod(path, mode)
	})
}

// privateSnapshots is raft's file snapshot store (DataDir/snapshots, retain
// kept) with owner-only permissions on everything it writes.
type privateSnapshots struct {
	*raft.FileSnapshotStore
	dir string
}

func newPrivateSnapshots(dataDir string, retain int, logger hclog.Logger) (*privateSnapshots, error) {
	store, err := raft.NewFileSnapshotStoreWithLogger(dataDir, retain, logger)
	if err != nil {
		return nil, err
	}
	p := &privateSnapshots{FileSnapshotStore: store, dir: filepath.Join(dataDir, "snapshots")}
	// Snapshots written before permissions were restricted are fixed too.
	if err := restrictTree(p.dir); err != nil {
		return nil, fmt.Errorf("restrict snapshot permissions: %w", err)
	}
	return p, nil
}

// Create restricts the new snapshot's directory and the files in it (its
// metadata and state file exist once Create returns; Close rewrites them in
// place and renames the directory, which keeps their modes).
func (p *privateSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := p.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	if err := restrictTree(filepath.Join(p.dir, sink.ID()+".tmp")); err != nil {
		_ = sink.Cancel()
		return nil, fmt.Errorf("restrict snapshot permissions: %w", err)
	}
	return sink, nil
}
