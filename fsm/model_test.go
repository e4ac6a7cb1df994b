package fsm

import (
	"fmt"
	"slices"
	"sort"
)

// naive is a deliberately simple port of the seed's algorithm, extended with
// blobgc's commands: every cycle recomputes the global union over all
// reports and every known blob (O(all)). It has the pin fix (coordinator
// pins are a flag, node pins count only while a live report carries them).

type nNode struct {
	active, pinned map[Hash]bool
	last           int64
	seq            uint64
}

type nBlob struct {
	status Status
	since  int64
	cpin   bool
	reg    bool
}

type naive struct {
	cfg   Config
	now   int64
	nodes map[string]*nNode
	blobs map[Hash]*nBlob // known blobs and tombstones
	tombs []Hash          // tombstone order, oldest first
	hist  int
}

func newNaive(cfg Config) *naive {
	return &naive{cfg: cfg, nodes: map[string]*nNode{}, blobs: map[Hash]*nBlob{}}
}

func (m *naive) liveActive(h Hash) bool {
	for _, n := range m.nodes {
		if n.active[h] {
			return true
		}
	}
	return false
}

func (m *naive) livePinned(h Hash) bool {
	for _, n := range m.nodes {
		if n.pinned[h] {
			return true
		}
	}
	return false
}

