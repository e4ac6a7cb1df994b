package fsm

import (
	"slices"
	"sort"
)

// Blob returns a blob's status and who protects it. A hash that is only
// named by reports (not registered or pinned) is NOT_FOUND with its
// referencing nodes listed.
func (f *FSM) Blob(h Hash) BlobInfo {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.st
	info := BlobInfo{Hash: h}
	id, ok := s.tab.lookup(&h)
	if !ok {
		return info
	}
	e := s.tab.get(id)
	info.Status = Status(e.status)
	if info.Status == StatusUnreferenced {
		info.Since = e.since
	}
	info.CoordinatorPin = e.flags&flagCPin != 0
	info.Registered = e.flags&flagReg != 0
	info.Dangling = isDangling(e)
	r := s.provenance(h)
	info.Provenance = Provenance{CoordinatorPinnedBy: r.pinnedBy, ClaimedBy: r.claimedBy, ClaimedAt: r.claimedAt,
		ConfirmedBy: r.confirmedBy, ConfirmedAt: r.confirmedAt}
	for _, nid := range s.sortedNodeIDs() {
		n := s.nodes[nid]
		if n.active.contains(id) {
			info.ReferencedBy = append(info.ReferencedBy, nid)
		}
		if n.pinned.contains(id) {
			info.PinnedBy = append(info.PinnedBy, nid)
		}
	}
	return info
}

func (s *state) sortedNodeIDs() []string {
	ids := make([]string, 0, len(s.nodes))
	for id := range s.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// DefaultListLimit is used when ListBlobs gets limit <= 0.
const DefaultListLimit = 1000

// ListBlobs returns up to limit blobs with the given status (StatusNotFound
// means any status, COLLECTED tombstones included) whose hash is greater than
// after, in hash order, and whether more follow. The zero Hash as after
// starts at the beginning (and includes the zero hash itself).
func (f *FSM) ListBlobs(status Status, after Hash, limit int) (blobs []BlobInfo, more bool) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.st
	start := after == Hash{}
	var page []Hash
	for si := int(after[0]); si < numShards; si++ {
		sh := s.tab.shards[si]
		var hs []Hash
		sh.each(func(_ uint32, e *entry) {
			if e.status == uint8(StatusNotFound) || (status != StatusNotFound && Status(e.status) != status) {
				return
			}
			if !start && e.hash.Compare(after) <= 0 {
				return
			}
			hs = append(hs, e.hash)
		})
		sortHashes(hs)
		page = append(page, hs...)
		if len(page) > limit {
			break
		}
	}
	if len(page) > limit {
		page, more = page[:limit], true
	}
	blobs = make([]BlobInfo, len(page))
	for i, h := range page {
		blobs[i] = s.blobInfoLocked(h)
	}
	return blobs, more
}

// blobInfoLocked is Blob without the explanation lists (cheap for pages).
func (s *state) blobInfoLocked(h Hash) BlobInfo {
	info := BlobInfo{Hash: h}
	id, ok := s.tab.lookup(&h)
	if !ok {
		return info
	}
	e := s.tab.get(id)
	info.Status = Status(e.status)
	if info.Status == StatusUnreferenced {
		info.Since = e.since
	}
	info.CoordinatorPin = e.flags&flagCPin != 0
	info.Registered = e.flags&flagReg != 0
	info.Dangling = isDangling(e)
	return info
}

// Counts returns blob counts by status and node counts.
func (f *FSM) Counts() Counts {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.st
	c := Counts{
		Active: s.counts[StatusActive], Pinned: s.counts[StatusPinned],
		Unreferenced: s.counts[StatusUnreferenced], Marked: s.counts[StatusMarked],
		Deleting: s.counts[StatusDeleting], Collected: s.counts[StatusCollected],
		DanglingRefs: s.dangling,
	}
	c.Known = c.Active + c.Pinned + c.Unreferenced + c.Marked + c.Deleting
	c.NodesStale = len(s.staleNodes(s.clusterTime))
	c.NodesReporting = len(s.nodes) - c.NodesStale
	return c
}

// Nodes lists the nodes with a kept report, sorted by id.
func (f *FSM) Nodes() []NodeInfo {
	nodes, _ := f.NodesPage("", 0)
	return nodes
}

