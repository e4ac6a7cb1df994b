package fsm

import (
	"fmt"
	"maps"
	"slices"
)

// A cycle is computed as a plan (no writes) and then committed, so that
// DryRunCycle and RunCycle share every decision.
//
// Cost: the plan visits the dirty list (blobs whose reference count, pin
// count or coordinator pin crossed zero, or that were registered, pinned or
// unpinned since the last cycle), the sets of nodes dropped as stale, and the
// prefix of the UNREFERENCED FIFO whose grace period has expired. Building
// Eligible walks the MARKED set. Nothing is proportional to the known blobs.

// statusChange is a planned change to a status other than UNREFERENCED;
// those are listed in cyclePlan.newUnref as bare ids, since they all start
// at the cycle's time. The first cycle after a bulk registration plans
// millions of them, and fresh memory is most of what such a cycle pays.
type statusChange struct {
	id uint32
	to uint8 // a Status
}

type cyclePlan struct {
	now       int64
	stale     []string
	dropStale bool
	reporting int
	belowMin  bool
	changes   []statusChange
	dirty     []uint32 // the dirty list, grouped by shard (byShard)
	newUnref  []uint32 // planned UNREFERENCED(now), in change order
	fifoEnd   int      // FIFO runs examined (consumed on commit)
	newly     []uint32 // ids to mark, sorted by hash on commit
	newlyHash []Hash   // sorted
	skipped   string
	counts    [numStatus]int
	eligible  []Hash
}

