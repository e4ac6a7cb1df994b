package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"slices"

	"github.com/blobgc/blobgc/fsm/fsmpb"
	"github.com/google/btree"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// Snapshot stream format (version 2), canonical: two FSMs with the same
// state write the same bytes, whatever their internal ids or history.
//
//	header  "BLOBGCFS" (8 bytes), version uint32 LE
//	records type byte, payload length uvarint, payload:
//	  meta      SnapshotMeta (protobuf)
//	  blobs     blob_count fixed 42-byte records in hash order, in batches:
//	            hash[32] since int64 LE, status byte, flags byte
//	  per node (by id): SnapshotNode, then hash batches of its active set
//	            and then of its pinned set, each in hash order
//	  per staged chunked report (by node id): SnapshotStaging, then hash
//	            batches of its active and pinned parts in received order
//	  history   HistoryEvent (protobuf) per event, oldest first
//	  provenance SnapshotProvenance per record, in hash order
//	  cycle requests SnapshotCycleRequest per id, oldest first
//	  tombstones batches of 40-byte records, oldest first: hash[32],
//	            sequence uint64 LE
//	  end       empty payload
//	trailer CRC-32C (Castagnoli) LE of every byte before it
//
// Version 1 (still restored) has no provenance, cycle requests, limits in
// the config, staging times or tombstone sequences: its tombstones are hash
// batches, numbered from 1 on restore, and its stages count as received at
// the snapshot's cluster time.
//
// Reference counts, status counts, the MARKED set, the UNREFERENCED FIFO
// and the dirty list are derived and rebuilt by Restore.

const (
	snapMagic   = "BLOBGCFS"
	snapVersion = 2

	recMeta    = 1
	recBlobs   = 2
	recNode    = 3
	recHashes  = 4
	recStaging = 5
	recHistory = 6
	recProv    = 7
	recCycle   = 8
	recTombs   = 9
	recEnd     = 0xFF

	blobRecSize  = 42
	tombRecSize  = 40
	batchHashes  = 1 << 15 // hashes per batch record (1 MiB)
	batchBlobs   = 1 << 14 // blob records per batch record
	maxRecordLen = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// view is a frozen, read-only copy of the state, sharing structure with
// the live state through copy-on-write.
type view struct {
	tab         *table
	nodes       []*node   // sorted by id
	staging     []*staged // sorted by node id
	config      Config
	clusterTime int64
	wallTime    int64
	applied     uint64
	nextHistSeq uint64
	nextTombSeq uint64
	history     []HistoryEvent
	tombs       []tombItem
	prov        *btree.BTreeG[provRec]
	cycleReqs   []cycleReq
}

// freeze is O(shards + nodes): bitmaps are cloned copy-on-write, slices are
// capped so later appends to the live state do not show.
func (s *state) freeze() *view {
	v := &view{
		tab: s.tab.freeze(), config: s.config, clusterTime: s.clusterTime, wallTime: s.wallTime,
		applied: s.applied, nextHistSeq: s.nextHistSeq, nextTombSeq: s.nextTombSeq,
		history:   s.history[:len(s.history):len(s.history)],
		tombs:     s.tombs[s.tombHead:len(s.tombs):len(s.tombs)],
		prov:      s.prov.Clone(),
		cycleReqs: s.cycleReqs[:len(s.cycleReqs):len(s.cycleReqs)],
	}
	for _, id := range s.sortedNodeIDs() {
		c := *s.nodes[id]
		c.active = c.active.clone()
		c.pinned = c.pinned.clone()
		v.nodes = append(v.nodes, &c)
	}
	for _, st := range s.staging {
		c := *st
		c.active = c.active[:len(c.active):len(c.active)]
		c.pinned = c.pinned[:len(c.pinned):len(c.pinned)]
		v.staging = append(v.staging, &c)
	}
	slices.SortFunc(v.staging, func(a, b *staged) int { return cmpString(a.nodeID, b.nodeID) })
	return v
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Snapshot freezes the state in O(shards + nodes); Persist writes it while
// Apply continues.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &Snap{v: f.st.freeze()}, nil
}

// Snap is a frozen state; it implements raft.FSMSnapshot.
type Snap struct{ v *view }

// Persist streams the snapshot into sink and closes it (cancels on error).
func (sn *Snap) Persist(sink raft.SnapshotSink) error {
	bw := bufio.NewWriterSize(sink, 1<<20)
	err := sn.v.write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// WriteTo writes the snapshot stream to w.
func (sn *Snap) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, 1<<20)
	err := sn.v.write(bw)
	if err == nil {
		err = bw.Flush()
	}
	return cw.n, err
}