func (m *naive) stale() []string {
	var out []string
	for id, n := range m.nodes {
		if m.now-n.last >= int64(m.cfg.StaleThreshold) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func (m *naive) register(hs []Hash) {
	for _, h := range hs {
		b := m.blobs[h]
		if b == nil || b.status == StatusCollected {
			if b != nil {
				m.tombs = slices.DeleteFunc(m.tombs, func(x Hash) bool { return x == h })
			}
			m.blobs[h] = &nBlob{status: StatusActive, reg: true}
			continue
		}
		b.reg = true
	}
}

func (m *naive) pin(hs []Hash) error {
	for _, h := range hs {
		if b := m.blobs[h]; b != nil && (b.status == StatusDeleting || b.status == StatusCollected) {
			return fmt.Errorf("collected")
		}
	}
	for _, h := range hs {
		b := m.blobs[h]
		if b == nil {
			b = &nBlob{}
			m.blobs[h] = b
		}
		b.cpin = true
		b.status = StatusPinned
		b.since = 0
	}
	return nil
}

func (m *naive) unpin(hs []Hash) {
	for _, h := range hs {
		b := m.blobs[h]
		if b == nil {
			continue
		}
		b.cpin = false
		if b.status == StatusPinned && !m.livePinned(h) {
			b.status = StatusActive
		}
	}
}

func (m *naive) full(id string, seq uint64, a, p []Hash) error {
	if n := m.nodes[id]; n != nil && seq < n.seq {
		return fmt.Errorf("old")
	}
	n := &nNode{active: map[Hash]bool{}, pinned: map[Hash]bool{}, last: m.now, seq: seq}
	for _, h := range a {
		n.active[h] = true
	}
	for _, h := range p {
		n.pinned[h] = true
	}
	m.nodes[id] = n
	return nil
}

// delta returns (duplicate, error).
func (m *naive) delta(id string, seq uint64, addA, remA, addP, remP []Hash) (bool, error) {
	n := m.nodes[id]
	if n == nil {
		return false, fmt.Errorf("no node")
	}
	if seq <= n.seq {
		return true, nil
	}
	if seq != n.seq+1 {
		return false, fmt.Errorf("gap")
	}
	for _, h := range remA {
		delete(n.active, h)
	}
	for _, h := range addA {
		n.active[h] = true
	}
	for _, h := range remP {
		delete(n.pinned, h)
	}
	for _, h := range addP {
		n.pinned[h] = true
	}
	n.seq, n.last = seq, m.now
	return false, nil
}

func (m *naive) prune() []string {
	if m.cfg.StalePolicy == StaleHold {
		return nil
	}
	st := m.stale()
	for _, id := range st {
		delete(m.nodes, id)
	}
	return st
}

func (m *naive) cycle(commit bool) *CycleResult {
	// The dry run works on a copy.
	if !commit {
		c := m.clone()
		return c.cycle(true)
	}
	now := m.now
	stale := m.stale()
	if m.cfg.StalePolicy == StaleDrop {
		for _, id := range stale {
			delete(m.nodes, id)
		}
	}
	fresh := len(m.nodes)
	if m.cfg.StalePolicy == StaleHold {
		fresh -= len(stale)
	}
	r := &CycleResult{Time: now, StaleNodes: stale, NodesReporting: fresh}
	if fresh < m.cfg.MinNodesReporting {
		r.Skipped = "below min_nodes_reporting"
		return r
	}
	active, pinned := map[Hash]bool{}, map[Hash]bool{}
	for _, n := range m.nodes {
		for h := range n.active {
			active[h] = true
		}
		for h := range n.pinned {
			pinned[h] = true
		}
	}
	for h, b := range m.blobs {
		switch b.status {
		case StatusActive, StatusPinned, StatusUnreferenced, StatusMarked:
		default:
			continue
		}
		switch {
		case b.cpin || pinned[h]:
			b.status, b.since = StatusPinned, 0
		case active[h]:
			b.status, b.since = StatusActive, 0
		case b.status == StatusUnreferenced || b.status == StatusMarked:
		default:
			b.status, b.since = StatusUnreferenced, now
		}
	}
	var newly []Hash
	known := 0
	for h, b := range m.blobs {
		if b.status != StatusCollected {
			known++
		}
		if b.status == StatusUnreferenced && now-b.since >= int64(m.cfg.GracePeriod) {
			newly = append(newly, h)
		}
	}
	if f := m.cfg.MaxEligibleFraction; f < 1 && float64(len(newly)) > f*float64(known) {
		r.Skipped = fmt.Sprintf("max_eligible_fraction exceeded: %d newly eligible of %d known blobs (%.4g > %g)",
			len(newly), known, float64(len(newly))/float64(known), f)
		newly = nil
	}
	for _, h := range newly {
		m.blobs[h].status, m.blobs[h].since = StatusMarked, 0
	}
	sortHashes(newly)
	r.NewlyMarked = newly
	for h, b := range m.blobs {
		switch b.status {
		case StatusActive:
			r.ActiveCount++
		case StatusPinned:
			r.PinnedCount++
		case StatusUnreferenced:
			r.UnreferencedCount++
		case StatusMarked:
			r.Eligible = append(r.Eligible, h)
		}
	}
	sortHashes(r.Eligible)
	if len(r.Eligible) > 0 || r.Skipped != "" {
		m.hist++
	}
	return r
}

func (m *naive) claim(hs []Hash) []Hash {
	var out []Hash
	for _, h := range hs {
		b := m.blobs[h]
		if b == nil || (b.status != StatusMarked && b.status != StatusDeleting) || b.cpin || m.liveActive(h) || m.livePinned(h) {
			continue
		}
		b.status = StatusDeleting
		out = append(out, h)
	}
	sortHashes(out)
	return slices.Compact(out)
}

func (m *naive) confirm(hs []Hash) {
	for _, h := range hs {
		b := m.blobs[h]
		if b == nil || b.status != StatusDeleting {
			continue
		}
		b.status, b.cpin, b.reg = StatusCollected, false, false
		m.tombs = append(m.tombs, h)
	}
	m.evict()
}

func (m *naive) evict() {
	for len(m.tombs) > m.cfg.TombstoneLimit {
		delete(m.blobs, m.tombs[0])
		m.tombs = m.tombs[1:]
	}
}

func (m *naive) info(h Hash) BlobInfo {
	info := BlobInfo{Hash: h}
	for _, id := range m.sortedNodes() {
		if m.nodes[id].active[h] {
			info.ReferencedBy = append(info.ReferencedBy, id)
		}
		if m.nodes[id].pinned[h] {
			info.PinnedBy = append(info.PinnedBy, id)
		}
	}
	b := m.blobs[h]
	if b == nil {
		return info
	}
	info.Status, info.CoordinatorPin, info.Registered = b.status, b.cpin, b.reg
	if b.status == StatusUnreferenced {
		info.Since = b.since
	}
	info.Dangling = (b.status == StatusDeleting || b.status == StatusCollected) && (len(info.ReferencedBy) > 0 || len(info.PinnedBy) > 0)
	return info
}

func (m *naive) counts() Counts {
	var c Counts
	for h, b := range m.blobs {
		switch b.status {
		case StatusActive:
			c.Active++
		case StatusPinned:
			c.Pinned++
		case StatusUnreferenced:
			c.Unreferenced++
		case StatusMarked:
			c.Marked++
		case StatusDeleting:
			c.Deleting++
		case StatusCollected:
			c.Collected++
		}
		if m.info(h).Dangling {
			c.DanglingRefs++
		}
	}
	c.Known = c.Active + c.Pinned + c.Unreferenced + c.Marked + c.Deleting
	c.NodesStale = len(m.stale())
	c.NodesReporting = len(m.nodes) - c.NodesStale
	return c
}

func (m *naive) sortedNodes() []string {
	var ids []string
	for id := range m.nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (m *naive) clone() *naive {
	c := &naive{cfg: m.cfg, now: m.now, nodes: map[string]*nNode{}, blobs: map[Hash]*nBlob{}, tombs: slices.Clone(m.tombs), hist: m.hist}
	for id, n := range m.nodes {
		cn := *n
		cn.active, cn.pinned = map[Hash]bool{}, map[Hash]bool{}
		for h := range n.active {
			cn.active[h] = true
		}
		for h := range n.pinned {
			cn.pinned[h] = true
		}
		c.nodes[id] = &cn
	}
	for h, b := range m.blobs {
		cb := *b
		c.blobs[h] = &cb
	}
	return c
}
