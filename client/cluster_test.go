package client

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// followers returns the addresses of the servers that are not the leader.
func followers(t *testing.T, tc *clustertest.Cluster) (leader string, out []string) {
	t.Helper()
	for _, s := range tc.Servers {
		if s.IsLeader() {
			leader = s.Addr()
		} else {
			out = append(out, s.Addr())
		}
	}
	if leader == "" {
		t.Fatal("no leader")
	}
	return leader, out
}

func TestClusterWritesThroughFollowers(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{N: 3})
	leader, fol := followers(t, tc)
	c := newTestClient(t, fol)
	ctx, cancel := context.WithTimeout(context.Background(), testtiming.Hang())
	defer cancel()

	hs := hashesN(0, 3)
	if _, err := c.RegisterBlobs(ctx, hs); err != nil {
		t.Fatal(err)
	}
	if c.Leader() != leader {
		t.Fatalf("Leader() = %q, want %q", c.Leader(), leader)
	}
	if _, err := c.Pin(ctx, hs[:1]); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx, hs[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.State != blobgcv1.BlobState_BLOB_STATE_PINNED || !st.CoordinatorPin {
		t.Fatalf("status %v, want PINNED with a coordinator pin", st)
	}
	if _, err := c.Unpin(ctx, hs[:1]); err != nil {
		t.Fatal(err)
	}
	stats, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Known != 3 {
		t.Fatalf("stats %v, want 3 known", stats)
	}
	var n int
	for b, err := range c.ListBlobs(ctx, blobgcv1.BlobState_BLOB_STATE_UNSPECIFIED) {
		if err != nil {
			t.Fatal(err)
		}
		if b.Hash == nil {
			t.Fatal("blob without hash")
		}
		n++
	}
	if n != 3 {
		t.Fatalf("ListBlobs yielded %d, want 3", n)
	}
	// A stale read from one follower answers from its own state.
	d, err := c.DigestOf(ctx, fol[0])
	if err != nil || len(d.Digest) == 0 {
		t.Fatalf("DigestOf: %v %v", d, err)
	}
	if _, err := c.Status(ctx, hs[1], Stale()); err != nil {
		t.Fatal(err)
	}
	_, err = c.Pin(ctx, []Hash{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty pin: %v, want InvalidArgument", err)
	}
}

// The whole sweep as a VM node and a sweeper see it, through the client.
func TestClusterReportCycleClaimConfirm(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{N: 3})
	_, fol := followers(t, tc)
	c := newTestClient(t, fol)
	ctx, cancel := context.WithTimeout(context.Background(), testtiming.Hang())
	defer cancel()
	if _, err := c.SetConfig(ctx, &blobgcv1.SetConfigRequest{GracePeriodNs: ptr(int64(0))}); err != nil {
		t.Fatal(err)
	}
	hs := hashesN(0, 4)
	if _, err := c.RegisterBlobs(ctx, hs); err != nil {
		t.Fatal(err)
	}
	r := c.Reporter("vm-1")
	if err := r.Full(ctx, hs[:2], nil); err != nil {
		t.Fatal(err)
	}
	dry, err := c.RunCycle(ctx, true)
	if err != nil || !dry.DryRun {
		t.Fatalf("dry run: %v %v", dry, err)
	}
	// Two cycles: the first sees hs[2:] unreferenced, the second (grace 0)
	// marks them.
	for i := 0; i < 2; i++ {
		if _, err := c.RunCycle(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	var eligible []Hash
	for h, err := range c.ListEligible(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		eligible = append(eligible, h)
	}
	if len(eligible) != 2 || eligible[0] != hs[2] || eligible[1] != hs[3] {
		t.Fatalf("eligible %v, want %v", eligible, hs[2:])
	}
	// hs[3] is referenced again before the claim: it is not granted.
	if err := r.Delta(ctx, hs[3:], nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	granted, _, err := c.Claim(ctx, eligible)
	if err != nil {
		t.Fatal(err)
	}
	if len(granted) != 1 || granted[0] != hs[2] {
		t.Fatalf("granted %v, want only %v", granted, hs[2])
	}
	if _, err := c.ConfirmCollected(ctx, granted); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx, hs[2])
	if err != nil || st.State != blobgcv1.BlobState_BLOB_STATE_COLLECTED {
		t.Fatalf("status %v %v, want COLLECTED", st, err)
	}
	var events int
	for _, err := range c.History(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		events++
	}
	if events != 2 {
		t.Fatalf("%d history events, want 2", events)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Id != "vm-1" || nodes[0].Active != 3 || nodes[0].Seq != r.Seq() {
		t.Fatalf("nodes %v (err %v), want vm-1 with 3 active at seq %d", nodes, err, r.Seq())
	}
	if _, err := c.DeregisterNode(ctx, "vm-1"); err != nil {
		t.Fatal(err)
	}
	if pr, err := c.PruneStaleNodes(ctx); err != nil || len(pr.Pruned) != 0 {
		t.Fatalf("prune: %v %v", pr, err)
	}
}

func ptr[T any](v T) *T { return &v }

// A full report too large for one request arrives whole, in chunks; deltas
// follow it; a refused delta falls back to a full report; a restarted node
// (new Reporter) continues after the cluster's sequence number.
func TestClusterReporter(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{N: 3})
	_, fol := followers(t, tc)
	c := newTestClient(t, fol, WithChunkSize(1000))
	ctx, cancel := context.WithTimeout(context.Background(), testtiming.Hang())
	defer cancel()

	active, pinned := hashesN(0, 2500), hashesN(10000, 600)
	r := c.Reporter("vm-1")
	if err := r.Full(ctx, active, pinned); err != nil {
		t.Fatal(err)
	}
	node := func() *blobgcv1.NodeInfo {
		t.Helper()
		nodes, err := c.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if n.Id == "vm-1" {
				return n
			}
		}
		t.Fatal("vm-1 not listed")
		return nil
	}
	if n := node(); n.Active != 2500 || n.Pinned != 600 || n.Seq != 1 {
		t.Fatalf("after chunked full report: %v", n)
	}
	if err := r.Delta(ctx, hashesN(5000, 10), active[:100], nil, pinned[:1]); err != nil {
		t.Fatal(err)
	}
	if n := node(); n.Active != 2410 || n.Pinned != 599 || n.Seq != 2 {
		t.Fatalf("after delta: %v", n)
	}

	// The cluster forgets the node: the next delta is refused with
	// FullReportRequired, and the reporter sends its sets instead.
	if _, err := c.DeregisterNode(ctx, "vm-1"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Report(ctx, &blobgcv1.ReportRequest{NodeId: "vm-1", Kind: blobgcv1.ReportKind_REPORT_KIND_DELTA, Seq: 3, Active: toBytes(hashesN(0, 1))})
	if _, ok := FullReportRequired(err); !ok || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("raw delta to a forgotten node: %v, want FailedPrecondition with FullReportRequired", err)
	}
	if err := r.Delta(ctx, hashesN(6000, 1), nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if n := node(); n.Active != 2411 || n.Pinned != 599 || n.Seq != 3 {
		t.Fatalf("after fallback: %v", n)
	}

	// The node restarts: a new reporter starts at seq 0, the cluster is at 3.
	r2 := c.Reporter("vm-1")
	if err := r2.Full(ctx, hashesN(0, 5), nil); err != nil {
		t.Fatal(err)
	}
	if n := node(); n.Active != 5 || n.Seq != 4 || r2.Seq() != 4 {
		t.Fatalf("after restart: %v (reporter seq %d)", n, r2.Seq())
	}
	// A large delta goes as a (chunked) full report.
	if err := r2.Delta(ctx, hashesN(20000, 1500), nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if n := node(); n.Active != 1505 || n.Seq != 5 {
		t.Fatalf("after large delta: %v", n)
	}
}

// Leadership moves; the client follows it and writes continue.
func TestClusterFollowsLeadershipTransfer(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{N: 3})
	leader, fol := followers(t, tc)
	c := newTestClient(t, append([]string{leader}, fol...))
	ctx, cancel := context.WithTimeout(context.Background(), testtiming.Hang())
	defer cancel()
	if _, err := c.RegisterBlobs(ctx, hashesN(0, 1)); err != nil {
		t.Fatal(err)
	}
	m, err := c.Members(ctx)
	if err != nil || len(m.Members) != 3 || m.LeaderAddress != leader {
		t.Fatalf("members %v %v", m, err)
	}
	var target string
	for _, mem := range m.Members {
		if !mem.Leader {
			target = mem.Id
			break
		}
	}
	tr, err := c.TransferLeadership(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if tr.LeaderId != target {
		t.Fatalf("new leader %q, want %q", tr.LeaderId, target)
	}
	if _, err := c.RegisterBlobs(ctx, hashesN(1, 1)); err != nil {
		t.Fatal(err)
	}
	if c.Leader() != tr.LeaderAddress {
		t.Fatalf("client leader %q, want %q", c.Leader(), tr.LeaderAddress)
	}
	stats, err := c.Stats(ctx)
	if err != nil || stats.Known != 2 {
		t.Fatalf("stats %v %v", stats, err)
	}
}

// The leader stops; the client finds the new one and writes go on.
func TestClusterLeaderFailover(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{N: 3})
	var addrs []string
	li := -1
	for i, s := range tc.Servers {
		addrs = append(addrs, s.Addr())
		if s.IsLeader() {
			li = i
		}
	}
	c := newTestClient(t, addrs, WithBackoff(5*time.Millisecond, 50*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), testtiming.Hang())
	defer cancel()
	if _, err := c.RegisterBlobs(ctx, hashesN(0, 1)); err != nil {
		t.Fatal(err)
	}
	tc.Servers[li].Close() // no leadership transfer: a crash, as seen by peers
	tc.Servers[li] = nil
	for i := 1; i <= 5; i++ {
		if _, err := c.RegisterBlobs(ctx, hashesN(i, 1)); err != nil {
			t.Fatalf("write %d after the leader stopped: %v", i, err)
		}
	}
	if c.Leader() == addrs[li] || c.Leader() == "" {
		t.Fatalf("client leader %q after failover", c.Leader())
	}
	stats, err := c.Stats(ctx)
	if err != nil || stats.Known != 6 {
		t.Fatalf("stats %v %v", stats, err)
	}
}

// Cycles called while leadership keeps moving run once per call: the
// client's retries of a call whose outcome was unknown reuse its request
// id, and the cluster answers them from the first run. (An end-to-end
// check: a retry of an applied call is rare here; the deterministic tests
// are TestDeadlineExceededRetriedOnlyWhenIdempotent for the client's id and
// the cluster and fsm tests of a repeated request id.)
func TestRunCycleRetriedAcrossLeaderChangesRunsOnce(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{N: 3})
	all := make([]string, 0, 3)
	for _, s := range tc.Servers {
		all = append(all, s.Addr())
	}
	c := newTestClient(t, all)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := c.SetConfig(ctx, &blobgcv1.SetConfigRequest{GracePeriodNs: ptr(int64(0)), MinNodesReporting: ptr(int64(0))}); err != nil {
		t.Fatal(err)
	}
	// A marked blob that is never claimed: every cycle leaves it eligible
	// and so records one history event.
	if _, err := c.RegisterBlobs(ctx, hashesN(0, 1)); err != nil {
		t.Fatal(err)
	}
	before := historyLen(ctx, t, c)
	stop := make(chan struct{})
	moved := make(chan int)
	go func() {
		n := 0
		defer func() { moved <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			if _, err := c.TransferLeadership(ctx, ""); err == nil {
				n++
			}
		}
	}()
	const calls = 60
	for i := 0; i < calls; i++ {
		if _, err := c.RunCycle(ctx, false); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	close(stop)
	t.Logf("%d leadership transfers during the cycles", <-moved)
	if got := historyLen(ctx, t, c) - before; got != calls {
		t.Fatalf("%d successful RunCycle calls recorded %d cycles", calls, got)
	}
}

func historyLen(ctx context.Context, t *testing.T, c *Client) int {
	t.Helper()
	n := 0
	for _, err := range c.History(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// Nodes follows ListNodes pages until the last: more nodes than one
// default page (1000) are all listed, once each.
func TestNodesFollowsPages(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{N: 3})
	leader, _ := followers(t, tc)
	c := newTestClient(t, []string{leader})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 1001
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, err := c.Report(ctx, &blobgcv1.ReportRequest{NodeId: fmt.Sprintf("vm-%04d", i), Kind: blobgcv1.ReportKind_REPORT_KIND_FULL, Seq: 1})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != n {
		t.Fatalf("Nodes listed %d, want %d", len(nodes), n)
	}
	for i, node := range nodes {
		if want := fmt.Sprintf("vm-%04d", i); node.Id != want {
			t.Fatalf("node %d is %q, want %q", i, node.Id, want)
		}
	}
}