// NodesPage returns up to limit nodes (0: all) whose id sorts after after,
// by id, and whether more follow.
func (f *FSM) NodesPage(after string, limit int) (nodes []NodeInfo, more bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.st
	ids := s.sortedNodeIDs()
	ids = ids[sort.SearchStrings(ids, after):]
	if len(ids) > 0 && ids[0] == after {
		ids = ids[1:]
	}
	if limit > 0 && len(ids) > limit {
		ids, more = ids[:limit], true
	}
	out := make([]NodeInfo, 0, len(ids))
	for _, id := range ids {
		n := s.nodes[id]
		out = append(out, NodeInfo{
			ID: id, LastReport: n.lastReport, LastWall: n.lastWall, Seq: n.seq,
			Active: n.active.len(), Pinned: n.pinned.len(),
			Stale: s.clusterTime-n.lastReport >= int64(s.config.StaleThreshold),
		})
	}
	return out, more
}

// AdmitsNode returns the error a report from node id would get for
// exceeding MaxNodes at the current state, or nil. The leader uses it to
// refuse a flood of new node ids without writing each to the log; the state
// machine checks again when the report applies.
func (f *FSM) AdmitsNode(id string) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if e := f.st.admitNode(id); e != nil {
		return e
	}
	return nil
}

// NodeSeq returns the sequence number of a node's last applied report.
func (f *FSM) NodeSeq(id string) (seq uint64, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if n := f.st.nodes[id]; n != nil {
		return n.seq, true
	}
	return 0, false
}

// History returns up to limit recorded cycles with Seq > after, oldest
// first, and whether more follow.
func (f *FSM) History(after uint64, limit int) (events []HistoryEvent, more bool) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	h := f.st.history
	i := sort.Search(len(h), func(i int) bool { return h[i].Seq > after })
	end := min(len(h), i+limit)
	events = append([]HistoryEvent(nil), h[i:end]...)
	return events, end < len(h)
}

// Config returns the replicated configuration.
func (f *FSM) Config() Config {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.config
}

// ClusterTime returns the cluster time (ns) after the last applied command.
func (f *FSM) ClusterTime() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.clusterTime
}

// AppliedIndex returns the raft index of the last applied entry.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.applied
}

// DryRunCycle returns what RunCycle stamped with cluster time now would do,
// without changing anything. now is raised to the current cluster time.
func (f *FSM) DryRunCycle(now int64) *CycleResult {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.plan(max(now, f.st.clusterTime)).result()
}

// IdleCycle reports whether a cycle at cluster time now would change
// nothing: no dirty blobs, no stale node to drop, no status change, nothing
// eligible (so no history event), no skip to record. When it is idle, the
// result it returns is known without applying the cycle; applying it would
// only advance the FIFO past entries that no longer apply, which the next
// applied cycle does just as well. Otherwise the result may be nil.
func (f *FSM) IdleCycle(now int64) (*CycleResult, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.st
	if s.dirty.len() != 0 {
		// Not idle, and planning a long dirty list (the first cycle after
		// a bulk registration) would cost as much as the cycle.
		return nil, false
	}
	p := s.plan(max(now, s.clusterTime))
	idle := !p.dropStale || len(p.stale) == 0
	if !p.belowMin {
		idle = idle && len(p.changes) == 0 && len(p.newUnref) == 0 && len(p.newly) == 0 && p.skipped == "" && len(p.eligible) == 0
	}
	return p.result(), idle
}

// ClaimIsNoop reports whether Claim(packed) would change nothing (no hash
// is MARKED and claimable), and if so what it would grant: the hashes
// already DELETING and still claimable, sorted.
func (f *FSM) ClaimIsNoop(packed []byte) (granted []Hash, noop bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.st
	for h := range s.tab.inOrder(hashesOf(packed)) {
		id, ok := s.tab.lookup(&h)
		if !ok {
			continue
		}
		if e := s.tab.get(id); claimable(e) {
			if Status(e.status) == StatusMarked {
				return nil, false
			}
			granted = append(granted, h)
		}
	}
	sortHashes(granted)
	return slices.Compact(granted), true
}

// ConfirmIsNoop reports whether ConfirmCollected(packed) would change
// nothing: none of the hashes is DELETING.
func (f *FSM) ConfirmIsNoop(packed []byte) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.st
	for h := range s.tab.inOrder(hashesOf(packed)) {
		if id, ok := s.tab.lookup(&h); ok && Status(s.tab.get(id).status) == StatusDeleting {
			return false
		}
	}
	return true
}
