package fsm

import (
	"math"
	"slices"

	"github.com/blobgc/blobgc/fsm/fsmpb"
)

// report applies a FULL, DELTA or CHUNK report.
func (s *state) report(r *fsmpb.Report, now, wall int64) (changed int, dup bool, e *Error) {
	id := r.GetNodeId()
	n := s.nodes[id]
	switch r.GetKind() {
	case fsmpb.ReportKind_REPORT_KIND_FULL:
		if n != nil && r.GetSeq() < n.seq {
			return 0, false, errf(CodeFailedPrecondition, "full report seq %d of node %q is older than its current seq %d", r.GetSeq(), id, n.seq)
		}
		if err := s.admitNode(id); err != nil {
			return 0, false, err
		}
		a, _ := UnpackHashes(r.GetActive())
		p, _ := UnpackHashes(r.GetPinned())
		s.dropStage(id)
		changed = s.replaceSets(id, a, p, r.GetSeq(), now, wall, 0)
		return changed, false, nil
	case fsmpb.ReportKind_REPORT_KIND_DELTA:
		if n == nil {
			return 0, false, errf(CodeFailedPrecondition, "delta seq %d from node %q which has no report: send a full report", r.GetSeq(), id)
		}
		if r.GetSeq() <= n.seq {
			return 0, true, nil
		}
		if r.GetSeq() != n.seq+1 {
			return 0, false, errf(CodeFailedPrecondition, "delta seq %d from node %q after seq %d: gap, send a full report", r.GetSeq(), id, n.seq)
		}
		changed = s.applyDelta(n, r)
		s.digestNode(n, -1)
		n.seq = r.GetSeq()
		n.lastReport = now
		n.lastWall = wall
		s.digestNode(n, +1)
		return changed, false, nil
	case fsmpb.ReportKind_REPORT_KIND_CHUNK:
		return s.chunk(n, r, now, wall)
	}
	return 0, false, errf(CodeInvalidArgument, "report kind %d unknown", int32(r.GetKind()))
}

func (s *state) chunk(n *node, r *fsmpb.Report, now, wall int64) (int, bool, *Error) {
	id := r.GetNodeId()
	st := s.staging[id]
	if st == nil || st.reportID != r.GetReportId() {
		if n != nil && n.lastChunk == r.GetReportId() {
			return 0, true, nil // a retry of a report already swapped in
		}
		if r.GetChunkIndex() != 0 {
			return 0, false, errf(CodeFailedPrecondition, "chunk %d of report %d from node %q: earlier chunks are missing, send the report again from chunk 0", r.GetChunkIndex(), r.GetReportId(), id)
		}
		st = &staged{nodeID: id, reportID: r.GetReportId()}
	}
	if r.GetChunkIndex() < st.next {
		return 0, true, nil
	}
	if r.GetChunkIndex() > st.next {
		return 0, false, errf(CodeFailedPrecondition, "chunk %d of report %d from node %q: expected chunk %d, send the report again from chunk 0", r.GetChunkIndex(), r.GetReportId(), id, st.next)
	}
	add := (len(r.GetActive()) + len(r.GetPinned())) / HashSize
	if st.size()+add > s.config.MaxStagedHashesPerNode {
		return 0, false, errf(CodeResourceExhausted, "chunked report %d from node %q: %d staged hashes would exceed max_staged_hashes_per_node %d",
			r.GetReportId(), id, st.size()+add, s.config.MaxStagedHashesPerNode)
	}
	total := s.stagedTotal + add
	if old := s.staging[id]; old != nil && old != st {
		total -= old.size() // replaced by this chunk's fresh stage
	}
	if total > s.config.MaxStagedHashesTotal {
		return 0, false, errf(CodeResourceExhausted, "chunked report %d from node %q: %d hashes staged by all nodes would exceed max_staged_hashes %d; retry after other reports complete",
			r.GetReportId(), id, total, s.config.MaxStagedHashesTotal)
	}
	if n != nil && r.GetSeq() < n.seq {
		return 0, false, errf(CodeFailedPrecondition, "full report seq %d of node %q is older than its current seq %d", r.GetSeq(), id, n.seq)
	}
	if err := s.admitNode(id); err != nil {
		return 0, false, err
	}
	// A fresh stage replaces any other one of this node only now that the
	// chunk is known to be accepted. (Frozen views hold copies of the stage
	// with capped slices, so appending here cannot show in them.)
	if s.staging[id] != st {
		s.dropStage(id)
		s.staging[id] = st
	} else {
		s.sum.add(stageElem(st), -1)
	}
	a, _ := UnpackHashes(r.GetActive())
	p, _ := UnpackHashes(r.GetPinned())
	fromA, fromP := len(st.active), len(st.pinned)
	st.active = append(st.active, a...)
	st.pinned = append(st.pinned, p...)
	st.next++
	st.last = now
	s.stagedTotal += add
	s.stageCheck = min(s.stageCheck, addSat(now, int64(s.config.StaleThreshold)))
	s.sum.add(stageElem(st), +1)
	s.digestStagedHashes(st, fromA, fromP, +1)
	if !r.GetLastChunk() {
		return 0, false, nil
	}
	s.dropStage(id)
	return s.replaceSets(id, st.active, st.pinned, r.GetSeq(), now, wall, st.reportID), false, nil
}

