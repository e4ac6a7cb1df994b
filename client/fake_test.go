package client

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/internal/testnet"
)

// fakeServer is a loopback gRPC BlobGC server whose answers a test scripts.
// It exists only to test routing and retry classification, which a real
// cluster cannot be made to exercise on demand.
type fakeServer struct {
	blobgcv1.UnimplementedBlobGCServer
	addr   string
	leader func() string // the leader address put in the response header
	stop   func()        // stops serving: the address refuses connections

	mu    sync.Mutex
	calls map[string]int
	reqs  []proto.Message
	// answer, if set, decides a method's result; nil falls back to success.
	answer func(method string, n int, req proto.Message) error
}

func startFake(t *testing.T) *fakeServer {
	t.Helper()
	lis := testnet.Listen(t)
	f := &fakeServer{addr: lis.Addr().String(), calls: map[string]int{}}
	// Health checks name the leader in the header, as real servers do.
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if info.FullMethod == healthpb.Health_Check_FullMethodName && f.leader != nil {
			if l := f.leader(); l != "" {
				grpc.SetHeader(ctx, metadata.Pairs(LeaderHeader, l))
			}
		}
		return handler(ctx, req)
	}))
	blobgcv1.RegisterBlobGCServer(gs, f)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(lis)
	f.stop = gs.Stop
	t.Cleanup(gs.Stop)
	return f
}

func (f *fakeServer) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fakeServer) requests() []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]proto.Message(nil), f.reqs...)
}

func (f *fakeServer) handle(ctx context.Context, method string, req proto.Message) error {
	f.mu.Lock()
	f.calls[method]++
	n := f.calls[method]
	f.reqs = append(f.reqs, proto.Clone(req))
	answer := f.answer
	f.mu.Unlock()
	if f.leader != nil {
		if l := f.leader(); l != "" {
			grpc.SetHeader(ctx, metadata.Pairs(LeaderHeader, l))
		}
	}
	if answer == nil {
		return nil
	}
	return answer(method, n, req)
}

func (f *fakeServer) Pin(ctx context.Context, r *blobgcv1.HashesRequest) (*blobgcv1.WriteResponse, error) {
	if err := f.handle(ctx, "Pin", r); err != nil {
		return nil, err
	}
	return &blobgcv1.WriteResponse{Changed: int64(len(r.Hashes)), AppliedIndex: uint64(f.count("Pin"))}, nil
}

func (f *fakeServer) RegisterBlobs(ctx context.Context, r *blobgcv1.HashesRequest) (*blobgcv1.WriteResponse, error) {
	if err := f.handle(ctx, "RegisterBlobs", r); err != nil {
		return nil, err
	}
	return &blobgcv1.WriteResponse{Changed: int64(len(r.Hashes)), AppliedIndex: uint64(f.count("RegisterBlobs"))}, nil
}

func (f *fakeServer) Claim(ctx context.Context, r *blobgcv1.HashesRequest) (*blobgcv1.ClaimResponse, error) {
	if err := f.handle(ctx, "Claim", r); err != nil {
		return nil, err
	}
	return &blobgcv1.ClaimResponse{Granted: r.Hashes, AppliedIndex: 7}, nil
}

func (f *fakeServer) RunCycle(ctx context.Context, r *blobgcv1.RunCycleRequest) (*blobgcv1.CycleResult, error) {
	if err := f.handle(ctx, "RunCycle", r); err != nil {
		return nil, err
	}
	return &blobgcv1.CycleResult{DryRun: r.DryRun}, nil
}

func (f *fakeServer) GetStats(ctx context.Context, r *blobgcv1.GetStatsRequest) (*blobgcv1.Stats, error) {
	if err := f.handle(ctx, "GetStats", r); err != nil {
		return nil, err
	}
	return &blobgcv1.Stats{Known: 1}, nil
}

func (f *fakeServer) Report(ctx context.Context, r *blobgcv1.ReportRequest) (*blobgcv1.ReportResponse, error) {
	if err := f.handle(ctx, "Report", r); err != nil {
		return nil, err
	}
	return &blobgcv1.ReportResponse{Seq: r.Seq}, nil
}

func (f *fakeServer) ListNodes(ctx context.Context, r *blobgcv1.ListNodesRequest) (*blobgcv1.ListNodesResponse, error) {
	if err := f.handle(ctx, "ListNodes", r); err != nil {
		return nil, err
	}
	return &blobgcv1.ListNodesResponse{}, nil
}

// hintErr is what a follower that cannot forward answers.
func hintErr(t *testing.T, leaderAddr string) error {
	st, err := status.New(codes.Unavailable, "not the leader").WithDetails(&blobgcv1.LeaderHint{LeaderId: "x", LeaderAddress: leaderAddr})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}
