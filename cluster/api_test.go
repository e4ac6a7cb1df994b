package cluster_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// Bad input gets the right code and a message that says what is wrong, and
// never reaches the log: every digest is unchanged afterwards.
func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, testtiming.Hang())
	leader := c.Leader()
	try(c.Client(leader).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 4)})).must(t)
	try(c.Client(leader).Report(ctx, &pb.ReportRequest{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: hashes(0, 1)})).must(t)
	idx, digest := c.WaitConverged()

	short, long := make([]byte, 31), make([]byte, 33)
	big := hashes(0, cluster.MaxBatch+1)
	neg := int64(-1)
	frac := 1.5
	badPolicy := pb.StalePolicy(9)
	type call struct {
		name string
		do   func(cl pb.BlobGCClient) error
		code codes.Code
		msg  string
	}
	calls := []call{
		{"short hash", func(cl pb.BlobGCClient) error {
			_, err := cl.Pin(ctx, &pb.HashesRequest{Hashes: [][]byte{hashN(1), hashN(2), hashN(3), short}})
			return err
		}, codes.InvalidArgument, "hash 3: want 32 bytes, got 31"},
		{"long hash", func(cl pb.BlobGCClient) error {
			_, err := cl.RegisterBlobs(ctx, &pb.HashesRequest{Hashes: [][]byte{long}})
			return err
		}, codes.InvalidArgument, "hash 0: want 32 bytes, got 33"},
		{"status short hash", func(cl pb.BlobGCClient) error {
			_, err := cl.GetStatus(ctx, &pb.GetStatusRequest{Hash: short})
			return err
		}, codes.InvalidArgument, "hash: want 32 bytes, got 31"},
		{"empty batch", func(cl pb.BlobGCClient) error {
			_, err := cl.Unpin(ctx, &pb.HashesRequest{})
			return err
		}, codes.InvalidArgument, "empty batch"},
		{"empty claim", func(cl pb.BlobGCClient) error {
			_, err := cl.Claim(ctx, &pb.HashesRequest{})
			return err
		}, codes.InvalidArgument, "empty batch"},
		{"oversized batch", func(cl pb.BlobGCClient) error {
			_, err := cl.RegisterBlobs(ctx, &pb.HashesRequest{Hashes: big})
			return err
		}, codes.ResourceExhausted, "30001 hashes, at most 30000"},
		{"oversized report", func(cl pb.BlobGCClient) error {
			_, err := cl.Report(ctx, &pb.ReportRequest{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 2, Active: big[:20000], Pinned: big[20000:]})
			return err
		}, codes.ResourceExhausted, "FULL_CHUNK"},
		{"delta gap", func(cl pb.BlobGCClient) error {
			_, err := cl.Report(ctx, &pb.ReportRequest{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_DELTA, Seq: 3, Active: hashes(1, 1)})
			return err
		}, codes.FailedPrecondition, "full report"},
		{"report kind unknown", func(cl pb.BlobGCClient) error {
			_, err := cl.Report(ctx, &pb.ReportRequest{NodeId: "vm", Kind: pb.ReportKind(9), Seq: 2})
			return err
		}, codes.InvalidArgument, "kind: unknown value 9"},
		{"report kind unspecified", func(cl pb.BlobGCClient) error {
			_, err := cl.Report(ctx, &pb.ReportRequest{NodeId: "vm", Seq: 2})
			return err
		}, codes.InvalidArgument, "kind: required"},
		{"report no node", func(cl pb.BlobGCClient) error {
			_, err := cl.Report(ctx, &pb.ReportRequest{Kind: pb.ReportKind_REPORT_KIND_FULL})
			return err
		}, codes.InvalidArgument, "node_id: required"},
		{"report long node id", func(cl pb.BlobGCClient) error {
			_, err := cl.Report(ctx, &pb.ReportRequest{NodeId: strings.Repeat("n", 129), Kind: pb.ReportKind_REPORT_KIND_FULL})
			return err
		}, codes.InvalidArgument, "node_id: 129 bytes"},
		{"report bad hash", func(cl pb.BlobGCClient) error {
			_, err := cl.Report(ctx, &pb.ReportRequest{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 5, Pinned: [][]byte{hashN(1), short}})
			return err
		}, codes.InvalidArgument, "pinned: hash 1: want 32 bytes, got 31"},
		{"chunk without chunk", func(cl pb.BlobGCClient) error {
			_, err := cl.Report(ctx, &pb.ReportRequest{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_FULL_CHUNK, Active: hashes(0, 1)})
			return err
		}, codes.InvalidArgument, "chunk: required"},
		{"removed in full", func(cl pb.BlobGCClient) error {
			_, err := cl.Report(ctx, &pb.ReportRequest{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_FULL, RemovedActive: hashes(0, 1)})
			return err
		}, codes.InvalidArgument, "only for REPORT_KIND_DELTA"},
		{"config grace negative", func(cl pb.BlobGCClient) error {
			_, err := cl.SetConfig(ctx, &pb.SetConfigRequest{GracePeriodNs: &neg})
			return err
		}, codes.InvalidArgument, "grace"},
		{"config fraction", func(cl pb.BlobGCClient) error {
			_, err := cl.SetConfig(ctx, &pb.SetConfigRequest{MaxEligibleFraction: &frac})
			return err
		}, codes.InvalidArgument, "fraction"},
		{"config policy unknown", func(cl pb.BlobGCClient) error {
			_, err := cl.SetConfig(ctx, &pb.SetConfigRequest{StalePolicy: &badPolicy})
			return err
		}, codes.InvalidArgument, "stale_policy: unknown value 9"},
		{"config empty", func(cl pb.BlobGCClient) error {
			_, err := cl.SetConfig(ctx, &pb.SetConfigRequest{})
			return err
		}, codes.InvalidArgument, "at least one field"},
		{"list state unknown", func(cl pb.BlobGCClient) error {
			_, err := cl.ListBlobs(ctx, &pb.ListBlobsRequest{State: pb.BlobState(99)})
			return err
		}, codes.InvalidArgument, "state: unknown value 99"},
		{"consistency unknown", func(cl pb.BlobGCClient) error {
			_, err := cl.GetStats(ctx, &pb.GetStatsRequest{Consistency: pb.Consistency(7)})
			return err
		}, codes.InvalidArgument, "consistency: unknown value 7"},
		{"page token", func(cl pb.BlobGCClient) error {
			_, err := cl.ListBlobs(ctx, &pb.ListBlobsRequest{PageToken: "zz"})
			return err
		}, codes.InvalidArgument, "page_token"},
		{"negative page size", func(cl pb.BlobGCClient) error {
			_, err := cl.History(ctx, &pb.HistoryRequest{PageSize: -1})
			return err
		}, codes.InvalidArgument, "page_size"},
		{"deregister no id", func(cl pb.BlobGCClient) error {
			_, err := cl.DeregisterNode(ctx, &pb.DeregisterNodeRequest{})
			return err
		}, codes.InvalidArgument, "node_id"},
		{"add server no address", func(cl pb.BlobGCClient) error {
			_, err := cl.AddServer(ctx, &pb.AddServerRequest{Id: "x"})
			return err
		}, codes.InvalidArgument, "address"},
	}
	for _, s := range []*cluster.Server{leader, c.Followers()[0]} {
		for _, tc := range calls {
			err := tc.do(c.Client(s))
			st := status.Convert(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Errorf("%s via %s: got %v %q, want %v containing %q", tc.name, s.ID(), st.Code(), st.Message(), tc.code, tc.msg)
			}
			if tc.name == "delta gap" {
				var frr *pb.FullReportRequired
				for _, d := range st.Details() {
					if x, ok := d.(*pb.FullReportRequired); ok {
						frr = x
					}
				}
				if frr == nil || frr.ExpectedSeq != 2 || frr.GotSeq != 3 {
					t.Errorf("delta gap via %s: details %v, want FullReportRequired{2, 3}", s.ID(), st.Details())
				}
			}
		}
	}
	for _, s := range c.Running() {
		if i, d := s.FSM().Digest(); i != idx || d != digest {
			t.Errorf("%s: digest changed by refused requests", s.ID())
		}
	}
}

