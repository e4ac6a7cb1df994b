package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/hashicorp/raft-wal/metadb"
	"go.etcd.io/bbolt"
)

// The data dir check runs before raft.db is opened for real. A damaged
// bbolt file crashes a process that maps it (SIGBUS past the end of a
// truncated file, index panics on flipped bytes, often in goroutines no
// caller can recover), and a zero-length file is silently initialised as a
// new, empty store. So the check reads the two meta pages itself, compares
// the file size with the high-water mark they record, then opens the file
// with faults turned into panics, walks every key and runs bbolt's own
// consistency check. It also refuses a data dir whose log and snapshots do
// not fit together. Each failure is a DataDirError: one line that names the
// file and says what to do.

const (
	raftDBName   = "raft.db"
	snapshotsDir = "snapshots"

	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	boltPageHeader  = 16 // page id, flags, count, overflow
	boltMetaSumFrom = 56 // bytes of the meta that its checksum covers
	boltMetaSize    = 64
)

// DataDirError says that a data dir cannot be used as it is, and what to do.
type DataDirError struct {
	Path string // the damaged file or directory
	What string // what is wrong with it
	Hint string // what the operator can do
}

func (e *DataDirError) Error() string {
	return fmt.Sprintf("%s: %s; %s", e.Path, e.What, e.Hint)
}

// discardHint is the advice for a damaged data dir.
const discardHint = "restore this server from a backup (blobgc snapshot restore), or start it with --discard-damaged-state to move its raft state aside and rejoin as a new, empty server"

func damaged(path, format string, args ...any) error {
	return &DataDirError{Path: path, What: fmt.Sprintf(format, args...), Hint: discardHint}
}

// checkDataDir verifies the raft state in dir before it is opened. A data
// dir without raft.db and without snapshots is new and passes.
func checkDataDir(dir string) error {
	dbPath := filepath.Join(dir, raftDBName)
	snaps, err := snapshotCount(dir)
	if err != nil {
		return err
	}
	fi, err := os.Stat(dbPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if snaps > 0 {
			return damaged(dbPath, "missing, but %s holds %d snapshot(s): the log and the server's term and vote are gone", filepath.Join(dir, snapshotsDir), snaps)
		}
		return nil
	case err != nil:
		return &DataDirError{Path: dbPath, What: err.Error(), Hint: "check the file's permissions and the disk"}
	case fi.Size() == 0:
		return damaged(dbPath, "is empty (0 bytes): this server's raft log and term are lost, and an empty store would start as a new server")
	}
	if err := checkBolt(dbPath, fi.Size()); err != nil {
		return err
	}
	if err := checkWALMeta(dir); err != nil {
		return err
	}
	return checkLogAgainstSnapshots(dbPath, snaps)
}

// checkWALMeta checks the WAL's metadata file, if there is a WAL: raft-wal
// panics on an empty or foreign one.
func checkWALMeta(dir string) error {
	path := filepath.Join(dir, walDir, walMeta)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return &DataDirError{Path: path, What: err.Error(), Hint: "check the file's permissions and the disk"}
	case fi.Size() == 0:
		return damaged(path, "is empty (0 bytes): the raft log's list of segments is lost")
	}
	return checkBolt(path, fi.Size(), metadb.MetaBucket, metadb.StableBucket)
}

// checkLogNotLost refuses a log store that holds no entries while raft.db
// records a term and there is no snapshot: the server took part in the
// cluster, so its log was deleted or cut off (a WAL whose segments are gone
// opens as an empty log). It runs on the opened stores.
func checkLogNotLost(dataDir, kind string, stable *raftboltdb.BoltStore, log raft.LogStore) error {
	term, err := stable.GetUint64(keyCurrentTerm)
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return damaged(filepath.Join(dataDir, raftDBName), "reading the current term: %v", err)
	}
	last, err := log.LastIndex()
	if err != nil {
		return damaged(filepath.Join(dataDir, walDir), "reading the log: %v", err)
	}
	snaps, err := snapshotCount(dataDir)
	if err != nil || term == 0 || last > 0 || snaps > 0 {
		return err
	}
	where := filepath.Join(dataDir, walDir)
	if kind == LogStoreBoltDB {
		where = filepath.Join(dataDir, raftDBName)
	}
	return damaged(where, "holds no raft log, but raft.db records term %d and there is no snapshot: the log was deleted or lost", term)
}

