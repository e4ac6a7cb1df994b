package cluster_test

import (
	"fmt"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testtiming"
)

func TestClusterFormsAndFollowersForwardWrites(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("servers=%d", n), func(t *testing.T) {
			c := clustertest.Start(t, clustertest.Options{N: n})
			leader := c.Leader()
			fs := c.Followers()
			if len(fs) != n-1 {
				t.Fatalf("%d followers, want %d", len(fs), n-1)
			}
			ctx := ctxT(t, testtiming.Hang())
			f := fs[0]
			var hdr metadata.MD
			try(c.Client(f).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(0, 10)}, grpc.Header(&hdr))).must(t)
			if got := hdr.Get(cluster.LeaderHeader); len(got) != 1 || got[0] != leader.Addr() {
				t.Errorf("%s header = %v, want [%s]", cluster.LeaderHeader, got, leader.Addr())
			}
			try(c.Client(fs[len(fs)-1]).Pin(ctx, &pb.HashesRequest{Hashes: hashes(0, 2)})).must(t)
			try(c.Client(f).Report(ctx, &pb.ReportRequest{NodeId: "vm-1", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: hashes(2, 3)})).must(t)
			try(c.Client(f).Report(ctx, &pb.ReportRequest{NodeId: "vm-1", Kind: pb.ReportKind_REPORT_KIND_DELTA, Seq: 2, Active: hashes(5, 1), RemovedActive: hashes(2, 1)})).must(t)
			// A repeated delta is acknowledged as a duplicate and changes nothing.
			if r := try(c.Client(f).Report(ctx, &pb.ReportRequest{NodeId: "vm-1", Kind: pb.ReportKind_REPORT_KIND_DELTA, Seq: 2, Active: hashes(9, 1)})).must(t); !r.Duplicate {
				t.Errorf("repeated delta not reported as duplicate: %v", r)
			}
			c.WaitConverged()
			for _, s := range c.Running() {
				if got := state(t, c, s, hashN(0), pb.Consistency_CONSISTENCY_STALE); got != pb.BlobState_BLOB_STATE_PINNED {
					t.Errorf("%s: blob 0 is %v, want PINNED", s.ID(), got)
				}
				nodes := s.FSM().Nodes()
				if len(nodes) != 1 || nodes[0].ID != "vm-1" || nodes[0].Seq != 2 || nodes[0].Active != 3 {
					t.Errorf("%s: nodes = %+v", s.ID(), nodes)
				}
			}
		})
	}
}
