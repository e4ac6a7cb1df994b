package fsm

import (
	"slices"
	"sync"

	"github.com/blobgc/blobgc/fsm/fsmpb"
	"github.com/google/btree"
	"github.com/hashicorp/raft"
)

// node is one node's kept report.
type node struct {
	id         string
	lastReport int64
	lastWall   int64
	seq        uint64
	lastChunk  uint64 // report_id of the last chunked report swapped in, for retries
	active     idSet
	pinned     idSet
}

// staged is a chunked full report being received.
type staged struct {
	nodeID   string
	reportID uint64
	next     uint32
	last     int64 // cluster time of the last chunk; the stage expires a stale threshold later
	active   []Hash
	pinned   []Hash
}

func (st *staged) size() int { return len(st.active) + len(st.pinned) }

type unrefItem struct {
	since int64
	id    uint32
}

// unrefRun is the blobs that one cycle made UNREFERENCED: they share since,
// so the FIFO keeps 4 bytes a blob, and a cycle hands over its planned list
// instead of copying it.
type unrefRun struct {
	since int64
	ids   []uint32
}

type tombItem struct {
	seq uint64
	id  uint32
}

// state is everything Apply changes. Fields marked "derived" are rebuilt by
// Restore and are not part of a snapshot.
type state struct {
	tab         *table
	nodes       map[string]*node
	staging     map[string]*staged
	config      Config
	clusterTime int64
	wallTime    int64
	applied     uint64
	counts      [numStatus]int // derived
	dangling    int            // derived
	history     []HistoryEvent // oldest first; append-only backing shared with frozen views
	nextHistSeq uint64
	tombs       []tombItem // FIFO of tombstones, oldest first; entries validated lazily
	tombHead    int
	nextTombSeq uint64
	dirty       idList              // derived: blobs whose status may differ from the next cycle's
	unref       []unrefRun          // derived: FIFO of UNREFERENCED blobs by since (validated lazily)
	unrefHead   int                 // derived: runs before it are consumed
	marked      *btree.BTreeG[Hash] // derived: MARKED blobs in hash order
	prov        *btree.BTreeG[provRec]
	cycleReqs   []cycleReq        // recent RunCycle request ids, oldest first
	names       map[string]string // derived: interned principals
	stagedTotal int               // derived: hashes staged by all nodes
	stageCheck  int64             // derived: no stage expires before this cluster time
	sum         digestSum         // derived: set hash of the state (see digest.go)
	members     memberHasher      // memberElem with the last node's prefix absorbed (see digest.go)
	touched     []touchedBlob     // blobs changed by the command being applied (see digest.go)
	scratch     [4][]uint32       // id lists reused by replaceSets
}

// FSM is the replicated GC state machine. It implements raft.FSM and
// raft.BatchingFSM. Queries may run concurrently with Apply.
type FSM struct {
	mu sync.RWMutex
	st *state
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

func hashLess(a, b Hash) bool { return cmpHash(a, b) < 0 }

func newState(cfg Config) *state {
	return &state{
		tab:         newTable(),
		nodes:       map[string]*node{},
		staging:     map[string]*staged{},
		config:      cfg,
		nextHistSeq: 1,
		nextTombSeq: 1,
		marked:      btree.NewG[Hash](32, hashLess),
		prov:        btree.NewG[provRec](32, provLess),
		names:       map[string]string{},
	}
}

// New returns an empty FSM with DefaultConfig.
func New() *FSM { return &FSM{st: newState(DefaultConfig())} }

// NewWithConfig returns an empty FSM with cfg (validated).
func NewWithConfig(cfg Config) (*FSM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &FSM{st: newState(cfg)}, nil
}

// Apply applies one log entry. It always returns a *Result.
func (f *FSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.applyLog(l)
}

// ApplyBatch applies several entries under one lock acquisition.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, l := range logs {
		out[i] = f.st.applyLog(l)
	}
	return out
}

// ApplyCommand encodes and applies cmd at index; for tests and tools that
// drive an FSM without raft.
func (f *FSM) ApplyCommand(index uint64, cmd *fsmpb.Command) *Result {
	b, err := Encode(cmd)
	if err != nil {
		e, _ := err.(*Error)
		if e == nil {
			e = errf(CodeInvalidArgument, "%v", err)
		}
		return &Result{Index: index, Err: e}
	}
	return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: b}).(*Result)
}

