package chaos

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/fsm"
)

// The suites whose servers run outside the test process (system_test's
// processes, system_test/docker's containers) read them over the API: the
// wire observer, a server's role and term, and the end state.

// WireCluster is a cluster under test whose servers are read through their
// gRPC API, each server on its own (stale reads: what its state machine
// holds).
type WireCluster interface {
	// Up reports which servers to poll, and each one's incarnation, which
	// a restart bumps.
	Up() (up []bool, incarnation []int)
	// Name is server i's id, as violations name it.
	Name(i int) string
	// API is a client of server i alone.
	API(i int) blobgcv1.BlobGCClient
}

// WireSelf asks the server behind api, and only it, about itself: its raft
// state and term.
func WireSelf(ctx context.Context, api blobgcv1.BlobGCClient) (*blobgcv1.Member, uint64, error) {
	resp, err := api.Members(metadata.AppendToOutgoingContext(ctx, cluster.MemberSelfKey, "1"), &blobgcv1.MembersRequest{})
	if err != nil {
		return nil, 0, err
	}
	if len(resp.Members) != 1 {
		return nil, 0, fmt.Errorf("self members: %d members", len(resp.Members))
	}
	return resp.Members[0], resp.Term, nil
}

// WireLeader returns a server of c for which reachable is true and that
// says it leads (the one with the highest term if several do), or -1.
func WireLeader(c WireCluster, reachable func(i int) bool) int {
	best, bestTerm := -1, uint64(0)
	ups, _ := c.Up()
	for i := range ups {
		if !reachable(i) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		m, term, err := WireSelf(ctx, c.API(i))
		cancel()
		if err == nil && m.Leader && term >= bestTerm {
			best, bestTerm = i, term
		}
	}
	return best
}

// WaitWireLeader polls WireLeader every pause for up to d and returns the
// leader it found, or -1.
func WaitWireLeader(c WireCluster, reachable func(i int) bool, d, pause time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		if l := WireLeader(c, reachable); l >= 0 || time.Now().After(deadline) {
			return l
		}
		time.Sleep(pause)
	}
}

// WireDigests waits up to timeout for every server of c to show one digest
// at one applied index (invariant 4; cycles keep running, so it looks for
// a moment where all agree) and returns the violations of its last
// reading. It fails t when some server never answered.
func WireDigests(t testing.TB, c WireCluster, timeout time.Duration) []Violation {
	t.Helper()
	ups, _ := c.Up()
	n := len(ups)
	var idx []uint64
	var digests [][32]byte
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if idx, digests = wireDigests(c, n); len(idx) == n && len(CheckDigests(idx, digests)) == 0 {
			return nil
		}
	}
	if len(idx) != n {
		t.Fatalf("digests of %d of %d servers readable", len(idx), n)
	}
	return CheckDigests(idx, digests)
}

// wireDigests reads the applied index and digest of servers 0 to n-1, as
// close together as it can; it returns fewer when a server does not answer.
func wireDigests(c WireCluster, n int) ([]uint64, [][32]byte) {
	var idx []uint64
	var ds [][32]byte
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		d, err := c.API(i).Digest(ctx, &blobgcv1.DigestRequest{})
		cancel()
		if err != nil || len(d.Digest) != 32 {
			return idx, ds
		}
		idx, ds = append(idx, d.AppliedIndex), append(ds, [32]byte(d.Digest))
	}
	return idx, ds
}

// wireBlobInfo converts a wire status to the state machine's form (the wire
// enum is the fsm.Status plus one: 0 is UNSPECIFIED).
func wireBlobInfo(st *blobgcv1.BlobStatus) fsm.BlobInfo {
	return fsm.BlobInfo{Hash: fsm.Hash(st.Hash), Status: fsm.Status(st.State - 1), Since: st.UnreferencedSinceNs,
		CoordinatorPin: st.CoordinatorPin, ReferencedBy: st.ReferencedBy, PinnedBy: st.PinnedBy,
		Dangling: st.Dangling, Registered: st.Registered}
}

// wireListBlobs reads every blob the server behind api knows, with stale
// (local) reads.
func wireListBlobs(ctx context.Context, api blobgcv1.BlobGCClient) ([]*blobgcv1.BlobStatus, error) {
	var out []*blobgcv1.BlobStatus
	token := ""
	for {
		resp, err := api.ListBlobs(ctx, &blobgcv1.ListBlobsRequest{PageSize: 1000, PageToken: token, Consistency: blobgcv1.Consistency_CONSISTENCY_STALE})
		if err != nil {
			return nil, err
		}
		out = append(out, resp.Blobs...)
		if token = resp.NextPageToken; token == "" {
			return out, nil
		}
	}
}

