package cluster

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/grpc/codes"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/backup"
	"github.com/blobgc/blobgc/fsm"
)

// snapshotChunk is the data carried by one SnapshotChunk message.
const snapshotChunk = 1 << 20

// SaveSnapshot streams a consistent snapshot of the state machine from the
// leader: after a linearizable barrier (so it holds every write acknowledged
// before the call), the state machine is frozen in O(1) and its canonical
// stream is sent while writes go on.
func (a *api) SaveSnapshot(req *pb.SaveSnapshotRequest, stream pb.BlobGC_SaveSnapshotServer) error {
	s := a.s
	ctx, cancel := s.bound(stream.Context())
	ss, err := s.readySession(ctx)
	if err == nil {
		err = s.linearize(ctx, ss)
	}
	cancel()
	if errors.Is(err, errNotLeader) {
		return s.withHint(codes.Unavailable, "not the leader: snapshots are saved from the leader")
	}
	if err != nil {
		return err
	}
	fs, err := s.fsm.Snapshot()
	if err != nil {
		return err
	}
	snap := fs.(*fsm.Snap)
	ct, wt := snap.Times()
	info := &pb.SnapshotInfo{Index: snap.Index(), Term: ss.term, ClusterTimeNs: ct, WallTimeNs: wt, ServerId: s.cfg.ID}
	if err := stream.Send(&pb.SnapshotChunk{Info: info}); err != nil {
		return err
	}
	sum := sha256.New()
	cw := &chunkSender{send: func(b []byte) error { return stream.Send(&pb.SnapshotChunk{Data: b}) }}
	if _, err := snap.WriteTo(io.MultiWriter(sum, cw)); err != nil {
		return err
	}
	if err := cw.flush(); err != nil {
		return err
	}
	s.log.Info("snapshot saved by a client", "index", info.Index, "term", info.Term)
	return stream.Send(&pb.SnapshotChunk{Sha256: sum.Sum(nil)})
}

// chunkSender cuts a stream into messages of snapshotChunk bytes.
type chunkSender struct {
	buf  []byte
	send func([]byte) error
}

func (c *chunkSender) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(snapshotChunk-len(c.buf), len(p))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == snapshotChunk {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunkSender) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.send(c.buf)
	c.buf = make([]byte, 0, snapshotChunk) // the sent slice belongs to gRPC now
	return err
}

// RestoreDataDir builds the data dir of one server of a new cluster from a
// backup file: a raft snapshot of the saved state with peers as its
// configuration, and the saved term. Every server of the new cluster is
// restored from the same file with the same peers; started with those
// peers, they elect a leader that continues from the saved cluster time,
// so grace periods go on where they were. The data dir must hold no raft
// state yet.
func RestoreDataDir(file, dataDir, id string, peers []Peer, log hclog.Logger) (backup.Header, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	var conf raft.Configuration
	found := false
	for _, p := range peers {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address)})
		found = found || p.ID == id
	}
	if !found {
		return backup.Header{}, fmt.Errorf("restore: server id %q is not among the peers", id)
	}
	if _, err := os.Stat(filepath.Join(dataDir, raftDBName)); err == nil {
		return backup.Header{}, fmt.Errorf("restore: %s already exists: restore into a new, empty data dir", filepath.Join(dataDir, raftDBName))
	}
	if n, err := snapshotCount(dataDir); err != nil || n > 0 {
		return backup.Header{}, fmt.Errorf("restore: %s already holds snapshots: restore into a new, empty data dir", filepath.Join(dataDir, snapshotsDir))
	}
	// Decode it once: a stream that passes its checksum but does not restore
	// would stop the new servers at start.
	h, st, err := ReadBackup(file)
	if err != nil {
		return h, fmt.Errorf("restore: %w", err)
	}
	if h.Index == 0 {
		return h, fmt.Errorf("restore: %s holds an empty state (index 0): start a new cluster instead", file)
	}
	if st.AppliedIndex() != h.Index || st.ClusterTime() != h.ClusterTime {
		return h, fmt.Errorf("restore: %s: header (index %d, cluster time %d) disagrees with its snapshot (index %d, cluster time %d)",
			file, h.Index, h.ClusterTime, st.AppliedIndex(), st.ClusterTime())
	}

	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return h, fmt.Errorf("restore: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dataDir, 2, log.Named("snapshots"))
	if err != nil {
		return h, fmt.Errorf("restore: snapshot store: %w", err)
	}
	_, trans := raft.NewInmemTransport("") // only encodes the (legacy) peer list
	sink, err := snaps.Create(raft.SnapshotVersionMax, h.Index, h.Term, conf, h.Index, trans)
	if err != nil {
		return h, fmt.Errorf("restore: %w", err)
	}
	_, body, err := backup.Open(file)
	if err == nil {
		sum := sha256.New()
		_, err = io.Copy(io.MultiWriter(sink, sum), body)
		body.Close()
		if err == nil && !bytes.Equal(sum.Sum(nil), h.SHA256[:]) {
			err = errors.New("the file changed while it was restored")
		}
	}
	if err != nil {
		_ = sink.Cancel()
		return h, fmt.Errorf("restore: writing the snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return h, fmt.Errorf("restore: writing the snapshot: %w", err)
	}
	// The term goes into a new raft.db, so that the new cluster's terms
	// continue after the snapshot's.
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dataDir, raftDBName), BoltOptions: boltOptions()})
	if err != nil {
		return h, fmt.Errorf("restore: %w", err)
	}
	err = store.SetUint64(keyCurrentTerm, h.Term)
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return h, fmt.Errorf("restore: %w", err)
	}
	log.Info("restored data dir from backup", "file", file, "data_dir", dataDir, "index", h.Index, "term", h.Term, "peers", len(peers))
	return h, nil
}