func (s *state) applyLog(l *raft.Log) (res *Result) {
	if l == nil {
		return &Result{Err: errf(CodeInvalidArgument, "nil log")}
	}
	res = &Result{Index: l.Index}
	if l.Index > s.applied {
		s.applied = l.Index
	}
	if l.Type != raft.LogCommand {
		return res
	}
	cmd, err := Decode(l.Data)
	if err != nil {
		res.Err = err.(*Error)
		return res
	}
	s.applyCmd(cmd, res)
	return res
}

func (s *state) applyCmd(cmd *fsmpb.Command, res *Result) {
	now := max(s.clusterTime, cmd.GetTimeNs())
	wall := cmd.GetWallTimeNs()
	by := s.intern(cmd.GetPrincipal())
	var e *Error
	switch c := cmd.GetCmd().(type) {
	case *fsmpb.Command_RegisterBlobs:
		res.Changed = s.register(c.RegisterBlobs.GetHashes())
	case *fsmpb.Command_Pin:
		res.Changed, e = s.pin(c.Pin.GetHashes(), by)
	case *fsmpb.Command_Unpin:
		res.Changed = s.unpin(c.Unpin.GetHashes())
	case *fsmpb.Command_Report:
		res.Changed, res.Duplicate, e = s.report(c.Report, now, wall)
	case *fsmpb.Command_DeregisterNode:
		s.deregister(c.DeregisterNode.GetNodeId())
	case *fsmpb.Command_RunCycle:
		id := c.RunCycle.GetRequestId()
		if r := s.findCycleReq(id); id != "" && r != nil {
			res.Cycle, res.Duplicate = s.replayCycle(r), true
			break
		}
		res.Cycle = s.commitCycle(s.plan(now), wall, by)
		if id != "" {
			s.rememberCycleReq(id, res.Cycle)
		}
	case *fsmpb.Command_PruneStaleNodes:
		res.Pruned = s.prune(now)
	case *fsmpb.Command_Claim:
		res.Claimed, res.Changed = s.claim(c.Claim.GetHashes(), by, now)
	case *fsmpb.Command_ConfirmCollected:
		res.Changed = s.confirm(c.ConfirmCollected.GetHashes(), by, now)
	case *fsmpb.Command_SetConfig:
		e = s.setConfig(c.SetConfig, by)
	}
	if e != nil {
		res.Err = e
		s.settleDigest()
		return
	}
	s.expireStages(now)
	s.clusterTime = now
	if wall != 0 {
		s.wallTime = wall
	}
	s.settleDigest()
}

// ---- per-blob bookkeeping ----

func isDangling(e *entry) bool {
	return (e.status == uint8(StatusDeleting) || e.status == uint8(StatusCollected)) && (e.refs > 0 || e.pins > 0)
}

// trackedStatus: statuses that a cycle recomputes.
func trackedStatus(st uint8) bool {
	return st >= uint8(StatusActive) && st <= uint8(StatusMarked)
}

func (s *state) setStatus(e *entry, to Status) {
	from := Status(e.status)
	if from == to {
		return
	}
	d := isDangling(e)
	if from != StatusNotFound {
		s.counts[from]--
	}
	if to != StatusNotFound {
		s.counts[to]++
	}
	if from == StatusMarked {
		s.marked.Delete(e.hash)
	}
	if to == StatusMarked {
		s.marked.ReplaceOrInsert(e.hash)
	}
	e.status = uint8(to)
	if to != StatusUnreferenced && to != StatusCollected {
		e.since = 0
	}
	if isDangling(e) != d {
		if d {
			s.dangling--
		} else {
			s.dangling++
		}
	}
}

func (s *state) markDirty(id uint32, e *entry) {
	if e.flags&flagDirty == 0 && trackedStatus(e.status) {
		e.flags |= flagDirty
		s.dirty.add(id)
	}
}

