package cluster

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	walfs "github.com/hashicorp/raft-wal/fs"
	walmetrics "github.com/hashicorp/raft-wal/metrics"
	"github.com/hashicorp/raft-wal/segment"
	waltypes "github.com/hashicorp/raft-wal/types"
	"go.etcd.io/bbolt"
)

// The raft log stores a server can use. raft.db (raft-boltdb) is always the
// stable store (current term, vote); the log lives either in a write-ahead
// log of segment files under DataDir/wal (LogStoreWAL, hashicorp/raft-wal,
// as Consul uses it), which appends a group of entries with one write and
// one fsync, or in raft.db too (LogStoreBoltDB), a B-tree update and two
// fsyncs per group.
//
// DefaultLogStore is the store of a new server: wal, since it passes the
// same crash, torn-write, chaos and container suites as boltdb and writes
// 1.4-2x faster (README, "The raft log store"). A server that already has
// a log keeps its store.
const (
	LogStoreBoltDB  = "boltdb"
	LogStoreWAL     = "wal"
	DefaultLogStore = LogStoreWAL
)

// walDir is where the WAL log store keeps its segments and metadata, and
// walMeta the file that exists once a WAL has been created there.
const (
	walDir  = "wal"
	walMeta = "wal-meta.db"
)

// stores are a server's raft stores and how to close them.
type stores struct {
	kind   string
	bolt   *raftboltdb.BoltStore // stable store, and log store for boltdb
	log    raft.LogStore         // bolt or the WAL
	closer func() error
}

// openStores opens the stable store and the log store kind in dataDir; an
// empty kind means the store on disk, or DefaultLogStore for a new server.
// A data dir keeps the log store it was created with: asking for the other
// one is refused with what to do, never silently ignored, since raft would
// otherwise start from an empty log.
func openStores(dataDir, kind string, walSegmentSize int, logger hclog.Logger) (*stores, error) {
	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(dataDir, "raft.db"),
		// The freelist is rebuilt on open instead of written on every commit:
		// fewer pages per fsync on the write path.
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType},
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: open raft.db: %w", err)
	}
	onDisk, err := logStoreOnDisk(dataDir, bolt)
	if err != nil {
		bolt.Close()
		return nil, err
	}
	if kind == "" {
		kind = cmp.Or(onDisk, DefaultLogStore)
	}
	st := &stores{kind: kind, bolt: bolt, log: bolt, closer: bolt.Close}
	if onDisk != "" && onDisk != kind {
		bolt.Close()
		return nil, fmt.Errorf("cluster: %s holds a %s raft log but --log-store is %s: start with --log-store %s, "+
			"or move this server to %s by removing it from the cluster, emptying its data dir and joining again",
			dataDir, onDisk, kind, onDisk, kind)
	}
	if kind == LogStoreWAL {
		dir := filepath.Join(dataDir, walDir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			bolt.Close()
			return nil, fmt.Errorf("cluster: %w", err)
		}
		w, err := wal.Open(dir, wal.WithLogger(logger.Named("wal")),
			// Into the go-metrics global, like raft's and raft-boltdb's (raftSink).
			wal.WithMetricsCollector(walmetrics.NewGoMetricsCollector([]string{"raft", "wal"}, nil, nil)),
			wal.WithSegmentFiler(segment.NewFiler(dir, ownerOnlyFS{walfs.New()})),
			wal.WithSegmentSize(cmp.Or(walSegmentSize, wal.DefaultSegmentSize)))
		if err == nil {
			err = ownerOnly(dir) // the metadata file, and files made before segments were created 0600
		}
		if err != nil {
			if w != nil {
				w.Close()
			}
			bolt.Close()
			return nil, fmt.Errorf("cluster: open the raft WAL in %s: %w", filepath.Join(dataDir, walDir), err)
		}
		st.log = w
		st.closer = func() error { return errors.Join(w.Close(), bolt.Close()) }
	}
	if err := checkLogNotLost(dataDir, kind, bolt, st.log); err != nil {
		st.closer()
		return nil, err
	}
	return st, nil
}

// ownerOnlyFS is raft-wal's file system with new segment files readable by
// their owner only: raft-wal creates them 0644, and the log holds every
// request's contents.
type ownerOnlyFS struct{ *walfs.FS }

func (f ownerOnlyFS) Create(dir, name string, size uint64) (waltypes.WritableFile, error) {
	w, err := f.FS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Join(dir, name), 0o600); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// ownerOnly makes every file in dir readable by its owner only.
func ownerOnly(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := os.Chmod(filepath.Join(dir, e.Name()), 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}

// logStoreOnDisk says which log store dataDir already uses: "wal" when the
// WAL's metadata exists, "boltdb" when raft.db holds log entries, "" for a
// new server.
func logStoreOnDisk(dataDir string, bolt *raftboltdb.BoltStore) (string, error) {
	if _, err := os.Stat(filepath.Join(dataDir, walDir, walMeta)); err == nil {
		return LogStoreWAL, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("cluster: %w", err)
	}
	last, err := bolt.LastIndex()
	if err != nil {
		return "", fmt.Errorf("cluster: read raft.db: %w", err)
	}
	if last > 0 {
		return LogStoreBoltDB, nil
	}
	return "", nil
}
