package chaos

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/fsm"
)

// Observer watches the servers of an in-process cluster from the side: it
// polls each server's state machine for the tracked blobs and each raft
// node for its term and role. From that it checks invariant 2 (no blob is
// marked before it has been unreferenced for the grace period, in cluster
// time; CheckGraceHistory and CheckClockRate finish the job from the
// cycle history) and that no term has two leaders, and it counts
// leader changes.
type Observer struct {
	grace   time.Duration
	servers func() []*cluster.Server
	blobs   func() []Hash

	mu         sync.Mutex
	track      map[*cluster.Server]map[Hash]*blobTrack // server instance -> blob -> what was seen
	leaders    map[uint64]string                       // term -> leader id
	violations []Violation
	polls      int
	marks      int // mark transitions checked
	marked     []MarkRecord
}

// MarkRecord is a mark seen by the observer after it saw the blob's
// unreferenced episode start.
type MarkRecord struct {
	Server string
	Hash   Hash
	Since  int64 // the UNREFERENCED since (cluster ns) seen before the mark
	By     int64 // the mark's cycle ran at or before this cluster time
}

type blobTrack struct {
	status   fsm.Status
	seen     bool
	refAt    int64 // cluster time of the last state that showed it ACTIVE or PINNED (a lower bound)
	since    int64 // the UNREFERENCED since of the current episode, 0 if none seen
	hasRefAt bool
}

// NewObserver watches the servers servers() returns (nil entries are
// skipped) for the blobs blobs() returns.
func NewObserver(grace time.Duration, servers func() []*cluster.Server, blobs func() []Hash) *Observer {
	return &Observer{grace: grace, servers: servers, blobs: blobs,
		track: map[*cluster.Server]map[Hash]*blobTrack{}, leaders: map[uint64]string{}}
}

// Run polls every interval until stop is closed.
func (o *Observer) Run(stop <-chan struct{}, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		o.Poll()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// Poll looks at every server once.
func (o *Observer) Poll() {
	blobs := o.blobs()
	for _, s := range o.servers() {
		if s == nil {
			continue
		}
		o.pollLeader(s)
		o.pollBlobs(s, blobs)
	}
	o.mu.Lock()
	o.polls++
	o.mu.Unlock()
}

func (o *Observer) pollLeader(s *cluster.Server) {
	r := s.Raft()
	// Both term reads equal: the role seen between them belongs to that
	// term (a term only grows, and a new term starts before a new role).
	t1 := r.CurrentTerm()
	st := r.State()
	t2 := r.CurrentTerm()
	if t1 != t2 || st != raft.Leader {
		return
	}
	o.sawLeader(t1, s.ID())
}

// sawLeader records that id led term.
func (o *Observer) sawLeader(term uint64, id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if prev, ok := o.leaders[term]; ok && prev != id {
		o.violations = append(o.violations, Violation{InvLeaderPerTerm, fmt.Sprintf("term %d has two leaders: %s and %s", term, prev, id)})
		return
	}
	o.leaders[term] = id
}

func (o *Observer) pollBlobs(s *cluster.Server, blobs []Hash) {
	f := s.FSM()
	// Tracks are per server instance: a restarted server replays its log
	// from the start, and that is a new, consistent sequence of states.
	o.mu.Lock()
	tr := o.track[s]
	if tr == nil {
		tr = map[Hash]*blobTrack{}
		o.track[s] = tr
	}
	o.mu.Unlock()
	for _, h := range blobs {
		before := f.ClusterTime() // a lower bound of the time of the state read next
		b := f.Blob(h)
		after := f.ClusterTime() // an upper bound

		o.mu.Lock()
		t := tr[h]
		if t == nil {
			t = &blobTrack{}
			tr[h] = t
		}
		switch b.Status {
		case fsm.StatusActive, fsm.StatusPinned:
			// A cycle (or a register or pin) saw it referenced at or before
			// this state; the cycle that first sees it unreferenced again
			// comes later, so its since is at least `before`.
			t.refAt, t.hasRefAt, t.since = before, true, 0
		case fsm.StatusUnreferenced:
			t.since = b.Since
		case fsm.StatusMarked, fsm.StatusDeleting, fsm.StatusCollected:
			newlyMarked := t.seen && (t.status == fsm.StatusActive || t.status == fsm.StatusPinned || t.status == fsm.StatusUnreferenced)
			if newlyMarked {
				o.marks++
				grace := o.grace.Nanoseconds()
				if t.hasRefAt && after-t.refAt < grace {
					o.violations = append(o.violations, Violation{2, fmt.Sprintf("server %s: %s marked by cluster time %d, only %v after it was seen referenced at %d",
						s.ID(), h, after, time.Duration(after-t.refAt), t.refAt)})
				}
				if t.since != 0 {
					o.marked = append(o.marked, MarkRecord{Server: s.ID(), Hash: h, Since: t.since, By: after})
				}
				if t.since != 0 && after-t.since < grace {
					o.violations = append(o.violations, Violation{2, fmt.Sprintf("server %s: %s marked by cluster time %d, unreferenced since %d: %v < grace %v",
						s.ID(), h, after, t.since, time.Duration(after-t.since), o.grace)})
				}
			}
		}
		t.status, t.seen = b.Status, true
		o.mu.Unlock()
	}
}

// Violations returns what the observer found.
func (o *Observer) Violations() []Violation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Violation(nil), o.violations...)
}

// LeaderChanges is the number of terms with a leader seen, minus one.
func (o *Observer) LeaderChanges() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return max(len(o.leaders)-1, 0)
}

// Marked returns the marks seen with their unreferenced episode.
func (o *Observer) Marked() []MarkRecord {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]MarkRecord(nil), o.marked...)
}

// Marks is the number of mark transitions checked against the grace period.
func (o *Observer) Marks() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.marks
}
