package cluster_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/rawproto"
)

// wantCode fails unless err has code and its message contains msg.
func wantCode(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Errorf("%s: got %v, want %v containing %q", what, err, code, msg)
	}
}

// Every limit is enforced before anything is proposed: the refused requests
// leave every digest and the log where they were.
func TestLimitsRefuseBeforeProposing(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(_ int, cfg *cluster.Config) {
		cfg.Limits = cluster.Limits{MaxMessageSize: cluster.MinMessageSize, MaxBatch: 100}
	}})
	ctx := ctxT(t, time.Minute)
	leader := c.Leader()
	try(c.Client(leader).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 100)})).must(t)
	idx, digest := c.WaitConverged()

	for _, s := range c.Running() {
		cl := c.RawClient(s)
		// 70,000 hashes: about 2.4 MB, over the 2 MiB message limit.
		_, err := cl.Pin(ctx, &pb.HashesRequest{Hashes: hashes(0, 70000)})
		wantCode(t, s.ID()+" oversized message", err, codes.ResourceExhausted, "larger than max")
		_, err = cl.Pin(ctx, &pb.HashesRequest{Hashes: hashes(0, 101)})
		wantCode(t, s.ID()+" batch", err, codes.ResourceExhausted, "101 hashes, at most 100")
		_, err = cl.Report(ctx, &pb.ReportRequest{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: hashes(0, 60), Pinned: hashes(60, 41)})
		wantCode(t, s.ID()+" report batch", err, codes.ResourceExhausted, "101 hashes, at most 100")
	}
	// A batch at the limit passes.
	try(c.Client(leader).Pin(ctx, &pb.HashesRequest{Hashes: hashes(0, 100)})).must(t)
	idx2, digest2 := c.WaitConverged()
	if idx2 == idx || digest2 == digest {
		t.Fatalf("the batch at the limit changed nothing (index %d, %d)", idx, idx2)
	}
	for _, s := range c.Running() {
		if got := s.Raft().LastIndex(); got != idx2 {
			t.Errorf("%s: last log index %d, want %d: a refused request reached the log", s.ID(), got, idx2)
		}
	}
}

func TestMaxConnectionsClosesTheExtraConnection(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 1, Configure: func(_ int, cfg *cluster.Config) {
		cfg.Limits.MaxConnections = 2
	}})
	s := c.Leader()
	var held []net.Conn
	for range 2 {
		conn, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, conn)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// The server sends its HTTP/2 settings on an accepted connection; the
	// one over the limit is closed instead.
	for i, conn := range held {
		conn.SetReadDeadline(time.Now().Add(time.Minute))
		if _, err := conn.Read(make([]byte, 1)); err != nil {
			t.Fatalf("connection %d within the limit: %v", i, err)
		}
	}
	extra, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(time.Minute))
	if got, err := io.ReadAll(extra); len(got) != 0 || (err != nil && !strings.Contains(err.Error(), "reset")) {
		t.Fatalf("connection over the limit: read %d bytes (error %v), want it closed by the server at once", len(got), err)
	}

	// Once a slot is free, clients get in again.
	held[0].Close()
	held = held[1:]
	cc, err := grpc.NewClient("passthrough:///"+s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	clustertest.Eventually(t, time.Minute, "a client connects after a slot is freed", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := pb.NewBlobGCClient(cc).GetStats(ctx, &pb.GetStatsRequest{Consistency: pb.Consistency_CONSISTENCY_STALE})
		return err == nil
	})
}

// A connection carries at most MaxStreams calls at once: with one open
// stream on a limit of 1, a second call on the same connection waits.
func TestMaxStreamsPerConnection(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 1, Configure: func(_ int, cfg *cluster.Config) {
		cfg.Limits.MaxStreams = 1
	}})
	s := c.Leader()
	cc, err := grpc.NewClient("passthrough:///"+s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watch, err := healthpb.NewHealthClient(cc).Watch(wctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err = pb.NewBlobGCClient(cc).GetStats(ctx, &pb.GetStatsRequest{Consistency: pb.Consistency_CONSISTENCY_STALE})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("second call while the stream is open: %v, want it to wait (DeadlineExceeded)", err)
	}
	stopWatch()
	clustertest.Eventually(t, time.Minute, "the call runs once the stream ended", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := pb.NewBlobGCClient(cc).GetStats(ctx, &pb.GetStatsRequest{Consistency: pb.Consistency_CONSISTENCY_STALE})
		return err == nil
	})
}

