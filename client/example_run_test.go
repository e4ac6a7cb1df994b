package client_test

import (
	"context"
	"strings"
	"testing"
	"time"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

// The examples (the README's among them) run against a real in-process
// cluster, found through BLOBGC_SERVERS as the examples read it; a failing
// call would end the test binary through log.Fatal.
func TestExamplesRun(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{N: 3})
	var addrs []string
	for _, s := range tc.Running() {
		addrs = append(addrs, s.Addr())
	}
	t.Setenv("BLOBGC_SERVERS", strings.Join(addrs, ","))

	ExampleReporter()
	c, err := client.New(addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nodes, err := c.Nodes(context.Background())
	if err != nil || len(nodes) != 1 || nodes[0].Id != "vm-17" || nodes[0].Seq != 2 || nodes[0].Active != 0 {
		t.Fatalf("after ExampleReporter: nodes %v, %v; want vm-17 at seq 2 using nothing", nodes, err)
	}

	// Make one blob eligible, then let the sweeper example collect it.
	image, _ := client.ParseHash("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	zero := int64(0)
	if _, err := c.SetConfig(ctx, &pb.SetConfigRequest{GracePeriodNs: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterBlobs(ctx, []client.Hash{image}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // unreferenced, then marked
		if _, err := c.RunCycle(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	ExampleClient_Claim()
	st, err := c.Status(ctx, image)
	if err != nil || st.State != pb.BlobState_BLOB_STATE_COLLECTED {
		t.Fatalf("after ExampleClient_Claim: %v, %v; want COLLECTED", st, err)
	}
}