// Index returns the raft index of the last entry the snapshot holds.
func (sn *Snap) Index() uint64 { return sn.v.applied }

// Times returns the cluster time and the wall time of the last command the
// snapshot holds.
func (sn *Snap) Times() (cluster, wall int64) { return sn.v.clusterTime, sn.v.wallTime }

// Release is a no-op: the frozen structure is garbage collected.
func (sn *Snap) Release() {}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type recWriter struct {
	w   io.Writer
	crc hash.Hash32
	err error
	hdr [1 + binary.MaxVarintLen64]byte
}

func (rw *recWriter) raw(b []byte) {
	if rw.err != nil {
		return
	}
	_, rw.err = rw.w.Write(b)
	rw.crc.Write(b)
}

func (rw *recWriter) record(typ byte, payload []byte) {
	rw.hdr[0] = typ
	n := binary.PutUvarint(rw.hdr[1:], uint64(len(payload)))
	rw.raw(rw.hdr[:1+n])
	rw.raw(payload)
}

func (rw *recWriter) proto(typ byte, m proto.Message) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil && rw.err == nil {
		rw.err = err
	}
	rw.record(typ, b)
}

// hashes writes hs as batch records.
func (rw *recWriter) hashes(hs []Hash, buf []byte) []byte {
	for len(hs) > 0 {
		n := min(len(hs), batchHashes)
		buf = buf[:0]
		for i := 0; i < n; i++ {
			buf = append(buf, hs[i][:]...)
		}
		rw.record(recHashes, buf)
		hs = hs[n:]
	}
	return buf
}

// sortKey orders a shard's entries: hash bytes 1..8 as an integer (byte 0
// is the shard), ties broken by the whole hash.
type sortKey struct {
	k uint64
	l uint32
}

