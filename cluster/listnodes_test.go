package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

// ListNodes pages by node id: every node exactly once, in order, with an
// empty token on the last page; a forged token is InvalidArgument.
func TestListNodesPages(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	ctx := ctxT(t, time.Minute)
	cl := c.Client(c.Followers()[0])
	var want []string
	for i := range 5 {
		id := fmt.Sprintf("vm-%d", i)
		want = append(want, id)
		try(cl.Report(ctx, &pb.ReportRequest{NodeId: id, Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: hashes(i, 1)})).must(t)
	}
	var got []string
	token, pages := "", 0
	for {
		page := try(cl.ListNodes(ctx, &pb.ListNodesRequest{PageSize: 2, PageToken: token})).must(t)
		pages++
		if len(page.Nodes) > 2 {
			t.Fatalf("page of %d nodes, asked for 2", len(page.Nodes))
		}
		for _, n := range page.Nodes {
			got = append(got, n.Id)
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || pages != 3 {
		t.Fatalf("listed %v in %d pages, want %v in 3", got, pages, want)
	}
	_, err := cl.ListNodes(ctx, &pb.ListNodesRequest{PageToken: "not hex"})
	wantCode(t, "forged token", err, codes.InvalidArgument, "page_token")
}