func (s *state) plan(now int64) *cyclePlan {
	p := &cyclePlan{now: now}
	p.stale = s.staleNodes(now)
	p.dropStale = s.config.StalePolicy == StaleDrop
	// Only fresh reports count toward min_nodes_reporting: a stale node held
	// by policy hold still protects its blobs but tells nothing new.
	p.reporting = len(s.nodes) - len(p.stale)
	// Under policy drop, the stale nodes' holds are subtracted virtually.
	var lostRefs, lostPins map[uint32]uint32
	if p.dropStale && len(p.stale) > 0 {
		lostRefs, lostPins = map[uint32]uint32{}, map[uint32]uint32{}
		for _, id := range p.stale {
			n := s.nodes[id]
			n.active.each(func(id uint32) { lostRefs[id]++ })
			n.pinned.each(func(id uint32) { lostPins[id]++ })
		}
	}
	if p.reporting < s.config.MinNodesReporting {
		p.belowMin = true
		p.skipped = "below min_nodes_reporting"
		return p
	}
	// target is the status the cycle gives a tracked blob; only blobs that
	// are dirty or lose holds with a dropped node can differ from now.
	target := func(id uint32, e *entry) Status {
		cur := Status(e.status)
		if e.flags&flagDirty == 0 && lostRefs[id] == 0 && lostPins[id] == 0 {
			return cur
		}
		refs, pins := e.refs-lostRefs[id], e.pins-lostPins[id]
		switch {
		case e.flags&flagCPin != 0 || pins > 0:
			return StatusPinned
		case refs > 0:
			return StatusActive
		case cur == StatusUnreferenced || cur == StatusMarked:
			return cur
		}
		return StatusUnreferenced
	}
	visit := func(id uint32, e *entry) {
		if !trackedStatus(e.status) {
			return
		}
		switch to := target(id, e); to {
		case Status(e.status):
		case StatusUnreferenced:
			p.newUnref = append(p.newUnref, id)
		default:
			p.changes = append(p.changes, statusChange{id: id, to: uint8(to)})
		}
	}
	// Most dirty blobs of a large cycle become UNREFERENCED (a bulk
	// registration), so that list gets the dirty list's length at once.
	p.newUnref = make([]uint32, 0, s.dirty.len())
	// The dirty list holds each id at most once (the flag is set exactly
	// while the id is listed), so nothing is visited twice.
	p.dirty = byShard(&s.dirty)
	for _, id := range p.dirty {
		if s.tab.valid(id) {
			if e := s.tab.get(id); e.flags&flagDirty != 0 {
				visit(id, e)
			}
		}
	}
	// In id order, not the maps': the order of planned changes is that of
	// the cycle's FIFO run.
	for _, id := range slices.Sorted(maps.Keys(lostRefs)) {
		if e := s.tab.get(id); e.flags&flagDirty == 0 {
			visit(id, e)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(lostPins)) {
		if e := s.tab.get(id); e.flags&flagDirty == 0 && lostRefs[id] == 0 {
			visit(id, e)
		}
	}
	// Counts after the planned changes.
	p.counts = s.counts
	for _, c := range p.changes {
		p.counts[s.tab.get(c.id).status]--
		p.counts[c.to]++
	}
	for _, id := range p.newUnref {
		p.counts[s.tab.get(id).status]--
		p.counts[StatusUnreferenced]++
	}
	// Newly eligible: FIFO prefix whose grace expired, still UNREFERENCED
	// with the same since; then blobs becoming UNREFERENCED now if grace is 0.
	grace := int64(s.config.GracePeriod)
	i := s.unrefHead
	for ; i < len(s.unref) && now-s.unref[i].since >= grace; i++ {
		run := &s.unref[i]
		for _, id := range run.ids {
			if !s.tab.valid(id) {
				continue
			}
			e := s.tab.get(id)
			if Status(e.status) != StatusUnreferenced || e.since != run.since {
				continue
			}
			if target(id, e) != StatusUnreferenced {
				continue
			}
			p.newly = append(p.newly, id)
		}
	}
	p.fifoEnd = i
	if grace <= 0 {
		p.newly = append(p.newly, p.newUnref...)
	}
	// Deduplicate (an id may appear twice in the FIFO with the same since).
	if len(p.newly) > 1 {
		slices.Sort(p.newly)
		p.newly = slices.Compact(p.newly)
	}
	known := p.counts[StatusActive] + p.counts[StatusPinned] + p.counts[StatusUnreferenced] + p.counts[StatusMarked] + p.counts[StatusDeleting]
	if f := s.config.MaxEligibleFraction; f < 1 && float64(len(p.newly)) > f*float64(known) {
		p.skipped = fmt.Sprintf("max_eligible_fraction exceeded: %d newly eligible of %d known blobs (%.4g > %g)",
			len(p.newly), known, float64(len(p.newly))/float64(known), f)
		p.newly = nil
	}
	for _, id := range p.newly {
		p.newlyHash = append(p.newlyHash, s.tab.get(id).hash)
	}
	sortHashes(p.newlyHash)
	p.counts[StatusUnreferenced] -= len(p.newly)
	p.counts[StatusMarked] += len(p.newly)
	// Eligible: currently MARKED minus those leaving MARKED, merged with newly.
	var prev []Hash
	s.marked.Ascend(func(h Hash) bool {
		if id, ok := s.tab.lookup(&h); ok && target(id, s.tab.get(id)) != StatusMarked {
			return true
		}
		prev = append(prev, h)
		return true
	})
	p.eligible = mergeSorted(prev, p.newlyHash)
	return p
}

// byShard returns ids grouped by shard in shard order, keeping their order
// within a shard (a counting sort on the shard byte). A large dirty list,
// such as the first cycle's after a bulk registration, then walks each
// shard's entry pages in order instead of jumping to another shard at every
// id. The order of a cycle's changes is not part of the state: statuses,
// counts and the digest do not depend on it, and FIFO items that share a
// time become eligible together. Short lists keep their order.
func byShard(ids *idList) []uint32 {
	if ids.len() < 1<<12 {
		return slices.Collect(ids.from(0))
	}
	var next [numShards + 1]int
	for id := range ids.from(0) {
		next[id>>localBits+1]++
	}
	for i := 1; i <= numShards; i++ {
		next[i] += next[i-1]
	}
	out := make([]uint32, ids.len())
	for id := range ids.from(0) {
		si := id >> localBits
		out[next[si]] = id
		next[si]++
	}
	return out
}

func mergeSorted(a, b []Hash) []Hash {
	if len(b) == 0 {
		return a
	}
	out := make([]Hash, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i].Compare(b[j]) <= 0 {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

func (p *cyclePlan) result() *CycleResult {
	r := &CycleResult{Time: p.now, StaleNodes: p.stale, NodesReporting: p.reporting, Skipped: p.skipped}
	if p.belowMin {
		return r
	}
	r.Eligible = p.eligible
	r.NewlyMarked = p.newlyHash
	r.ActiveCount = p.counts[StatusActive]
	r.PinnedCount = p.counts[StatusPinned]
	r.UnreferencedCount = p.counts[StatusUnreferenced]
	return r
}

// settleEvery is how many status changes a cycle makes between settling
// the digest. Settling is path-independent (the digest is a sum), so this
// only bounds the touched list: 64 bytes a blob, 640 MB for the first cycle
// after registering 10M blobs if settled once at the end.
const settleEvery = 1 << 16

// commitCycle applies a plan computed on the current state.
func (s *state) commitCycle(p *cyclePlan, wall int64, by string) *CycleResult {
	if p.dropStale {
		for _, id := range p.stale {
			s.dropNode(id)
		}
	}
	res := p.result()
	if p.belowMin {
		return res
	}
	changed := 0
	change := func(id uint32, to Status) *entry {
		if changed++; changed%settleEvery == 0 {
			s.settleDigest() // keeps the touched list short when a cycle changes millions
		}
		e := s.mutBlob(id)
		s.setStatus(e, to)
		return e
	}
	for _, c := range p.changes {
		change(c.id, Status(c.to))
	}
	for _, id := range p.newUnref {
		change(id, StatusUnreferenced).since = p.now
	}
	if len(p.newUnref) > 0 {
		ids := p.newUnref
		if cap(ids) > 2*len(ids)+64 {
			ids = slices.Clone(ids) // do not keep a long dirty list's capacity
		}
		s.unref = append(s.unref, unrefRun{since: p.now, ids: ids})
	}
	// p.dirty is the planned list in shard order, which keeps a long
	// list's walk local; dropping stale nodes above listed more ids after
	// it in s.dirty.
	for _, id := range p.dirty {
		s.tab.clearFlag(id, flagDirty) // free entries keep the flag too
	}
	for id := range s.dirty.from(len(p.dirty)) {
		s.tab.clearFlag(id, flagDirty)
	}
	s.dirty.reset()
	if p.skipped == "" {
		clear(s.unref[s.unrefHead:p.fifoEnd]) // frees the consumed runs' ids
		s.unrefHead = p.fifoEnd
		for _, id := range p.newly {
			s.setStatus(s.mutBlob(id), StatusMarked)
		}
	}
	s.compactUnref()
	if len(res.Eligible) > 0 || p.skipped != "" {
		s.history = append(s.history, HistoryEvent{
			Seq: s.nextHistSeq, Time: p.now, WallTime: wall, NewlyMarked: res.NewlyMarked,
			EligibleCount: len(res.Eligible), Preserved: res.ActiveCount + res.PinnedCount,
			NodesReporting: res.NodesReporting, Skipped: p.skipped, RunBy: by,
		})
		s.digestHistory(&s.history[len(s.history)-1], +1)
		s.nextHistSeq++
		s.trimHistory()
	}
	return res
}

func (s *state) compactUnref() {
	if s.unrefHead > 1024 && s.unrefHead*2 > len(s.unref) {
		s.unref = append([]unrefRun(nil), s.unref[s.unrefHead:]...)
		s.unrefHead = 0
	}
}