func (v *view) write(w io.Writer) error {
	rw := &recWriter{w: w, crc: crc32.New(castagnoli)}
	var hdr [12]byte
	copy(hdr[:], snapMagic)
	binary.LittleEndian.PutUint32(hdr[8:], snapVersion)
	rw.raw(hdr[:])

	blobCount := 0
	tombs := v.liveTombs()
	for _, sh := range v.tab.shards {
		sh.each(func(_ uint32, e *entry) {
			if trackedStatus(e.status) || e.status == uint8(StatusDeleting) {
				blobCount++
			}
		})
	}
	rw.proto(recMeta, &fsmpb.SnapshotMeta{
		AppliedIndex: v.applied, ClusterTimeNs: v.clusterTime, WallTimeNs: v.wallTime,
		Config: v.config.toProto(), NextHistorySeq: v.nextHistSeq, BlobCount: uint64(blobCount),
		NodeCount: uint64(len(v.nodes)), StagingCount: uint64(len(v.staging)),
		HistoryCount: uint64(len(v.history)), TombstoneCount: uint64(len(tombs)),
		NextTombstoneSeq: v.nextTombSeq, ProvenanceCount: uint64(v.prov.Len()),
		CycleRequestCount: uint64(len(v.cycleReqs)),
	})

	// Blobs, shard by shard: shards partition by the first byte, so the
	// concatenation of sorted shards is in hash order.
	var keys []sortKey
	buf := make([]byte, 0, batchBlobs*blobRecSize)
	for _, sh := range v.tab.shards {
		keys = keys[:0]
		sh.each(func(l uint32, e *entry) {
			if trackedStatus(e.status) || e.status == uint8(StatusDeleting) {
				keys = append(keys, sortKey{k: binary.BigEndian.Uint64(e.hash[1:9]), l: l})
			}
		})
		slices.SortFunc(keys, func(a, b sortKey) int {
			if a.k != b.k {
				if a.k < b.k {
					return -1
				}
				return 1
			}
			return bytes.Compare(sh.at(a.l).hash[:], sh.at(b.l).hash[:])
		})
		for len(keys) > 0 {
			n := min(len(keys), batchBlobs)
			buf = buf[:0]
			for _, k := range keys[:n] {
				e := sh.at(k.l)
				buf = append(buf, e.hash[:]...)
				buf = binary.LittleEndian.AppendUint64(buf, uint64(e.since))
				buf = append(buf, e.status, e.flags&persistMsk)
			}
			rw.record(recBlobs, buf)
			keys = keys[n:]
		}
		if rw.err != nil {
			return rw.err
		}
	}

	var hs []Hash
	for _, n := range v.nodes {
		rw.proto(recNode, &fsmpb.SnapshotNode{
			Id: n.id, LastReportNs: n.lastReport, LastWallNs: n.lastWall, Seq: n.seq,
			ActiveCount: uint64(n.active.len()), PinnedCount: uint64(n.pinned.len()),
			LastChunkReportId: n.lastChunk,
		})
		for _, b := range []idSet{n.active, n.pinned} {
			hs = v.setHashes(b, hs[:0])
			buf = rw.hashes(hs, buf)
		}
		if rw.err != nil {
			return rw.err
		}
	}
	for _, st := range v.staging {
		rw.proto(recStaging, &fsmpb.SnapshotStaging{
			NodeId: st.nodeID, ReportId: st.reportID, NextIndex: st.next,
			ActiveCount: uint64(len(st.active)), PinnedCount: uint64(len(st.pinned)),
			LastChunkNs: st.last,
		})
		buf = rw.hashes(st.active, buf)
		buf = rw.hashes(st.pinned, buf)
	}
	for i := range v.history {
		ev := &v.history[i]
		rw.proto(recHistory, &fsmpb.HistoryEvent{
			Seq: ev.Seq, TimeNs: ev.Time, WallTimeNs: ev.WallTime, NewlyMarked: PackHashes(ev.NewlyMarked),
			EligibleCount: uint64(ev.EligibleCount), Preserved: uint64(ev.Preserved),
			NodesReporting: uint64(ev.NodesReporting), Skipped: ev.Skipped, RunBy: ev.RunBy,
		})
	}
	v.prov.Ascend(func(r provRec) bool {
		rw.proto(recProv, &fsmpb.SnapshotProvenance{
			Hash: r.hash[:], PinnedBy: r.pinnedBy, ClaimedBy: r.claimedBy, ClaimedAtNs: r.claimedAt,
			ConfirmedBy: r.confirmedBy, ConfirmedAtNs: r.confirmedAt,
		})
		return rw.err == nil
	})
	for i := range v.cycleReqs {
		r := &v.cycleReqs[i]
		rw.proto(recCycle, &fsmpb.SnapshotCycleRequest{
			RequestId: r.id, TimeNs: r.res.Time, NewlyMarked: PackHashes(r.res.NewlyMarked),
			ActiveCount: int64(r.res.ActiveCount), PinnedCount: int64(r.res.PinnedCount),
			UnreferencedCount: int64(r.res.UnreferencedCount), StaleNodes: r.res.StaleNodes,
			NodesReporting: int64(r.res.NodesReporting), Skipped: r.res.Skipped, EligibleCount: int64(r.eligibleCount),
		})
	}
	for len(tombs) > 0 {
		n := min(len(tombs), batchHashes)
		buf = buf[:0]
		for _, t := range tombs[:n] {
			buf = append(buf, t.hash[:]...)
			buf = binary.LittleEndian.AppendUint64(buf, t.seq)
		}
		rw.record(recTombs, buf)
		tombs = tombs[n:]
	}
	rw.record(recEnd, nil)
	if rw.err != nil {
		return rw.err
	}
	var tr [4]byte
	binary.LittleEndian.PutUint32(tr[:], rw.crc.Sum32())
	_, err := w.Write(tr[:])
	return err
}

// setHashes returns the hashes of a node set in hash order. Ids ascend by
// shard, and a shard holds the hashes with one first byte, so sorting within
// each shard's run is enough.
func (v *view) setHashes(set idSet, out []Hash) []Hash {
	start, cur := len(out), uint32(numShards)
	set.each(func(id uint32) {
		if sh := id >> localBits; sh != cur {
			sortHashes(out[start:])
			start, cur = len(out), sh
		}
		out = append(out, v.tab.get(id).hash)
	})
	sortHashes(out[start:])
	return out
}

type liveTomb struct {
	hash Hash
	seq  uint64
}

