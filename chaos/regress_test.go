package chaos_test

import (
	"context"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

// Found by the chaos suite (invariant 3, "node's last acked report has X
// active=false, cluster says true"): a delta that both adds and removes the
// same hash. The state machine applies removals first (the hash ends up
// present); client.Reporter applied additions first (the hash ends up
// absent in its own sets). The reporter's idea of what it reported then
// differs from what the cluster holds until the next full report.
func TestRegression_ReporterDeltaAddAndRemoveSameHash(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 1})
	cl, err := client.New([]string{c.Servers[0].Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	x, y := sha256.Sum256([]byte("x")), sha256.Sum256([]byte("y"))
	if _, err := cl.RegisterBlobs(ctx, []client.Hash{x, y}); err != nil {
		t.Fatal(err)
	}
	rep := cl.Reporter("vm1")
	if err := rep.Full(ctx, []client.Hash{x}, nil); err != nil {
		t.Fatal(err)
	}
	if err := rep.Delta(ctx, []client.Hash{y}, []client.Hash{y}, nil, nil); err != nil {
		t.Fatal(err)
	}
	active, _ := rep.Sets()
	st, err := cl.Status(ctx, y)
	if err != nil {
		t.Fatal(err)
	}
	clusterHas := slices.Contains(st.GetReferencedBy(), "vm1")
	if reporterHas := slices.Contains(active, y); reporterHas != clusterHas {
		t.Fatalf("after Delta(add y, remove y): the reporter's sets have y=%v, the cluster's have y=%v", reporterHas, clusterHas)
	}
}