// addHold changes a blob's reference (pin=false) or node-pin count by
// +1/-1, as node nodeID's set gains or loses it.
func (s *state) addHold(nodeID string, id uint32, pin bool, delta int) {
	e := s.tab.mut(id) // counts are derived: not a digest change of the blob
	s.sum.add(s.members.memberElem(nodeID, pin, &e.hash), delta)
	d := isDangling(e)
	cnt := &e.refs
	if pin {
		cnt = &e.pins
	}
	if delta > 0 {
		*cnt++
		if *cnt == 1 {
			s.markDirty(id, e)
		}
	} else {
		*cnt--
		if *cnt == 0 {
			s.markDirty(id, e)
		}
	}
	if isDangling(e) != d {
		if d {
			s.dangling--
		} else {
			s.dangling++
		}
	}
	s.maybeFree(id, e)
}

// lastHold reports whether releasing one hold of e makes maybeFree forget it.
func lastHold(e *entry) bool {
	return e.status == uint8(StatusNotFound) && e.refs+e.pins == 1
}

// maybeFree forgets an entry that is neither known nor held by a report.
func (s *state) maybeFree(id uint32, e *entry) {
	if e.status == uint8(StatusNotFound) && e.refs == 0 && e.pins == 0 {
		s.tab.remove(id)
	}
}

// ---- commands ----

func (s *state) register(packed []byte) (changed int) {
	for h := range s.tab.toInsert(hashesOf(packed)) {
		id, created, ok := s.tab.insert(&h)
		if !ok {
			continue // shard full: cannot happen below 4G blobs
		}
		if created && s.tab.get(id).flags&flagTouched == 0 {
			// Most of a bulk registration: a new entry is not in the digest
			// yet, so its element is added now instead of through the
			// touched list. A repeat of the hash later in this command goes
			// through mutBlob, which takes this value as the old one.
			e := s.tab.mut(id)
			s.setStatus(e, StatusActive)
			e.flags |= flagReg
			s.markDirty(id, e)
			s.sum.add(blobElem(e), +1)
			changed++
			continue
		}
		e := s.mutBlob(id)
		switch Status(e.status) {
		case StatusNotFound, StatusCollected:
			if Status(e.status) == StatusCollected {
				s.updateProv(h, func(r *provRec) { *r = provRec{} })
			}
			s.setStatus(e, StatusActive)
			e.flags = (e.flags &^ flagCPin) | flagReg
			s.markDirty(id, e)
			changed++
		default:
			e.flags |= flagReg
		}
	}
	return changed
}

func (s *state) pin(packed []byte, by string) (int, *Error) {
	hs := hashesOf(packed)
	for h := range s.tab.inOrder(hs) {
		if id, ok := s.tab.lookup(&h); ok {
			if st := Status(s.tab.get(id).status); st == StatusDeleting || st == StatusCollected {
				return 0, errf(CodeFailedPrecondition, "blob %s is %s: it can no longer be pinned (register it again to re-upload)", h, st)
			}
		}
	}
	changed := 0
	for h := range s.tab.toInsert(hs) {
		id, _, ok := s.tab.insert(&h)
		if !ok {
			continue
		}
		e := s.mutBlob(id)
		if e.flags&flagCPin == 0 || Status(e.status) != StatusPinned {
			changed++
		}
		if e.flags&flagCPin == 0 {
			s.updateProv(h, func(r *provRec) { r.pinnedBy = by })
		}
		e.flags |= flagCPin
		s.setStatus(e, StatusPinned)
		s.markDirty(id, e)
	}
	return changed, nil
}

func (s *state) unpin(packed []byte) (changed int) {
	for h := range s.tab.inOrder(hashesOf(packed)) {
		id, ok := s.tab.lookup(&h)
		if !ok {
			continue
		}
		if e := s.tab.get(id); e.flags&flagCPin == 0 && Status(e.status) != StatusPinned {
			continue
		}
		e := s.mutBlob(id)
		was := e.flags&flagCPin != 0
		e.flags &^= flagCPin
		if was {
			s.updateProv(h, func(r *provRec) { r.pinnedBy = "" })
		}
		if Status(e.status) == StatusPinned && e.pins == 0 {
			s.setStatus(e, StatusActive)
			s.markDirty(id, e)
			changed++
		} else if was {
			changed++
		}
	}
	return changed
}