// Pin of a collected blob is refused by the state machine (FailedPrecondition)
// and the full sweeper flow works over the API.
func TestSweepFlowAndDomainErrors(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, testtiming.Hang())
	cl := c.Client(c.Followers()[0])
	grace := int64(1)
	try(cl.SetConfig(ctx, &pb.SetConfigRequest{GracePeriodNs: &grace})).must(t)
	try(cl.RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 3)})).must(t)
	try(cl.Report(ctx, &pb.ReportRequest{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: hashes(0, 1)})).must(t)
	try(cl.RunCycle(ctx, &pb.RunCycleRequest{})).must(t)
	dry := try(cl.RunCycle(ctx, &pb.RunCycleRequest{DryRun: true})).must(t)
	if !dry.DryRun || len(dry.NewlyMarked) != 2 {
		t.Fatalf("dry run: %v", dry)
	}
	res := try(cl.RunCycle(ctx, &pb.RunCycleRequest{})).must(t)
	if len(res.NewlyMarked) != 2 || len(res.Eligible) != 2 {
		t.Fatalf("cycle: %v", res)
	}
	el := try(cl.ListEligible(ctx, &pb.ListEligibleRequest{PageSize: 1})).must(t)
	if len(el.Hashes) != 1 || el.NextPageToken == "" {
		t.Fatalf("eligible page 1: %v", el)
	}
	el2 := try(cl.ListEligible(ctx, &pb.ListEligibleRequest{PageSize: 1, PageToken: el.NextPageToken})).must(t)
	if len(el2.Hashes) != 1 || bytes.Equal(el2.Hashes[0], el.Hashes[0]) || el2.NextPageToken != "" {
		t.Fatalf("eligible page 2: %v", el2)
	}
	granted := try(cl.Claim(ctx, &pb.HashesRequest{Hashes: append(el.Hashes, el2.Hashes...)})).must(t).Granted
	if len(granted) != 2 {
		t.Fatalf("granted %d", len(granted))
	}
	try(cl.ConfirmCollected(ctx, &pb.HashesRequest{Hashes: granted})).must(t)
	if st := try(cl.GetStatus(ctx, &pb.GetStatusRequest{Hash: granted[0]})).must(t); st.State != pb.BlobState_BLOB_STATE_COLLECTED {
		t.Fatalf("collected blob is %v", st.State)
	}
	_, err := cl.Pin(ctx, &pb.HashesRequest{Hashes: granted[:1]})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("pin of a collected blob: %v", err)
	}
	all := try(cl.ListBlobs(ctx, &pb.ListBlobsRequest{})).must(t)
	if len(all.Blobs) != 3 {
		t.Fatalf("list: %d blobs", len(all.Blobs))
	}
	hist := try(cl.History(ctx, &pb.HistoryRequest{})).must(t)
	if len(hist.Events) == 0 {
		t.Fatal("no history")
	}
	nodes := try(cl.ListNodes(ctx, &pb.ListNodesRequest{})).must(t)
	if len(nodes.Nodes) != 1 || nodes.Nodes[0].Id != "vm" {
		t.Fatalf("nodes %v", nodes)
	}
	try(cl.DeregisterNode(ctx, &pb.DeregisterNodeRequest{NodeId: "vm"})).must(t)
	try(cl.PruneStaleNodes(ctx, &pb.PruneStaleNodesRequest{})).must(t)
	stats := try(cl.GetStats(ctx, &pb.GetStatsRequest{})).must(t)
	if stats.Collected != 2 || stats.NodesReporting != 0 || stats.ClusterTimeNs <= 0 {
		t.Fatalf("stats %v", stats)
	}
	d := try(cl.Digest(ctx, &pb.DigestRequest{})).must(t)
	if d.ServerId != c.Followers()[0].ID() || len(d.Digest) != 32 {
		t.Fatalf("digest %v", d)
	}
}

