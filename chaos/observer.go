package chaos

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/fsm"
)

// Tracker is what every observer checks, whichever way it reads the
// servers (Observer in process, WireObserver over gRPC): invariant 2 (no
// blob is marked before it has been unreferenced for the grace period, in
// cluster time; CheckGraceHistory and CheckClockRate finish the job from
// the cycle history) and that no term has two leaders. It also counts
// leader changes and the marks it checked. It is safe for concurrent use.
type Tracker struct {
	grace time.Duration

	mu         sync.Mutex
	track      map[any]map[Hash]*blobTrack // server instance -> blob -> what was seen
	leaders    map[uint64]string           // term -> leader id
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

// NewTracker checks marks against grace.
func NewTracker(grace time.Duration) *Tracker {
	return &Tracker{grace: grace, track: map[any]map[Hash]*blobTrack{}, leaders: map[uint64]string{}}
}

// SawLeader records that server id led term.
func (o *Tracker) SawLeader(term uint64, id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if prev, ok := o.leaders[term]; ok && prev != id {
		o.violations = append(o.violations, Violation{InvLeaderPerTerm, fmt.Sprintf("term %d has two leaders: %s and %s", term, prev, id)})
		return
	}
	o.leaders[term] = id
}

// Observe checks blob states that server id's instance showed, read between
// its cluster times before and after, against what that instance showed in
// earlier polls. Tracks are per instance (any comparable key): a restarted
// server replays its log from the start, a new, consistent sequence.
func (o *Tracker) Observe(id string, instance any, before, after int64, bs []fsm.BlobInfo) {
	o.mu.Lock()
	defer o.mu.Unlock()
	tr := o.track[instance]
	if tr == nil {
		tr = map[Hash]*blobTrack{}
		o.track[instance] = tr
	}
	grace := o.grace.Nanoseconds()
	for _, b := range bs {
		t := tr[b.Hash]
		if t == nil {
			t = &blobTrack{}
			tr[b.Hash] = t
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
			if t.seen && (t.status == fsm.StatusActive || t.status == fsm.StatusPinned || t.status == fsm.StatusUnreferenced) {
				o.marks++
				if t.hasRefAt && after-t.refAt < grace {
					o.violations = append(o.violations, Violation{2, fmt.Sprintf("server %s: %s marked by cluster time %d, only %v after it was seen referenced at %d",
						id, b.Hash, after, time.Duration(after-t.refAt), t.refAt)})
				}
				if t.since != 0 {
					o.marked = append(o.marked, MarkRecord{Server: id, Hash: b.Hash, Since: t.since, By: after})
					if after-t.since < grace {
						o.violations = append(o.violations, Violation{2, fmt.Sprintf("server %s: %s marked by cluster time %d, unreferenced since %d: %v < grace %v",
							id, b.Hash, after, t.since, time.Duration(after-t.since), o.grace)})
					}
				}
			}
		}
		t.status, t.seen = b.Status, true
	}
}

func (o *Tracker) polled() {
	o.mu.Lock()
	o.polls++
	o.mu.Unlock()
}

// Violations returns what the observer found.
func (o *Tracker) Violations() []Violation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Violation(nil), o.violations...)
}

// LeaderChanges is the number of terms with a leader seen, minus one.
func (o *Tracker) LeaderChanges() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return max(len(o.leaders)-1, 0)
}

// LeadersSeen is the number of terms with a leader seen: 0 means the
// leader-per-term check never ran.
func (o *Tracker) LeadersSeen() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.leaders)
}

// Marked returns the marks seen with their unreferenced episode.
func (o *Tracker) Marked() []MarkRecord {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]MarkRecord(nil), o.marked...)
}

// Marks is the number of mark transitions checked against the grace period.
func (o *Tracker) Marks() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.marks
}

// Polls is the number of polls of all servers done.
func (o *Tracker) Polls() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.polls
}

// runPolls calls poll every interval until stop is closed.
func runPolls(poll func(), stop <-chan struct{}, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		poll()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// Observer watches the servers of an in-process cluster from the side: it
// polls each server's state machine for the tracked blobs and each raft
// node for its term and role, and its Tracker checks what it saw.
type Observer struct {
	*Tracker
	servers func() []*cluster.Server
	blobs   func() []Hash
}

// NewObserver watches the servers servers() returns (nil entries are
// skipped) for the blobs blobs() returns.
func NewObserver(grace time.Duration, servers func() []*cluster.Server, blobs func() []Hash) *Observer {
	return &Observer{Tracker: NewTracker(grace), servers: servers, blobs: blobs}
}

// Run polls every interval until stop is closed.
func (o *Observer) Run(stop <-chan struct{}, interval time.Duration) {
	runPolls(o.Poll, stop, interval)
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
	o.polled()
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
	o.SawLeader(t1, s.ID())
}

// pollBlobs reads each blob between two reads of the cluster time, which
// bound the time of the state it shows.
func (o *Observer) pollBlobs(s *cluster.Server, blobs []Hash) {
	f := s.FSM()
	for _, h := range blobs {
		before := f.ClusterTime()
		b := f.Blob(h)
		after := f.ClusterTime()
		o.Observe(s.ID(), s, before, after, []fsm.BlobInfo{b})
	}
}
