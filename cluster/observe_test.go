package cluster_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testtiming"
)

func TestHealthAndReflection(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, testtiming.Hang())
	leader := c.Leader()
	check := func(s *cluster.Server, service string) healthpb.HealthCheckResponse_ServingStatus {
		r, err := healthpb.NewHealthClient(c.Conn(s.Addr())).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health %s %q: %v", s.ID(), service, err)
		}
		return r.Status
	}
	c.Eventually(testtiming.Hang(), "leader service SERVING on the leader", func() bool {
		return check(leader, cluster.LeaderHealthService) == healthpb.HealthCheckResponse_SERVING
	})
	for _, s := range c.Running() {
		if got := check(s, ""); got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("%s overall: %v", s.ID(), got)
		}
	}
	for _, f := range c.Followers() {
		if got := check(f, cluster.LeaderHealthService); got != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("follower %s leader service: %v", f.ID(), got)
		}
	}
	// After a transfer the old leader stops serving the leader service.
	try(c.Client(leader).TransferLeadership(ctx, &pb.TransferLeadershipRequest{})).must(t)
	c.Eventually(testtiming.Hang(), "old leader NOT_SERVING", func() bool {
		return check(leader, cluster.LeaderHealthService) == healthpb.HealthCheckResponse_NOT_SERVING
	})

	stream, err := rpb.NewServerReflectionClient(c.Conn(leader.Addr())).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	if !strings.Contains(strings.Join(names, " "), "blobgc.v1.BlobGC") {
		t.Errorf("reflection lists %v", names)
	}
}

func TestMetrics(t *testing.T) {
	untilOneLeader(t, func(last bool) bool { return metricsScenario(t, last) })
}

func metricsScenario(t *testing.T, last bool) bool {
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(i int, cfg *cluster.Config) {
		cfg.MetricsAddr = "127.0.0.1:0"
	}})
	defer c.Close()
	ctx := ctxT(t, testtiming.Hang())
	leader := c.Leader()
	term := leader.Raft().CurrentTerm()
	follower := c.Followers()[0]
	cl := c.Client(follower)
	try(cl.RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 5)})).must(t)
	try(cl.Report(ctx, &pb.ReportRequest{NodeId: "vm", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: hashes(0, 2)})).must(t)
	try(cl.RunCycle(ctx, &pb.RunCycleRequest{})).must(t)
	c.WaitConverged()
	if !last && !stillLeads(leader, term) {
		return false
	}

	body := scrape(t, leader.HTTPURL())
	for _, want := range []string{
		`blobgc_blobs{status="active"} 2`,
		`blobgc_blobs{status="unreferenced"} 3`,
		"blobgc_eligible_blobs 0",
		"blobgc_dangling_references 0",
		"blobgc_nodes_reporting 1",
		"blobgc_nodes_stale 0",
		"blobgc_cluster_time_seconds",
		`blobgc_reports_applied_total{kind="full"} 1`,
		`blobgc_cycles_total{outcome="ok"} 1`,
		"blobgc_cycle_duration_seconds_count 1",
		`blobgc_raft_state{state="leader"} 1`,
		"blobgc_is_leader 1",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("leader metrics lack %q", want)
		}
	}
	// raft's process-wide go-metrics cannot tell three in-process servers
	// apart, so none of them shows them.
	if strings.Contains(body, "blobgc_raft_apply_total") {
		t.Error("a server sharing its process shows raft's process-wide metrics")
	}
	fbody := scrape(t, c.Followers()[0].HTTPURL())
	for _, want := range []string{`blobgc_blobs{status="active"} 2`, "blobgc_is_leader 0", `blobgc_forwarded_requests_total{code="OK",method="Report"} 1`} {
		if !strings.Contains(fbody, want) {
			t.Errorf("follower metrics lack %q", want)
		}
	}
	return true
}

// The cycle scheduler runs only on the leader: followers run no cycles, and
// after a transfer the old leader proposes no more cycles while the new one
// does.
func TestSchedulerFollowsLeadership(t *testing.T) {
	untilOneLeader(t, func(last bool) bool { return schedulerScenario(t, last) })
}

func schedulerScenario(t *testing.T, last bool) bool {
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(i int, cfg *cluster.Config) {
		cfg.MetricsAddr = "127.0.0.1:0"
		cfg.CycleInterval = 50 * time.Millisecond
	}})
	defer c.Close()
	ctx := ctxT(t, testtiming.Hang())
	old := c.Leader()
	term := old.Raft().CurrentTerm()
	cycles := func(s *cluster.Server) float64 {
		resp, err := http.Get("http://" + s.MetricsAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var sum float64
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "blobgc_cycles_total{") {
				var v float64
				fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &v)
				sum += v
			}
		}
		return sum
	}
	// Followers may have led during the first election: count from here.
	fs := c.Followers()
	before := make([]float64, len(fs))
	for i, f := range fs {
		before[i] = cycles(f)
	}
	c.Eventually(testtiming.Hang(), "cycles on the leader", func() bool { return cycles(old) >= 3 })
	if !last && !stillLeads(old, term) {
		return false
	}
	for i, f := range fs {
		if n := cycles(f); n != before[i] {
			t.Errorf("follower %s ran %v cycles", f.ID(), n-before[i])
		}
	}
	resp := try(c.Client(old).TransferLeadership(ctx, &pb.TransferLeadershipRequest{})).must(t)
	var next *cluster.Server
	for _, s := range c.Running() {
		if s.ID() == resp.LeaderId {
			next = s
		}
	}
	c.Eventually(testtiming.Hang(), "cycles on the new leader", func() bool { return cycles(next) >= 3 })
	// By now a cycle the old leader had in flight has ended; from here on
	// its count must stay put while the new leader's grows.
	nextTerm := next.Raft().CurrentTerm()
	frozen, base := cycles(old), cycles(next)
	c.Eventually(testtiming.Hang(), "more cycles on the new leader", func() bool { return cycles(next) >= base+3 })
	if !last && !stillLeads(next, nextTerm) {
		return false
	}
	if n := cycles(old); n != frozen {
		t.Errorf("old leader kept running cycles: %v -> %v", frozen, n)
	}
	return true
}