// claimable says whether a claim grants the blob: it is MARKED (the claim
// makes it DELETING) or already DELETING (a repeated claim), and at this
// point of the log no live report references it and no pin holds it.
func claimable(e *entry) bool {
	st := Status(e.status)
	return (st == StatusMarked || st == StatusDeleting) && e.refs == 0 && e.pins == 0 && e.flags&flagCPin == 0
}

func (s *state) claim(packed []byte, by string, now int64) (granted []Hash, changed int) {
	for h := range s.tab.inOrder(hashesOf(packed)) {
		id, ok := s.tab.lookup(&h)
		if !ok {
			continue
		}
		e := s.tab.get(id)
		if !claimable(e) {
			continue
		}
		granted = append(granted, h)
		if Status(e.status) == StatusMarked {
			s.setStatus(s.mutBlob(id), StatusDeleting)
			s.updateProv(h, func(r *provRec) { r.claimedBy, r.claimedAt = by, now })
			changed++
		}
	}
	sortHashes(granted)
	return slices.Compact(granted), changed
}

func (s *state) confirm(packed []byte, by string, now int64) (changed int) {
	for h := range s.tab.inOrder(hashesOf(packed)) {
		id, ok := s.tab.lookup(&h)
		if !ok || Status(s.tab.get(id).status) != StatusDeleting {
			continue
		}
		e := s.mutBlob(id)
		s.setStatus(e, StatusCollected)
		e.flags &^= flagCPin | flagReg
		s.updateProv(h, func(r *provRec) { r.confirmedBy, r.confirmedAt = by, now })
		e.since = int64(s.nextTombSeq)
		s.tombs = append(s.tombs, tombItem{seq: s.nextTombSeq, id: id})
		s.nextTombSeq++
		changed++
	}
	s.evictTombs()
	return changed
}

// evictTombs forgets the oldest tombstones beyond the limit.
func (s *state) evictTombs() {
	for s.counts[StatusCollected] > s.config.TombstoneLimit && s.tombHead < len(s.tombs) {
		t := s.tombs[s.tombHead]
		s.tombHead++
		if !s.tab.valid(t.id) {
			continue
		}
		if e := s.tab.get(t.id); Status(e.status) != StatusCollected || e.since != int64(t.seq) {
			continue
		}
		e := s.mutBlob(t.id)
		s.updateProv(e.hash, func(r *provRec) { *r = provRec{} })
		s.setStatus(e, StatusNotFound)
		e.since = 0
		s.maybeFree(t.id, e)
	}
	if s.tombHead > 64 && s.tombHead*2 > len(s.tombs) {
		// Compact into a new array: frozen views may share the old one.
		s.tombs = append([]tombItem(nil), s.tombs[s.tombHead:]...)
		s.tombHead = 0
	}
}

func (s *state) setConfig(sc *fsmpb.SetConfig, by string) *Error {
	c := s.config.Merge(sc)
	if err := c.Validate(); err != nil {
		return err.(*Error)
	}
	c.SetBy = by
	s.config = c
	s.stageCheck = 0 // the stale threshold may have changed
	s.evictTombs()
	s.trimHistory()
	return nil
}

// trimHistory keeps at most HistoryLimit events. Events that only repeat
// the eligible count (nothing newly marked, nothing skipped) go first,
// oldest first, then the oldest of the rest; the newest event always stays.
// So a flood of cycles while blobs wait to be claimed cannot push out the
// events that marked blobs or recorded a skip.
func (s *state) trimHistory() {
	over := len(s.history) - s.config.HistoryLimit
	if over <= 0 {
		return
	}
	// A new array: frozen views may share the old one.
	kept := make([]HistoryEvent, 0, len(s.history)-over)
	last := len(s.history) - 1
	for i := range s.history {
		ev := &s.history[i]
		if over > 0 && i < last && len(ev.NewlyMarked) == 0 && ev.Skipped == "" {
			s.digestHistory(ev, -1)
			over--
			continue
		}
		kept = append(kept, *ev)
	}
	for i := range kept[:over] {
		s.digestHistory(&kept[i], -1)
	}
	s.history = kept[over:]
}