// snapshotCount returns the number of snapshots in dir/snapshots.
func snapshotCount(dir string) (int, error) {
	entries, err := os.ReadDir(filepath.Join(dir, snapshotsDir))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, &DataDirError{Path: filepath.Join(dir, snapshotsDir), What: err.Error(), Hint: "check the directory's permissions and the disk"}
	}
	n := 0
	for _, e := range entries {
		// raft's file snapshot store leaves *.tmp directories of unfinished
		// snapshots; they are not snapshots.
		if e.IsDir() && filepath.Ext(e.Name()) != ".tmp" {
			n++
		}
	}
	return n, nil
}

// boltMeta is what the check needs from a bbolt meta page.
type boltMeta struct {
	pageSize uint32
	pgid     uint64 // high-water mark: pages [0, pgid) are in use
	txid     uint64
}

// readBoltMeta decodes the meta page at off, or says why it is not one.
func readBoltMeta(f *os.File, off int64) (boltMeta, error) {
	buf := make([]byte, boltPageHeader+boltMetaSize)
	if _, err := f.ReadAt(buf, off); err != nil {
		return boltMeta{}, fmt.Errorf("cannot read a meta page at offset %d: %v", off, err)
	}
	m := buf[boltPageHeader:]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, fmt.Errorf("no bbolt meta page at offset %d (bad magic)", off)
	}
	if v := le.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("bbolt version %d at offset %d, want %d", v, off, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:boltMetaSumFrom])
	if h.Sum64() != le.Uint64(m[boltMetaSumFrom:]) {
		return boltMeta{}, fmt.Errorf("meta page at offset %d fails its checksum", off)
	}
	return boltMeta{pageSize: le.Uint32(m[8:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, nil
}

// checkBolt checks the meta pages and the size of the bbolt file, then its
// content, which must hold the given buckets.
func checkBolt(path string, size int64, buckets ...string) error {
	f, err := os.Open(path)
	if err != nil {
		return &DataDirError{Path: path, What: err.Error(), Hint: "check the file's permissions and the disk"}
	}
	defer f.Close()
	meta0, err0 := readBoltMeta(f, 0)
	var metas []boltMeta
	if err0 == nil {
		metas = append(metas, meta0)
	}
	// The second meta page follows the first; if the first is damaged, its
	// page size is unknown, so try the usual ones.
	var err1 error
	for _, ps := range []int64{int64(meta0.pageSize), int64(os.Getpagesize()), 4096, 16384, 65536} {
		if ps <= 0 || ps+boltPageHeader+boltMetaSize > size {
			continue
		}
		var m boltMeta
		if m, err1 = readBoltMeta(f, ps); err1 == nil && int64(m.pageSize) == ps {
			metas = append(metas, m)
			break
		}
	}
	if len(metas) == 0 {
		return damaged(path, "not a usable bbolt file (%v; %v)", err0, err1)
	}
	m := metas[0]
	for _, x := range metas[1:] {
		if x.txid > m.txid {
			m = x
		}
	}
	if m.pageSize < 512 || m.pageSize&(m.pageSize-1) != 0 {
		return damaged(path, "meta page gives page size %d", m.pageSize)
	}
	if need := int64(m.pgid) * int64(m.pageSize); size < need {
		return damaged(path, "truncated: %d bytes, but its meta page says %d pages of %d bytes (%d bytes)", size, m.pgid, m.pageSize, need)
	}
	return checkBoltContent(path, buckets)
}

// checkBoltContent opens the file and reads all of it, with memory faults
// (SIGBUS on a mapped file) and decoding panics turned into an error.
func checkBoltContent(path string, buckets []string) error {
	done := make(chan error, 1)
	go func() {
		debug.SetPanicOnFault(true)
		var db *bbolt.DB
		defer func() {
			if r := recover(); r != nil {
				if db != nil {
					// Closing may fault again; the file handle goes with
					// the process if it does.
					func() { defer func() { _ = recover() }(); db.Close() }()
				}
				done <- damaged(path, "corrupt (reading it failed: %v)", r)
			}
		}()
		var err error
		db, err = bbolt.Open(path, 0o600, boltOptions())
		if err != nil {
			if errors.Is(err, bbolt.ErrTimeout) {
				done <- &DataDirError{Path: path, What: "locked by another process", Hint: "stop the other blobgc server using this data dir"}
				return
			}
			done <- damaged(path, "cannot be opened: %v", err)
			return
		}
		defer db.Close()
		// Walking every key first touches every page in this goroutine,
		// where a fault is recoverable; bbolt's Check then runs in its own.
		err = db.View(func(tx *bbolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
				return b.ForEach(func(k, v []byte) error { return nil })
			})
		})
		if err == nil {
			err = db.View(func(tx *bbolt.Tx) error {
				for e := range tx.Check() {
					return e
				}
				for _, b := range buckets {
					if tx.Bucket([]byte(b)) == nil {
						return fmt.Errorf("bucket %q is missing", b)
					}
				}
				return nil
			})
		}
		if err != nil {
			done <- damaged(path, "corrupt: %v", err)
			return
		}
		done <- nil
	}()
	return <-done
}