// admitNode refuses a report that would add a node beyond MaxNodes. Nodes
// count once whether they have a report, a staged one or both.
func (s *state) admitNode(id string) *Error {
	if s.nodes[id] != nil || s.staging[id] != nil || len(s.nodes) < s.config.MaxNodes-len(s.staging) {
		return nil
	}
	known := len(s.nodes)
	for sid := range s.staging {
		if s.nodes[sid] == nil {
			known++
		}
	}
	if known >= s.config.MaxNodes {
		return errf(CodeResourceExhausted, "node %q would be node %d, above max_nodes %d: deregister or prune nodes, or raise max_nodes",
			id, known+1, s.config.MaxNodes)
	}
	return nil
}

// dropStage discards a node's staged chunked report, if any.
func (s *state) dropStage(id string) {
	st := s.staging[id]
	if st == nil {
		return
	}
	delete(s.staging, id)
	s.stagedTotal -= st.size()
	s.sum.add(stageElem(st), -1)
	s.digestStagedHashes(st, 0, 0, -1)
}

// expireStages drops the staged chunked reports whose last chunk is at
// least the stale threshold older than now. stageCheck is a lower bound of
// the earliest expiry, so most commands skip the scan.
func (s *state) expireStages(now int64) {
	if len(s.staging) == 0 || now < s.stageCheck {
		return
	}
	thr := int64(s.config.StaleThreshold)
	next := int64(math.MaxInt64)
	var expired []string
	for id, st := range s.staging {
		if now-st.last >= thr {
			expired = append(expired, id)
		} else {
			next = min(next, st.last+thr)
		}
	}
	for _, id := range expired { // the order does not matter: each is dropped whole
		s.dropStage(id)
	}
	s.stageCheck = next
}

// addSat is a + b for b >= 0, saturating at math.MaxInt64.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// replaceSets installs a node's full sets and updates reference counts by
// the difference to its previous sets.
func (s *state) replaceSets(id string, active, pinned []Hash, seq uint64, now, wall int64, chunkID uint64) int {
	old := s.nodes[id]
	n := &node{id: id, seq: seq, lastReport: now, lastWall: wall, lastChunk: chunkID}
	if old != nil && chunkID == 0 {
		n.lastChunk = old.lastChunk
	}
	if old != nil {
		s.digestNode(old, -1)
	}
	s.digestNode(n, +1)
	newA, newP := s.keysOf(active, s.scratch[0][:0]), s.keysOf(pinned, s.scratch[1][:0])
	oldA, oldP := s.scratch[2][:0], s.scratch[3][:0]
	var oldSetA, oldSetP idSet
	if old != nil {
		oldSetA, oldSetP = old.active, old.pinned
		oldA, oldP = oldSetA.appendKeys(oldA), oldSetP.appendKeys(oldP)
	}
	n.active, n.pinned = setOf(oldSetA, oldA, newA), setOf(oldSetP, oldP, newP)
	// All additions before any removal: a removal may free an entry that an
	// addition in the other set still needs. The sets are compared as sorted
	// key lists: cheaper than bitmap differences, which clone containers.
	changed := s.holdMissing(id, newA, oldA, false, +1) + s.holdMissing(id, newP, oldP, true, +1)
	changed += s.holdMissing(id, oldA, newA, false, -1) + s.holdMissing(id, oldP, newP, true, -1)
	for i, l := range [][]uint32{newA, newP, oldA, oldP} {
		if cap(l) <= maxScratch {
			s.scratch[i] = l
		}
	}
	s.nodes[id] = n
	return changed
}

// maxScratch bounds the id lists kept for the next full report, so that one
// large report does not pin its lists' memory.
const maxScratch = 1 << 16