// liveTombs returns the tombstones still valid, oldest first.
func (v *view) liveTombs() []liveTomb {
	var out []liveTomb
	for _, t := range v.tombs {
		if !v.tab.valid(t.id) {
			continue
		}
		if e := v.tab.get(t.id); e.status == uint8(StatusCollected) && e.since == int64(t.seq) {
			out = append(out, liveTomb{hash: e.hash, seq: t.seq})
		}
	}
	return out
}

// ---- Restore ----

// Restore replaces the whole state with the snapshot in rc. A stream that is
// corrupt, truncated, of another version or inconsistent is rejected and the
// current state is kept.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readState(rc)
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	return nil
}

// ErrCorrupt is wrapped by every Restore error about the stream's content.
var ErrCorrupt = errors.New("corrupt snapshot")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

type recReader struct {
	r   *bufio.Reader
	crc hash.Hash32
	buf []byte
	one [1]byte
}

func (rr *recReader) ReadByte() (byte, error) {
	b, err := rr.r.ReadByte()
	if err != nil {
		return 0, err
	}
	rr.one[0] = b
	rr.crc.Write(rr.one[:])
	return b, nil
}

// next reads one record. The payload is valid until the next call.
func (rr *recReader) next() (byte, []byte, error) {
	typ, err := rr.ReadByte()
	if err != nil {
		return 0, nil, truncated(err)
	}
	n, err := binary.ReadUvarint(rr)
	if err != nil {
		return 0, nil, truncated(err)
	}
	if n > maxRecordLen {
		return 0, nil, corrupt("record length %d exceeds %d", n, maxRecordLen)
	}
	// Grow with the data actually read so a bogus length cannot allocate
	// more than the stream holds.
	rr.buf = rr.buf[:0]
	for remaining := int(n); remaining > 0; {
		chunk := min(remaining, 1<<20)
		start := len(rr.buf)
		rr.buf = slices.Grow(rr.buf, chunk)[:start+chunk]
		if _, err := io.ReadFull(rr.r, rr.buf[start:]); err != nil {
			return 0, nil, truncated(err)
		}
		remaining -= chunk
	}
	rr.crc.Write(rr.buf)
	return typ, rr.buf, nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return corrupt("truncated stream")
	}
	return err
}

func (rr *recReader) expect(typ byte) ([]byte, error) {
	t, p, err := rr.next()
	if err != nil {
		return nil, err
	}
	if t != typ {
		return nil, corrupt("record type %d, expected %d", t, typ)
	}
	return p, nil
}

func (rr *recReader) message(typ byte, m proto.Message) error {
	p, err := rr.expect(typ)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(p, m); err != nil {
		return corrupt("record type %d: %v", typ, err)
	}
	return nil
}

// hashList reads count hashes from batch records; ascending requires
// strictly increasing hashes.
func (rr *recReader) hashList(count uint64, ascending bool, out []Hash) ([]Hash, error) {
	var prev Hash
	for got := uint64(0); got < count; {
		p, err := rr.expect(recHashes)
		if err != nil {
			return nil, err
		}
		if len(p) == 0 || len(p)%HashSize != 0 || uint64(len(p)/HashSize) > count-got {
			return nil, corrupt("hash batch of %d bytes with %d hashes outstanding", len(p), count-got)
		}
		for _, h := range hashesOf(p) {
			if ascending && got > 0 && h.Compare(prev) <= 0 {
				return nil, corrupt("hashes not in strictly increasing order")
			}
			prev = h
			out = append(out, h)
			got++
		}
	}
	return out, nil
}

