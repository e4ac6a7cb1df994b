package cluster_test

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

// Every server names the leader in the header of a health check, so that a
// client can ask any server cheaply whom it follows.
func TestHealthCheckNamesTheLeader(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	leader := c.Leader()
	c.Eventually(time.Minute, "every server naming the leader in a health check", func() bool {
		for _, s := range c.Running() {
			var hdr metadata.MD
			_, err := healthpb.NewHealthClient(c.Conn(s.Addr())).Check(ctxT(t, 5*time.Second), &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
			if err != nil {
				t.Fatalf("health check of %s: %v", s.ID(), err)
			}
			if got := hdr.Get(cluster.LeaderHeader); len(got) != 1 || got[0] != leader.Addr() {
				return false
			}
		}
		return true
	})
}