// keysOf appends to dst (empty) the set keys of hs, inserting absent hashes,
// sorted and without duplicates.
func (s *state) keysOf(hs []Hash, dst []uint32) []uint32 {
	for h := range s.tab.toInsert(hs) {
		if id, _, ok := s.tab.insert(&h); ok {
			dst = append(dst, id)
		}
	}
	return slices.Compact(sortedKeys(dst))
}

// setOf returns prev if it holds exactly keys (prevKeys are its keys), so
// that a repeated full report keeps its sets, else a new set of keys.
func setOf(prev idSet, prevKeys, keys []uint32) idSet {
	if prev.bm != nil && slices.Equal(prevKeys, keys) {
		return prev
	}
	return setOfKeys(keys)
}

// holdMissing changes by delta the holds of the blobs whose keys are in
// sorted list a but not in sorted list b: in key order, or for many in id
// order, so that they touch the table shard by shard.
func (s *state) holdMissing(nodeID string, a, b []uint32, pin bool, delta int) int {
	var buf [warmChunk]uint32
	missing := buf[:0]
	j := 0
	for _, k := range a {
		for j < len(b) && b[j] < k {
			j++
		}
		if j == len(b) || b[j] != k {
			missing = append(missing, k)
		}
	}
	if len(missing) >= idOrderFrom {
		missing = idOrder(missing)
	}
	for i, k := range missing {
		missing[i] = keyID(k)
	}
	s.changeHolds(nodeID, missing, pin, delta)
	return len(missing)
}

// idOrderFrom is the list length from which holdMissing sorts by id: a
// sort that pays once lists outgrow the caches.
const idOrderFrom = 4096

// changeHolds changes by delta node nodeID's holds of ids, warmChunk at a
// time, each chunk's entries warmed first (table.warmIDs) and, for
// releases, the slots of those the release frees.
func (s *state) changeHolds(nodeID string, ids []uint32, pin bool, delta int) {
	var freed func(*entry) bool
	if delta < 0 {
		freed = lastHold
	}
	for lo := 0; lo < len(ids); lo += warmChunk {
		chunk := ids[lo:min(len(ids), lo+warmChunk)]
		s.tab.warmIDs(chunk, freed)
		for _, id := range chunk {
			s.addHold(nodeID, id, pin, delta)
		}
	}
}

// dropHolds removes node nodeID's holds of the members of set.
func (s *state) dropHolds(nodeID string, set idSet, pin bool) {
	s.changeHolds(nodeID, set.ids(), pin, -1)
}

func (s *state) applyDelta(n *node, r *fsmpb.Report) int {
	changed := 0
	for _, set := range []struct {
		add, rem []byte
		ids      idSet
		pin      bool
	}{
		{r.GetActive(), r.GetRemovedActive(), n.active, false},
		{r.GetPinned(), r.GetRemovedPinned(), n.pinned, true},
	} {
		// Removals first: a hash both removed and added ends up present.
		for h := range s.tab.inOrder(hashesOf(set.rem)) {
			if id, ok := s.tab.lookup(&h); ok && set.ids.remove(id) {
				s.addHold(n.id, id, set.pin, -1)
				changed++
			}
		}
		for h := range s.tab.toInsert(hashesOf(set.add)) {
			id, created, ok := s.tab.insert(&h)
			if !ok {
				continue
			}
			if set.ids.add(id) {
				s.addHold(n.id, id, set.pin, +1)
				changed++
			} else if created {
				s.maybeFree(id, s.tab.get(id))
			}
		}
	}
	return changed
}

// dropNode removes a node's report and the holds of its sets.
func (s *state) dropNode(id string) {
	n := s.nodes[id]
	if n == nil {
		return
	}
	delete(s.nodes, id)
	s.digestNode(n, -1)
	s.dropHolds(id, n.active, false)
	s.dropHolds(id, n.pinned, true)
}

func (s *state) deregister(id string) {
	s.dropNode(id)
	s.dropStage(id)
}

// staleNodes lists, sorted, the nodes whose report is at least the stale
// threshold old at now.
func (s *state) staleNodes(now int64) []string {
	var out []string
	for id, n := range s.nodes {
		if now-n.lastReport >= int64(s.config.StaleThreshold) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// prune drops stale nodes under policy drop; under hold it drops nothing.
func (s *state) prune(now int64) []string {
	if s.config.StalePolicy == StaleHold {
		return nil
	}
	stale := s.staleNodes(now)
	for _, id := range stale {
		s.dropNode(id)
	}
	return stale
}