func readState(r io.Reader) (*state, error) {
	rr := &recReader{r: bufio.NewReaderSize(r, 1<<20), crc: crc32.New(castagnoli)}
	var hdr [12]byte
	if _, err := io.ReadFull(rr.r, hdr[:]); err != nil {
		return nil, truncated(err)
	}
	rr.crc.Write(hdr[:])
	if string(hdr[:8]) != snapMagic {
		return nil, corrupt("bad magic")
	}
	version := binary.LittleEndian.Uint32(hdr[8:])
	if version != 1 && version != snapVersion {
		return nil, fmt.Errorf("%w: snapshot version %d unsupported (want 1 or %d)", ErrCorrupt, version, snapVersion)
	}
	var meta fsmpb.SnapshotMeta
	if err := rr.message(recMeta, &meta); err != nil {
		return nil, err
	}
	cfg, err := configFromProto(meta.GetConfig())
	if err != nil {
		return nil, corrupt("config: %v", err)
	}
	if meta.GetClusterTimeNs() < 0 || meta.GetNextHistorySeq() < 1 {
		return nil, corrupt("meta out of range")
	}
	v2 := version >= 2
	if !v2 && (meta.GetNextTombstoneSeq() != 0 || meta.GetProvenanceCount() != 0 || meta.GetCycleRequestCount() != 0) {
		return nil, corrupt("version 1 snapshot with version 2 fields")
	}
	if v2 && meta.GetNextTombstoneSeq() < 1 {
		return nil, corrupt("meta: next tombstone sequence 0")
	}
	s := newState(cfg)
	s.applied, s.clusterTime, s.wallTime = meta.GetAppliedIndex(), meta.GetClusterTimeNs(), meta.GetWallTimeNs()
	s.nextHistSeq = meta.GetNextHistorySeq()

	// Blobs.
	var prev Hash
	var unref []unrefItem
	for got := uint64(0); got < meta.GetBlobCount(); {
		p, err := rr.expect(recBlobs)
		if err != nil {
			return nil, err
		}
		if len(p) == 0 || len(p)%blobRecSize != 0 || uint64(len(p)/blobRecSize) > meta.GetBlobCount()-got {
			return nil, corrupt("blob batch of %d bytes", len(p))
		}
		for off := 0; off < len(p); off += blobRecSize {
			var h Hash
			copy(h[:], p[off:])
			since := int64(binary.LittleEndian.Uint64(p[off+32:]))
			status, flags := p[off+40], p[off+41]
			if got > 0 && h.Compare(prev) <= 0 {
				return nil, corrupt("blobs not in strictly increasing hash order")
			}
			prev = h
			got++
			if !trackedStatus(status) && status != uint8(StatusDeleting) {
				return nil, corrupt("blob %s: status %d", h, status)
			}
			if flags&^persistMsk != 0 || (flags&flagCPin != 0 && status != uint8(StatusPinned)) {
				return nil, corrupt("blob %s: flags %#x with status %d", h, flags, status)
			}
			if status == uint8(StatusUnreferenced) {
				if since < 0 || since > s.clusterTime {
					return nil, corrupt("blob %s: since %d outside [0, %d]", h, since, s.clusterTime)
				}
			} else if since != 0 {
				return nil, corrupt("blob %s: since set for status %d", h, status)
			}
			// Strictly increasing hashes are distinct: no lookup needed;
			// slots are built once after the last blob.
			id, ok := s.tab.appendUnplaced(&h)
			if !ok {
				return nil, corrupt("too many blobs in one shard")
			}
			e := s.tab.mut(id)
			e.status, e.since, e.flags = status, since, e.flags|flags
			if status == uint8(StatusUnreferenced) {
				unref = append(unref, unrefItem{since: since, id: id})
			}
		}
	}

	s.tab.placeAll()

	// Nodes.
	var hs []Hash
	var ids []uint32
	var prevID string
	for i := uint64(0); i < meta.GetNodeCount(); i++ {
		var m fsmpb.SnapshotNode
		if err := rr.message(recNode, &m); err != nil {
			return nil, err
		}
		if err := validateNodeID("node", m.GetId()); err != nil {
			return nil, corrupt("%v", err)
		}
		if i > 0 && m.GetId() <= prevID {
			return nil, corrupt("nodes not in increasing id order")
		}
		prevID = m.GetId()
		if m.GetLastReportNs() > s.clusterTime {
			return nil, corrupt("node %q: last report after cluster time", m.GetId())
		}
		n := &node{id: m.GetId(), lastReport: m.GetLastReportNs(), lastWall: m.GetLastWallNs(), seq: m.GetSeq(), lastChunk: m.GetLastChunkReportId()}
		for k, cnt := range []uint64{m.GetActiveCount(), m.GetPinnedCount()} {
			if hs, err = rr.hashList(cnt, true, hs[:0]); err != nil {
				return nil, err
			}
			ids = ids[:0]
			for j := range hs {
				id, _, ok := s.tab.insert(&hs[j])
				if !ok {
					return nil, corrupt("too many blobs in one shard")
				}
				ids = append(ids, id)
				e := s.tab.mut(id)
				if k == 0 {
					e.refs++
				} else {
					e.pins++
				}
			}
			b := setOfKeys(sortedKeys(ids)) // distinct: the hash list is strictly increasing
			if k == 0 {
				n.active = b
			} else {
				n.pinned = b
			}
		}
		s.nodes[n.id] = n
	}

	// Staged chunked reports.
	prevID = ""
	for i := uint64(0); i < meta.GetStagingCount(); i++ {
		var m fsmpb.SnapshotStaging
		if err := rr.message(recStaging, &m); err != nil {
			return nil, err
		}
		if err := validateNodeID("staging", m.GetNodeId()); err != nil {
			return nil, corrupt("%v", err)
		}
		if i > 0 && m.GetNodeId() <= prevID {
			return nil, corrupt("staging not in increasing node id order")
		}
		prevID = m.GetNodeId()
		if m.GetReportId() == 0 || m.GetActiveCount() > MaxStagedHashes || m.GetPinnedCount() > MaxStagedHashes ||
			m.GetActiveCount()+m.GetPinnedCount() > MaxStagedHashes || m.GetLastChunkNs() < 0 || m.GetLastChunkNs() > s.clusterTime {
			return nil, corrupt("staging of node %q out of range", m.GetNodeId())
		}
		st := &staged{nodeID: m.GetNodeId(), reportID: m.GetReportId(), next: m.GetNextIndex(), last: m.GetLastChunkNs()}
		if !v2 {
			st.last = s.clusterTime
		}
		if st.active, err = rr.hashList(m.GetActiveCount(), false, nil); err != nil {
			return nil, err
		}
		if st.pinned, err = rr.hashList(m.GetPinnedCount(), false, nil); err != nil {
			return nil, err
		}
		s.staging[st.nodeID] = st
		s.stagedTotal += st.size()
	}

	// History.
	if meta.GetHistoryCount() > uint64(cfg.HistoryLimit) {
		return nil, corrupt("%d history events above the limit %d", meta.GetHistoryCount(), cfg.HistoryLimit)
	}
	for i := uint64(0); i < meta.GetHistoryCount(); i++ {
		var m fsmpb.HistoryEvent
		if err := rr.message(recHistory, &m); err != nil {
			return nil, err
		}
		nm, err := UnpackHashes(m.GetNewlyMarked())
		if err != nil {
			return nil, corrupt("history: %v", err)
		}
		if (len(s.history) > 0 && m.GetSeq() <= s.history[len(s.history)-1].Seq) || m.GetSeq() >= s.nextHistSeq || m.GetSeq() == 0 {
			return nil, corrupt("history seq %d out of order", m.GetSeq())
		}
		if len(nm) == 0 {
			nm = nil
		}
		s.history = append(s.history, HistoryEvent{
			Seq: m.GetSeq(), Time: m.GetTimeNs(), WallTime: m.GetWallTimeNs(), NewlyMarked: nm,
			EligibleCount: int(m.GetEligibleCount()), Preserved: int(m.GetPreserved()),
			NodesReporting: int(m.GetNodesReporting()), Skipped: m.GetSkipped(), RunBy: m.GetRunBy(),
		})
		if err := validatePrincipal("history run_by", m.GetRunBy()); err != nil {
			return nil, corrupt("%v", err)
		}
	}
	if err := readProvenance(rr, s, meta.GetProvenanceCount()); err != nil {
		return nil, err
	}
	if err := readCycleRequests(rr, s, meta.GetCycleRequestCount()); err != nil {
		return nil, err
	}

	// Tombstones, oldest first.
	if meta.GetTombstoneCount() > uint64(cfg.TombstoneLimit) {
		return nil, corrupt("%d tombstones above the limit %d", meta.GetTombstoneCount(), cfg.TombstoneLimit)
	}
	tombs, err := readTombstones(rr, v2, meta.GetTombstoneCount())
	if err != nil {
		return nil, err
	}
	if v2 {
		s.nextTombSeq = meta.GetNextTombstoneSeq()
	} else {
		s.nextTombSeq = uint64(len(tombs)) + 1
	}
	for _, t := range tombs {
		id, _, ok := s.tab.insert(&t.hash)
		if !ok {
			return nil, corrupt("too many blobs in one shard")
		}
		e := s.tab.mut(id)
		if e.status != uint8(StatusNotFound) {
			return nil, corrupt("tombstone %s is also a known blob or a repeated tombstone", t.hash)
		}
		if t.seq >= s.nextTombSeq {
			return nil, corrupt("tombstone %s: sequence %d not below the next %d", t.hash, t.seq, s.nextTombSeq)
		}
		e.status = uint8(StatusCollected)
		e.since = int64(t.seq)
		s.tombs = append(s.tombs, tombItem{seq: t.seq, id: id})
	}
	if err := checkProvenance(s); err != nil {
		return nil, err
	}

	if _, err := rr.expect(recEnd); err != nil {
		return nil, err
	}
	want := rr.crc.Sum32()
	var tr [4]byte
	if _, err := io.ReadFull(rr.r, tr[:]); err != nil {
		return nil, truncated(err)
	}
	if got := binary.LittleEndian.Uint32(tr[:]); got != want {
		return nil, corrupt("checksum mismatch")
	}
	if _, err := rr.r.ReadByte(); err != io.EOF {
		return nil, corrupt("trailing data after the checksum")
	}
	s.rebuildDerived(unref)
	s.sum = s.recomputeSum()
	return s, nil
}