// Expensive reads (Digest, large pages) are refused with ResourceExhausted
// while every slot is taken; small pages are not limited.
func TestHeavyReadsAreLimited(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 1, Configure: func(_ int, cfg *cluster.Config) {
		cfg.Limits.MaxHeavyReads = 1
	}})
	s := c.Leader()
	ctx := ctxT(t, time.Minute)
	cl := c.RawClient(s)
	try(cl.RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 10)})).must(t)

	heavy := map[string]func() error{
		"Digest": func() error { _, err := cl.Digest(ctx, &pb.DigestRequest{}); return err },
		"ListBlobs": func() error {
			_, err := cl.ListBlobs(ctx, &pb.ListBlobsRequest{PageSize: cluster.DefaultPageSize + 1})
			return err
		},
		"ListEligible": func() error {
			_, err := cl.ListEligible(ctx, &pb.ListEligibleRequest{PageSize: cluster.MaxPageSize})
			return err
		},
		"History": func() error {
			_, err := cl.History(ctx, &pb.HistoryRequest{PageSize: cluster.MaxPageSize, Consistency: pb.Consistency_CONSISTENCY_STALE})
			return err
		},
	}
	release := s.HoldHeavyReads()
	for name, call := range heavy {
		wantCode(t, name, call(), codes.ResourceExhausted, "expensive reads")
	}
	if _, err := cl.ListBlobs(ctx, &pb.ListBlobsRequest{PageSize: cluster.DefaultPageSize}); err != nil {
		t.Errorf("a default-sized page is not expensive: %v", err)
	}
	release()
	for name, call := range heavy {
		if err := call(); err != nil {
			t.Errorf("%s with a free slot: %v", name, err)
		}
	}
}

// The shared listener answers a malformed protobuf request with
// InvalidArgument, and it changes nothing.
func TestMalformedRequestIsInvalidArgument(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, time.Minute)
	idx, digest := c.WaitConverged()
	for _, s := range c.Running() {
		var out []byte
		err := c.Conn(s.Addr()).Invoke(ctx, pb.BlobGC_RegisterBlobs_FullMethodName, &rawproto.Malformed, &out, grpc.ForceCodecV2(rawproto.Codec{}))
		wantCode(t, s.ID(), err, codes.InvalidArgument, "malformed request")
	}
	if idx2, digest2 := c.WaitConverged(); idx2 != idx || digest2 != digest {
		t.Fatalf("state changed: index %d -> %d", idx, idx2)
	}
}

// A connection whose calls keep being refused uses up its refusal budget:
// its next calls, even valid ones, are refused before they are read and
// change nothing, while another client's connection and raft go on. The
// throttled calls are counted.
func TestRefusalBudgetThrottlesTheConnection(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(_ int, cfg *cluster.Config) {
		cfg.Limits.RefusalBurst, cfg.Limits.RefusalRate = 5, 0.001
		cfg.MetricsAddr = "127.0.0.1:0"
	}})
	ctx := ctxT(t, time.Minute)
	leader := c.Leader()
	idx, digest := c.WaitConverged()

	bad, err := grpc.NewClient("passthrough:///"+leader.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	malformed := func() error {
		var out []byte
		return bad.Invoke(ctx, pb.BlobGC_RegisterBlobs_FullMethodName, &rawproto.Malformed, &out, grpc.ForceCodecV2(rawproto.Codec{}))
	}
	for i := range 5 {
		wantCode(t, fmt.Sprintf("malformed call %d", i), malformed(), codes.InvalidArgument, "malformed request")
	}
	// A refusal is charged when the server has finished the call, which can
	// be just after the client has its answer: the next call may still pass
	// the tap. Two calls later the charge has long been made.
	throttled := false
	for i := 0; i < 3 && !throttled; i++ {
		err := malformed()
		if status.Code(err) == codes.ResourceExhausted {
			wantCode(t, "malformed call on the exhausted connection", err, codes.ResourceExhausted, "too many refused calls on this connection")
			throttled = true
		} else {
			wantCode(t, fmt.Sprintf("malformed call %d", 5+i), err, codes.InvalidArgument, "malformed request")
		}
	}
	if !throttled {
		t.Fatal("8 refused calls in a row, with a budget of 5, and the connection is not throttled")
	}
	_, err = pb.NewBlobGCClient(bad).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 1)})
	wantCode(t, "valid call on the exhausted connection", err, codes.ResourceExhausted, "too many refused calls on this connection")
	if idx2, digest2 := c.WaitConverged(); idx2 != idx || digest2 != digest {
		t.Fatalf("the throttled connection changed the state: index %d -> %d", idx, idx2)
	}
	if body := scrapeMetrics(t, leader); !strings.Contains(body, `blobgc_limit_refusals_total{limit="refusal_budget"} 2`) {
		t.Errorf("throttled call not counted:\n%s", grepLines(body, "blobgc_limit_refusals_total"))
	}

	// Another connection, and raft, are not affected.
	try(c.Client(leader).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 1)})).must(t)
	if idx2, _ := c.WaitConverged(); idx2 == idx {
		t.Fatal("the well-behaved client's write did not replicate")
	}
}
