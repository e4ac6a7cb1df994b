package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/blobgc/blobgc/bench"
	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

func TestParseMix(t *testing.T) {
	mix, err := bench.ParseMix("pin=3, status ,delta=0")
	if err != nil {
		t.Fatal(err)
	}
	if mix[bench.OpPin] != 3 || mix[bench.OpStatus] != 1 || mix[bench.OpDelta] != 0 {
		t.Fatalf("mix = %v", mix)
	}
	for _, bad := range []string{"pinn=1", "pin=-1", "pin=x"} {
		if _, err := bench.ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
}

// A mixed run against a real 3-server cluster does what it says: every
// operation kind runs, none fails, the total is exact, and what it wrote is
// in the cluster afterwards.
func TestRunAgainstACluster(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3})
	var servers []string
	for _, s := range c.Running() {
		servers = append(servers, s.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mix, err := bench.ParseMix("pin,register,full,delta,status,status-stale,claim")
	if err != nil {
		t.Fatal(err)
	}
	const total = 700
	r, err := bench.Run(ctx, bench.Config{Servers: servers, Clients: 4, Conns: 2, Total: total, Mix: mix, Batch: 3, ReportSize: 20, DeltaSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	if r.Ops != total || r.Errors != 0 {
		t.Fatalf("ops %d errors %d (%v), want %d and 0", r.Ops, r.Errors, r.FirstErrors, total)
	}
	for _, op := range bench.Ops {
		if r.PerOp[op] == nil || r.PerOp[op].Ops == 0 {
			t.Errorf("operation %s never ran", op)
		}
	}
	if r.Latency.Count != total || r.Latency.P50 <= 0 || r.Latency.P50 > r.Latency.P99 || r.Latency.P99 > r.Latency.Max {
		t.Errorf("latency summary inconsistent: %+v", r.Latency)
	}
	sum := 0
	for _, b := range r.Histogram {
		sum += b.Count
	}
	if sum != total {
		t.Errorf("histogram counts %d latencies, want %d", sum, total)
	}

	cl, err := client.New(servers)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	nodes, err := cl.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reporting := 0
	for _, n := range nodes {
		if n.Active > 0 {
			reporting++
		}
	}
	if reporting == 0 {
		t.Fatalf("no simulated VM node has an active set after the run: %v", nodes)
	}
	stats, err := cl.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Pinned == 0 || stats.Known < int64(r.PerOp[bench.OpRegister].Ops*3) {
		t.Fatalf("after %d register and %d pin calls of 3 hashes: %v", r.PerOp[bench.OpRegister].Ops, r.PerOp[bench.OpPin].Ops, stats)
	}
}