// readTombstones reads the tombstones, oldest first: version 2 records with
// strictly increasing sequences, or version 1 hash batches numbered from 1.
func readTombstones(rr *recReader, v2 bool, count uint64) ([]liveTomb, error) {
	var out []liveTomb
	if !v2 {
		hs, err := rr.hashList(count, false, nil)
		if err != nil {
			return nil, err
		}
		for i, h := range hs {
			out = append(out, liveTomb{hash: h, seq: uint64(i) + 1})
		}
		return out, nil
	}
	for uint64(len(out)) < count {
		p, err := rr.expect(recTombs)
		if err != nil {
			return nil, err
		}
		if len(p) == 0 || len(p)%tombRecSize != 0 || uint64(len(p)/tombRecSize) > count-uint64(len(out)) {
			return nil, corrupt("tombstone batch of %d bytes", len(p))
		}
		for off := 0; off < len(p); off += tombRecSize {
			t := liveTomb{hash: Hash(p[off : off+HashSize]), seq: binary.LittleEndian.Uint64(p[off+HashSize:])}
			if t.seq == 0 || (len(out) > 0 && t.seq <= out[len(out)-1].seq) || t.seq > math.MaxInt64 {
				return nil, corrupt("tombstone sequences not increasing")
			}
			out = append(out, t)
		}
	}
	return out, nil
}