// boltOptions are the bbolt options of raft.db. The freelist is rebuilt on
// open instead of written on every commit: fewer pages per fsync on the
// write path.
func boltOptions() *bbolt.Options {
	return &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
}

// checkLogAgainstSnapshots refuses a log and snapshot set that do not fit:
// snapshots beside a store that has neither log entries nor a term (the
// store was replaced), or a log that starts after index 1 with no snapshot
// to cover what came before it.
func checkLogAgainstSnapshots(dbPath string, snaps int) error {
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: boltOptions()})
	if err != nil {
		return damaged(dbPath, "cannot be opened: %v", err)
	}
	defer store.Close()
	first, err := store.FirstIndex()
	if err != nil {
		return damaged(dbPath, "reading the log: %v", err)
	}
	term, err := store.GetUint64(keyCurrentTerm)
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return damaged(dbPath, "reading the current term: %v", err)
	}
	switch {
	case snaps > 0 && first == 0 && term == 0:
		return damaged(dbPath, "holds no log and no term, but %s holds %d snapshot(s): raft.db was replaced or emptied", filepath.Join(filepath.Dir(dbPath), snapshotsDir), snaps)
	case snaps == 0 && first > 1:
		return damaged(dbPath, "log starts at index %d but there is no snapshot of the entries before it", first)
	}
	return nil
}

// keyCurrentTerm is where raft keeps its current term in the stable store.
var keyCurrentTerm = []byte("CurrentTerm")

// discardRaftState moves raft.db, snapshots/ and a write-ahead log (wal/)
// aside (suffix .damaged-<unix seconds>) so that the server starts without
// raft state.
func discardRaftState(dir string, now time.Time) ([]string, error) {
	var moved []string
	for _, name := range []string{raftDBName, snapshotsDir, "wal"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		to := fmt.Sprintf("%s.damaged-%d", p, now.Unix())
		if err := os.Rename(p, to); err != nil {
			return moved, fmt.Errorf("cluster: moving %s aside: %w", p, err)
		}
		moved = append(moved, to)
	}
	return moved, nil
}

// checkDataDir checks the data dir and, when the configuration says so,
// moves damaged raft state aside.
func (s *Server) checkDataDir() error { return s.discardIfDamaged(checkDataDir(s.cfg.DataDir)) }

// discardIfDamaged returns err, or, if err is a DataDirError and the
// configuration says so, moves the raft state aside and returns nil.
func (s *Server) discardIfDamaged(err error) error {
	var de *DataDirError
	if err == nil || !s.cfg.DiscardDamagedState || !errors.As(err, &de) {
		return err
	}
	moved, err := discardRaftState(s.cfg.DataDir, time.Now())
	s.log.Warn("DISCARDED damaged raft state: this server starts empty and must rejoin the cluster or be restored from a backup",
		"damage", de.Error(), "moved_to", moved)
	return err
}