// ReadBackup verifies a backup file and decodes its snapshot into a state
// machine, for inspection.
func ReadBackup(file string) (backup.Header, *fsm.FSM, error) {
	h, err := backup.Verify(file)
	if err != nil {
		return h, nil, err
	}
	_, body, err := backup.Open(file)
	if err != nil {
		return h, nil, err
	}
	f := fsm.New()
	if err := f.Restore(body); err != nil {
		return h, nil, fmt.Errorf("%s: %w", file, err)
	}
	return h, f, nil
}

// Scheduled backups: with Config.BackupDir set, every server writes a backup
// of its own applied state every BackupInterval (the states of servers at
// the same index are identical), named blobgc-<id>-<index>.snap so that
// names sort by index, skips an interval in which nothing was applied, and
// keeps the newest BackupKeep files.

const (
	DefaultBackupInterval = time.Hour
	DefaultBackupKeep     = 24
)

func (s *Server) runBackups() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.BackupInterval)
	defer t.Stop()
	for {
		select {
		case <-s.shutdownCh:
			return
		case <-t.C:
			if path, err := s.writeBackup(); err != nil {
				s.log.Error("scheduled backup failed", "error", err)
			} else if path != "" {
				s.log.Info("scheduled backup written", "file", path)
			}
		}
	}
}

// writeBackup writes a backup of the applied state, unless there is none or
// the newest backup has the same index, and prunes old ones.
func (s *Server) writeBackup() (string, error) {
	fs, err := s.fsm.Snapshot()
	if err != nil {
		return "", err
	}
	snap := fs.(*fsm.Snap)
	if snap.Index() == 0 {
		return "", nil
	}
	prefix := "blobgc-" + s.cfg.ID + "-"
	path := filepath.Join(s.cfg.BackupDir, fmt.Sprintf("%s%020d.snap", prefix, snap.Index()))
	if _, err := os.Stat(path); err == nil {
		return "", nil
	}
	if err := os.MkdirAll(s.cfg.BackupDir, 0o700); err != nil {
		return "", err
	}
	w, err := backup.Create(path)
	if err != nil {
		return "", err
	}
	if _, err := snap.WriteTo(w); err != nil {
		w.Abort()
		return "", err
	}
	ct, wt := snap.Times()
	if _, err := w.Commit(backup.Header{Index: snap.Index(), Term: s.raft.CurrentTerm(), ClusterTime: ct, WallTime: wt}); err != nil {
		return "", err
	}
	old, err := filepath.Glob(filepath.Join(s.cfg.BackupDir, prefix+"*.snap"))
	if err != nil {
		return path, err
	}
	slices.Sort(old)
	for len(old) > s.cfg.BackupKeep {
		if err := os.Remove(old[0]); err != nil {
			return path, err
		}
		old = old[1:]
	}
	return path, nil
}