func readProvenance(rr *recReader, s *state, count uint64) error {
	var prev Hash
	for i := uint64(0); i < count; i++ {
		var m fsmpb.SnapshotProvenance
		if err := rr.message(recProv, &m); err != nil {
			return err
		}
		h, err := HashFromBytes(m.GetHash())
		if err != nil {
			return corrupt("provenance: %v", err)
		}
		if i > 0 && h.Compare(prev) <= 0 {
			return corrupt("provenance not in strictly increasing hash order")
		}
		prev = h
		r := provRec{hash: h, pinnedBy: s.intern(m.GetPinnedBy()), claimedBy: s.intern(m.GetClaimedBy()),
			claimedAt: m.GetClaimedAtNs(), confirmedBy: s.intern(m.GetConfirmedBy()), confirmedAt: m.GetConfirmedAtNs()}
		for _, p := range []string{r.pinnedBy, r.claimedBy, r.confirmedBy} {
			if err := validatePrincipal("provenance", p); err != nil {
				return corrupt("%v", err)
			}
		}
		if r.empty() || r.claimedAt < 0 || r.claimedAt > s.clusterTime || r.confirmedAt < 0 || r.confirmedAt > s.clusterTime {
			return corrupt("provenance of %s out of range", h)
		}
		s.prov.ReplaceOrInsert(r)
	}
	return nil
}