// A follower answers a stale read from its own state even when it is cut
// off; a linearizable read through it fails fast with a leader hint instead
// of returning stale data or hanging.
func TestStaleAndLinearizableReadsOnPartitionedFollower(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, testtiming.Hang())
	leader := c.Leader()
	f := c.Followers()[0]
	c.Faults.Isolate(raftAddr(f))
	x := hashN(77)
	try(c.Client(leader).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: [][]byte{x}})).must(t)

	if got := state(t, c, f, x, pb.Consistency_CONSISTENCY_STALE); got != pb.BlobState_BLOB_STATE_NOT_FOUND {
		t.Fatalf("stale read on the cut-off follower: %v, want NOT_FOUND (it has not seen the write)", got)
	}
	if got := state(t, c, leader, x, pb.Consistency_CONSISTENCY_LINEARIZABLE); got != pb.BlobState_BLOB_STATE_ACTIVE {
		t.Fatalf("linearizable read on the leader: %v", got)
	}
	// Once the follower has lost the leader, linearizable reads through it
	// fail with a hint instead of answering from its stale state.
	c.Eventually(testtiming.Hang(), "the follower to lose the leader", func() bool {
		id, _ := f.Leader()
		return id == ""
	})
	// Under a deadline longer than the test waits for anything: the read
	// must fail by itself, not by running out of time.
	_, err := c.RawClient(f).GetStatus(ctx, &pb.GetStatusRequest{Hash: x})
	if status.Code(err) != codes.Unavailable || !hasHint(err) {
		t.Fatalf("linearizable read via cut-off follower: %v, want Unavailable with a LeaderHint", err)
	}
	c.Faults.Heal()
	c.Eventually(testtiming.Hang(), "the follower to catch up", func() bool {
		return state(t, c, f, x, pb.Consistency_CONSISTENCY_STALE) == pb.BlobState_BLOB_STATE_ACTIVE
	})
}

