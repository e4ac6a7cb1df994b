package dockertest

import (
	"context"
	"fmt"
	"sync"
	"time"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/chaos"
	"github.com/blobgc/blobgc/fsm"
)

// The end-state reader and the observer of the process chaos suite
// (system_test), copied: test packages cannot import each other. They read
// each server over the wire through its published port.

// statusReader is a server's end state as the checkers read it: one stale
// GetStatus per blob (ListBlobs pages leave out who references a blob).
type statusReader struct {
	e     *dockerEnv
	i     int
	cache map[fsm.Hash]fsm.BlobInfo
}

func (r *statusReader) Blob(h fsm.Hash) fsm.BlobInfo {
	if b, ok := r.cache[h]; ok {
		return b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := r.e.api[r.i].GetStatus(ctx, &blobgcv1.GetStatusRequest{Hash: h[:], Consistency: blobgcv1.Consistency_CONSISTENCY_STALE})
	if err != nil {
		r.e.t.Fatalf("final status of %s: %v", h, err)
	}
	b := blobInfo(st)
	r.cache[h] = b
	return b
}

// blobInfo converts a wire status to the state machine's form (the wire
// enum is the fsm.Status plus one: 0 is UNSPECIFIED).
func blobInfo(st *blobgcv1.BlobStatus) fsm.BlobInfo {
	return fsm.BlobInfo{Hash: fsm.Hash(st.Hash), Status: fsm.Status(st.State - 1), Since: st.UnreferencedSinceNs,
		CoordinatorPin: st.CoordinatorPin, ReferencedBy: st.ReferencedBy, PinnedBy: st.PinnedBy,
		Dangling: st.Dangling, Registered: st.Registered}
}

// listBlobs reads every known blob of server i with stale (local) reads.
func (e *dockerEnv) listBlobs(ctx context.Context, i int) ([]*blobgcv1.BlobStatus, error) {
	var out []*blobgcv1.BlobStatus
	token := ""
	for {
		resp, err := e.api[i].ListBlobs(ctx, &blobgcv1.ListBlobsRequest{PageSize: 1000, PageToken: token, Consistency: blobgcv1.Consistency_CONSISTENCY_STALE})
		if err != nil {
			return nil, err
		}
		out = append(out, resp.Blobs...)
		if token = resp.NextPageToken; token == "" {
			return out, nil
		}
	}
}

// finalState reads server 0's blobs and cycle history once all servers
// have converged (and the workload has stopped: only cycles change it).
func (e *dockerEnv) finalState() (*statusReader, []fsm.HistoryEvent) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := &statusReader{e: e, i: 0, cache: map[fsm.Hash]fsm.BlobInfo{}}
	var events []fsm.HistoryEvent
	token := ""
	for {
		resp, err := e.api[0].History(ctx, &blobgcv1.HistoryRequest{PageToken: token, Consistency: blobgcv1.Consistency_CONSISTENCY_STALE})
		if err != nil {
			e.t.Fatalf("final history: %v", err)
		}
		for _, ev := range resp.Events {
			he := fsm.HistoryEvent{Seq: ev.Seq, Time: ev.TimeNs, WallTime: ev.WallTimeNs, EligibleCount: int(ev.EligibleCount),
				Preserved: int(ev.Preserved), NodesReporting: int(ev.NodesReporting), Skipped: ev.Skipped}
			for _, h := range ev.NewlyMarked {
				he.NewlyMarked = append(he.NewlyMarked, fsm.Hash(h))
			}
			events = append(events, he)
		}
		if token = resp.NextPageToken; token == "" {
			return m, events
		}
	}
}

// dockerObserver is chaos.Observer for containers: it polls every running
// server over the wire (stale reads, which that server answers from its own
// state machine) for its blobs, cluster time and raft role, and checks
// invariant 2 (no mark before the grace period, in cluster time) and that
// no term has two leaders.
type dockerObserver struct {
	e     *dockerEnv
	grace time.Duration
	blobs func() []chaos.Hash

	mu      sync.Mutex
	track   map[[2]int]map[chaos.Hash]*dockerTrack // (server, incarnation) -> blob -> seen
	leaders map[uint64]string                      // term -> leader id
	vs      []chaos.Violation
	polls   int
	marks   int
	marked  []chaos.MarkRecord
}

type dockerTrack struct {
	status   fsm.Status
	seen     bool
	refAt    int64
	hasRefAt bool
	since    int64
}

func newDockerObserver(e *dockerEnv, grace time.Duration, blobs func() []chaos.Hash) *dockerObserver {
	return &dockerObserver{e: e, grace: grace, blobs: blobs, track: map[[2]int]map[chaos.Hash]*dockerTrack{},
		leaders: map[uint64]string{}}
}

func (o *dockerObserver) run(stop <-chan struct{}, interval time.Duration) {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		o.poll()
		select {
		case <-stop:
			return
		case <-tk.C:
		}
	}
}