// checkProvenance: each record belongs to a blob it can describe (pins to
// coordinator-pinned blobs, claims to DELETING or COLLECTED ones,
// confirmations to COLLECTED ones).
func checkProvenance(s *state) error {
	var err error
	s.prov.Ascend(func(r provRec) bool {
		id, ok := s.tab.lookup(&r.hash)
		if !ok {
			err = corrupt("provenance of unknown blob %s", r.hash)
			return false
		}
		e := s.tab.get(id)
		st := Status(e.status)
		switch {
		case r.pinnedBy != "" && e.flags&flagCPin == 0,
			(r.claimedBy != "" || r.claimedAt != 0) && st != StatusDeleting && st != StatusCollected,
			(r.confirmedBy != "" || r.confirmedAt != 0) && st != StatusCollected:
			err = corrupt("provenance of %s does not fit its status %s", r.hash, st)
			return false
		}
		return true
	})
	return err
}

func readCycleRequests(rr *recReader, s *state, count uint64) error {
	if count > CycleRequestWindow {
		return corrupt("%d cycle requests above the window %d", count, CycleRequestWindow)
	}
	seen := map[string]bool{}
	for i := uint64(0); i < count; i++ {
		var m fsmpb.SnapshotCycleRequest
		if err := rr.message(recCycle, &m); err != nil {
			return err
		}
		if m.GetRequestId() == "" || ValidateRequestID("cycle request", m.GetRequestId()) != nil || seen[m.GetRequestId()] {
			return corrupt("cycle request id %q invalid or repeated", m.GetRequestId())
		}
		seen[m.GetRequestId()] = true
		nm, err := UnpackHashes(m.GetNewlyMarked())
		if err != nil {
			return corrupt("cycle request: %v", err)
		}
		if len(nm) == 0 {
			nm = nil
		}
		stale := m.GetStaleNodes()
		if len(stale) == 0 {
			stale = nil
		}
		s.cycleReqs = append(s.cycleReqs, cycleReq{id: m.GetRequestId(), eligibleCount: int(m.GetEligibleCount()), res: CycleResult{
			Time: m.GetTimeNs(), NewlyMarked: nm, ActiveCount: int(m.GetActiveCount()), PinnedCount: int(m.GetPinnedCount()),
			UnreferencedCount: int(m.GetUnreferencedCount()), StaleNodes: stale, NodesReporting: int(m.GetNodesReporting()),
			Skipped: m.GetSkipped(),
		}})
	}
	return nil
}

// unrefRuns groups FIFO items sorted by since into runs of one since,
// sharing one id array.
func unrefRuns(items []unrefItem) []unrefRun {
	ids := make([]uint32, len(items))
	var runs []unrefRun
	start := 0
	for i := range items {
		ids[i] = items[i].id
		if i+1 == len(items) || items[i+1].since != items[i].since {
			runs = append(runs, unrefRun{since: items[i].since, ids: ids[start : i+1 : i+1]})
			start = i + 1
		}
	}
	return runs
}

// rebuildDerived recomputes counts, dangling, the MARKED set, the
// UNREFERENCED FIFO and the dirty list from the restored entries.
func (s *state) rebuildDerived(unref []unrefItem) {
	s.marked = btree.NewG[Hash](32, hashLess)
	for _, sh := range s.tab.shards {
		sh.each(func(_ uint32, e *entry) {
			s.counts[e.status]++
			if isDangling(e) {
				s.dangling++
			}
			if e.status == uint8(StatusMarked) {
				s.marked.ReplaceOrInsert(e.hash)
			}
		})
	}
	s.counts[StatusNotFound] = 0
	// Blobs arrive in hash order, so a stable sort by since is deterministic.
	slices.SortStableFunc(unref, func(a, b unrefItem) int {
		switch {
		case a.since < b.since:
			return -1
		case a.since > b.since:
			return 1
		}
		return 0
	})
	s.unref = unrefRuns(unref)
	for si, sh := range s.tab.shards {
		sh.each(func(l uint32, e *entry) {
			if !trackedStatus(e.status) {
				return
			}
			var want Status
			switch {
			case e.flags&flagCPin != 0 || e.pins > 0:
				want = StatusPinned
			case e.refs > 0:
				want = StatusActive
			default:
				want = StatusUnreferenced
			}
			cur := Status(e.status)
			if cur == StatusMarked {
				cur = StatusUnreferenced
			}
			if cur != want {
				e.flags |= flagDirty // the restored table is owned by s: no copy-on-write needed
				s.dirty.add(uint32(si)<<localBits | l)
			}
		})
	}
}