// A linearizable read after an acknowledged write never returns older
// state, also when the write and the read go through different followers.
func TestLinearizableReadAfterWriteThroughFollowers(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, testtiming.Hang())
	fs := c.Followers()
	for i := 0; i < 40; i++ {
		h := hashN(1000 + i)
		w, r := c.Client(fs[i%2]), c.Client(fs[(i+1)%2])
		if i%3 == 0 {
			w = c.Client(c.Leader())
		}
		try(w.RegisterBlobs(ctx, &pb.HashesRequest{Hashes: [][]byte{h}})).must(t)
		if got := try(r.GetStatus(ctx, &pb.GetStatusRequest{Hash: h})).must(t).State; got != pb.BlobState_BLOB_STATE_ACTIVE {
			t.Fatalf("write %d: linearizable read returned %v", i, got)
		}
		try(w.Pin(ctx, &pb.HashesRequest{Hashes: [][]byte{h}})).must(t)
		if got := try(r.GetStatus(ctx, &pb.GetStatusRequest{Hash: h})).must(t).State; got != pb.BlobState_BLOB_STATE_PINNED {
			t.Fatalf("pin %d: linearizable read returned %v", i, got)
		}
	}
}

// With the leader cut off from its peers, writes sent to a follower fail
// with Unavailable (carrying the leader hint) or DeadlineExceeded until the
// others elect a leader; then they succeed.
func TestForwardingWhileLeaderPartitioned(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, testtiming.Hang())
	old := c.Leader()
	f := c.Followers()[0]
	c.Faults.Isolate(raftAddr(old))
	deadline := testtiming.Scaled(1500 * time.Millisecond)
	okAt := -1
	until := time.Now().Add(testtiming.Hang())
	for i := 0; okAt < 0 && time.Now().Before(until); i++ {
		time.Sleep(20 * time.Millisecond)
		for _, s := range []*cluster.Server{f, old} {
			rctx, cancel := context.WithTimeout(ctx, deadline)
			_, err := c.RawClient(s).Pin(rctx, &pb.HashesRequest{Hashes: hashes(i, 1)})
			cancel()
			switch status.Code(err) {
			case codes.OK:
				if s == old {
					t.Fatalf("the cut-off old leader acknowledged a write")
				}
				okAt = i
			case codes.Unavailable:
				if !hasHint(err) {
					t.Fatalf("attempt %d via %s: Unavailable without a leader hint: %v", i, s.ID(), err)
				}
			case codes.DeadlineExceeded:
			default:
				t.Fatalf("attempt %d via %s: %v", i, s.ID(), err)
			}
		}
	}
	if okAt < 0 {
		t.Fatal("no write succeeded after the leader was cut off")
	}
	c.Faults.Heal()
	c.Leader()
	c.WaitConverged()
}

func hasHint(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if _, ok := d.(*pb.LeaderHint); ok {
			return true
		}
	}
	return false
}