// poll looks at every running server once, in parallel, so that a server
// that hangs does not delay the others.
func (o *dockerObserver) poll() {
	ups, incs := o.e.up()
	watched := map[chaos.Hash]bool{}
	for _, h := range o.blobs() {
		watched[h] = true
	}
	var wg sync.WaitGroup
	for i, up := range ups {
		if !up {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			o.pollLeader(ctx, i)
			o.pollBlobs(ctx, i, incs[i], watched)
		}()
	}
	wg.Wait()
	o.mu.Lock()
	o.polls++
	o.mu.Unlock()
}

// pollLeader records the term a server leads. Two self reads: when the
// first's term (read after its role) equals the second's (read after the
// second's role) and the second says leader, the role belongs to that term.
func (o *dockerObserver) pollLeader(ctx context.Context, i int) {
	_, t1, err := o.e.self(ctx, i)
	if err != nil {
		return
	}
	m, t2, err := o.e.self(ctx, i)
	if err != nil || t1 != t2 || !m.Leader {
		return
	}
	o.sawLeader(t1, o.e.c.services[i])
}

// sawLeader records that id led term.
func (o *dockerObserver) sawLeader(term uint64, id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if prev, ok := o.leaders[term]; ok && prev != id {
		o.vs = append(o.vs, chaos.Violation{Invariant: chaos.InvLeaderPerTerm, Msg: fmt.Sprintf("term %d has two leaders: %s and %s", term, prev, id)})
		return
	}
	o.leaders[term] = id
}

func (o *dockerObserver) clusterTime(ctx context.Context, i int) (int64, error) {
	st, err := o.e.api[i].GetStats(ctx, &blobgcv1.GetStatsRequest{Consistency: blobgcv1.Consistency_CONSISTENCY_STALE})
	if err != nil {
		return 0, err
	}
	return st.ClusterTimeNs, nil
}

func (o *dockerObserver) pollBlobs(ctx context.Context, i, inc int, watched map[chaos.Hash]bool) {
	before, err := o.clusterTime(ctx, i) // a lower bound of the time of the states read next
	if err != nil {
		return
	}
	bs, err := o.e.listBlobs(ctx, i)
	if err != nil {
		return
	}
	after, err := o.clusterTime(ctx, i) // an upper bound
	if err != nil {
		return
	}
	// A restart between the reads would mix two incarnations' states.
	if _, incs := o.e.up(); incs[i] != inc {
		return
	}
	infos := make([]fsm.BlobInfo, 0, len(bs))
	for _, st := range bs {
		if b := blobInfo(st); watched[b.Hash] {
			infos = append(infos, b)
		}
	}
	o.observe(o.e.c.services[i], [2]int{i, inc}, before, after, infos)
}

// observe checks one server instance's blob states, read between cluster
// times before and after, against what it showed in earlier polls.
func (o *dockerObserver) observe(id string, key [2]int, before, after int64, bs []fsm.BlobInfo) {
	o.mu.Lock()
	defer o.mu.Unlock()
	tr := o.track[key]
	if tr == nil {
		// A restarted server replays its log: a new, consistent sequence.
		tr = map[chaos.Hash]*dockerTrack{}
		o.track[key] = tr
	}
	grace := o.grace.Nanoseconds()
	for _, b := range bs {
		t := tr[b.Hash]
		if t == nil {
			t = &dockerTrack{}
			tr[b.Hash] = t
		}
		switch b.Status {
		case fsm.StatusActive, fsm.StatusPinned:
			t.refAt, t.hasRefAt, t.since = before, true, 0
		case fsm.StatusUnreferenced:
			t.since = b.Since
		case fsm.StatusMarked, fsm.StatusDeleting, fsm.StatusCollected:
			if t.seen && (t.status == fsm.StatusActive || t.status == fsm.StatusPinned || t.status == fsm.StatusUnreferenced) {
				o.marks++
				if t.hasRefAt && after-t.refAt < grace {
					o.vs = append(o.vs, chaos.Violation{Invariant: 2, Msg: fmt.Sprintf("server %s: %s marked by cluster time %d, only %v after it was seen referenced at %d",
						id, b.Hash, after, time.Duration(after-t.refAt), t.refAt)})
				}
				if t.since != 0 {
					o.marked = append(o.marked, chaos.MarkRecord{Server: id, Hash: b.Hash, Since: t.since, By: after})
					if after-t.since < grace {
						o.vs = append(o.vs, chaos.Violation{Invariant: 2, Msg: fmt.Sprintf("server %s: %s marked by cluster time %d, unreferenced since %d: %v < grace %v",
							id, b.Hash, after, t.since, time.Duration(after-t.since), o.grace)})
					}
				}
			}
		}
		t.status, t.seen = b.Status, true
	}
}

func (o *dockerObserver) violations() []chaos.Violation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]chaos.Violation(nil), o.vs...)
}

func (o *dockerObserver) leaderChanges() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return max(len(o.leaders)-1, 0)
}

func (o *dockerObserver) leadersSeen() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.leaders)
}

func (o *dockerObserver) markRecords() []chaos.MarkRecord {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]chaos.MarkRecord(nil), o.marked...)
}

func (o *dockerObserver) markCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.marks
}

func (o *dockerObserver) pollCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.polls
}