// wireStatus is a server's end state as the checkers read it: one stale
// GetStatus per blob (ListBlobs pages leave out who references a blob).
type wireStatus struct {
	t     testing.TB
	api   blobgcv1.BlobGCClient
	cache map[fsm.Hash]fsm.BlobInfo
}

func (r *wireStatus) Blob(h fsm.Hash) fsm.BlobInfo {
	if b, ok := r.cache[h]; ok {
		return b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := r.api.GetStatus(ctx, &blobgcv1.GetStatusRequest{Hash: h[:], Consistency: blobgcv1.Consistency_CONSISTENCY_STALE})
	if err != nil {
		r.t.Fatalf("final status of %s: %v", h, err)
	}
	b := wireBlobInfo(st)
	r.cache[h] = b
	return b
}

// WireFinalState reads the end state of the server behind api and its
// cycle history, once all servers have converged (and the workload has
// stopped: only cycles change it).
func WireFinalState(t testing.TB, api blobgcv1.BlobGCClient) (FinalState, []fsm.HistoryEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var events []fsm.HistoryEvent
	token := ""
	for {
		resp, err := api.History(ctx, &blobgcv1.HistoryRequest{PageToken: token, Consistency: blobgcv1.Consistency_CONSISTENCY_STALE})
		if err != nil {
			t.Fatalf("final history: %v", err)
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
			return &wireStatus{t: t, api: api, cache: map[fsm.Hash]fsm.BlobInfo{}}, events
		}
	}
}

// WireObserver is Observer for a WireCluster: it polls every server that
// is up over the API (stale reads, which that server answers from its own
// state machine) for its blobs, cluster time and raft role, and its
// Tracker checks what it saw.
type WireObserver struct {
	*Tracker
	c     WireCluster
	blobs func() []Hash
}

// NewWireObserver watches c's servers for the blobs blobs() returns.
func NewWireObserver(c WireCluster, grace time.Duration, blobs func() []Hash) *WireObserver {
	return &WireObserver{Tracker: NewTracker(grace), c: c, blobs: blobs}
}

// Run polls every interval until stop is closed.
func (o *WireObserver) Run(stop <-chan struct{}, interval time.Duration) {
	runPolls(o.Poll, stop, interval)
}

// Poll looks at every server that is up once, in parallel, so that a
// server that hangs does not delay the others.
func (o *WireObserver) Poll() {
	ups, incs := o.c.Up()
	watched := map[Hash]bool{}
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
	o.polled()
}

// pollLeader records the term a server leads. Two self reads: when the
// first's term (read after its role) equals the second's (read after the
// second's role) and the second says leader, the role belongs to that term.
func (o *WireObserver) pollLeader(ctx context.Context, i int) {
	_, t1, err := WireSelf(ctx, o.c.API(i))
	if err != nil {
		return
	}
	m, t2, err := WireSelf(ctx, o.c.API(i))
	if err != nil || t1 != t2 || !m.Leader {
		return
	}
	o.SawLeader(t1, o.c.Name(i))
}

func (o *WireObserver) clusterTime(ctx context.Context, i int) (int64, error) {
	st, err := o.c.API(i).GetStats(ctx, &blobgcv1.GetStatsRequest{Consistency: blobgcv1.Consistency_CONSISTENCY_STALE})
	if err != nil {
		return 0, err
	}
	return st.ClusterTimeNs, nil
}

func (o *WireObserver) pollBlobs(ctx context.Context, i, inc int, watched map[Hash]bool) {
	before, err := o.clusterTime(ctx, i) // a lower bound of the time of the states read next
	if err != nil {
		return
	}
	bs, err := wireListBlobs(ctx, o.c.API(i))
	if err != nil {
		return
	}
	after, err := o.clusterTime(ctx, i) // an upper bound
	if err != nil {
		return
	}
	// A restart between the reads would mix two incarnations' states.
	if _, incs := o.c.Up(); incs[i] != inc {
		return
	}
	infos := make([]fsm.BlobInfo, 0, len(bs))
	for _, st := range bs {
		if b := wireBlobInfo(st); watched[b.Hash] {
			infos = append(infos, b)
		}
	}
	o.Observe(o.c.Name(i), [2]int{i, inc}, before, after, infos)
}
