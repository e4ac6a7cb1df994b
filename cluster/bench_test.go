package cluster_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/bench"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

// benchCluster starts 3 servers with the default (LAN) raft timings.
func benchCluster(b *testing.B) *clustertest.Cluster {
	return clustertest.Start(b, clustertest.Options{N: 3, Configure: func(i int, cfg *cluster.Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout, cfg.CommitTimeout = 0, 0, 0, 0
		cfg.ApplyTimeout = 0
	}})
}

// fastHash fills a hash from a counter: unique, well spread, and cheap
// enough not to show in the numbers.
func fastHash(dst []byte, n uint64) {
	h := bench.HashOf(0, n)
	copy(dst, h[:])
}

// runClients runs b.N operations over `clients` goroutines and reports
// ops/s and latency percentiles.
func runClients(b *testing.B, clients int, unit string, op func(ctx context.Context, client, i int) error) {
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			ctx := context.Background()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				if err := op(ctx, c, i); err != nil {
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), unit+"/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99_ms")
}

// BenchmarkPin: single-hash pins sent to the leader of a 3-server loopback
// cluster, each acknowledged after commit and apply.
func BenchmarkPin(b *testing.B) {
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			c := benchCluster(b)
			leader := c.Leader()
			// A few connections shared by the clients, as separate processes
			// would open their own.
			conns := make([]pb.BlobGCClient, 4)
			for i := range conns {
				conns[i] = pb.NewBlobGCClient(c.Conn(leader.Addr()))
			}
			runClients(b, clients, "pins", func(ctx context.Context, client, i int) error {
				h := make([]byte, 32)
				fastHash(h, uint64(i))
				_, err := conns[client%len(conns)].Pin(ctx, &pb.HashesRequest{Hashes: [][]byte{h}})
				return err
			})
		})
	}
}

// BenchmarkReportDelta1000: delta reports that each add 1,000 hashes and
// remove the previous delta's 1,000, from 16 VM nodes concurrently (each
// node's deltas in sequence), to the leader.
func BenchmarkReportDelta1000(b *testing.B) {
	const nodes, per = 16, 1000
	c := benchCluster(b)
	leader := c.Leader()
	cl := pb.NewBlobGCClient(c.Conn(leader.Addr()))
	ctx := context.Background()
	type nodeState struct {
		seq  uint64
		prev [][]byte
	}
	st := make([]*nodeState, nodes)
	for n := range st {
		st[n] = &nodeState{seq: 1}
		if _, err := cl.Report(ctx, &pb.ReportRequest{NodeId: fmt.Sprintf("vm-%d", n), Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1}); err != nil {
			b.Fatal(err)
		}
	}
	runClients(b, nodes, "reports", func(ctx context.Context, client, i int) error {
		ns := st[client]
		add := make([][]byte, per)
		buf := make([]byte, per*32)
		for j := range add {
			add[j] = buf[j*32 : (j+1)*32]
			fastHash(add[j], uint64(i)*per+uint64(j))
		}
		ns.seq++
		_, err := cl.Report(ctx, &pb.ReportRequest{NodeId: fmt.Sprintf("vm-%d", client), Kind: pb.ReportKind_REPORT_KIND_DELTA,
			Seq: ns.seq, Active: add, RemovedActive: ns.prev})
		ns.prev = add
		return err
	})
}

// BenchmarkFailover: the leader of a 3-server cluster (default LAN timings)
// is killed; the time until the next write is acknowledged, with a client
// retrying every 10 ms through a surviving server. The killed server is
// restarted before the next round.
func BenchmarkFailover(b *testing.B) {
	c := benchCluster(b)
	var gaps []time.Duration
	for i := 0; i < b.N; i++ {
		leader := c.Leader()
		var other *cluster.Server
		for _, s := range c.Followers() {
			other = s
			break
		}
		cl := c.RawClient(other)
		h := make([]byte, 32)
		fastHash(h, uint64(i))
		killed := time.Now()
		c.Kill(c.Index(leader))
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := cl.Pin(ctx, &pb.HashesRequest{Hashes: [][]byte{h}})
			cancel()
			if err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		gaps = append(gaps, time.Since(killed))
		b.StopTimer()
		c.Restart(c.Index(nil))
		c.WaitConverged()
		b.StartTimer()
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	b.ReportMetric(float64(gaps[len(gaps)/2].Milliseconds()), "median_ms")
	b.ReportMetric(float64(gaps[len(gaps)-1].Milliseconds()), "max_ms")
}

// BenchmarkRegister1000: RegisterBlobs of 1,000 fresh hashes per call from
// 16 concurrent clients to the leader; reports hashes/s.
func BenchmarkRegister1000(b *testing.B) {
	const clients, per = 16, 1000
	c := benchCluster(b)
	cl := pb.NewBlobGCClient(c.Conn(c.Leader().Addr()))
	runClients(b, clients, "calls", func(ctx context.Context, client, i int) error {
		hs := make([][]byte, per)
		buf := make([]byte, per*32)
		for j := range hs {
			hs[j] = buf[j*32 : (j+1)*32]
			fastHash(hs[j], uint64(i)*per+uint64(j))
		}
		_, err := cl.RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hs})
		return err
	})
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "hashes/s")
}

// BenchmarkFullReport100: full reports of 100 fresh hashes from 16 VM nodes
// concurrently, to the leader.
func BenchmarkFullReport100(b *testing.B) {
	const nodes, per = 16, 100
	c := benchCluster(b)
	cl := pb.NewBlobGCClient(c.Conn(c.Leader().Addr()))
	seqs := make([]uint64, nodes)
	runClients(b, nodes, "reports", func(ctx context.Context, client, i int) error {
		hs := make([][]byte, per)
		buf := make([]byte, per*32)
		for j := range hs {
			hs[j] = buf[j*32 : (j+1)*32]
			fastHash(hs[j], uint64(i)*per+uint64(j))
		}
		seqs[client]++
		_, err := cl.Report(ctx, &pb.ReportRequest{NodeId: fmt.Sprintf("vm-%d", client), Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: seqs[client], Active: hs})
		return err
	})
}

// BenchmarkGraceMarkAfterLeaderKill: a blob half way through its 2 s grace
// period when the leader is killed; reports how long after grace + the
// election gap the new leader marks it (ms-late; about one 100 ms cycle on
// a quiet machine) and the election gap (ms-gap). Test raft timings.
func BenchmarkGraceMarkAfterLeaderKill(b *testing.B) {
	var gap, late time.Duration
	for range b.N {
		g, l := markAcrossLeaderKill(b)
		gap, late = gap+g, late+l
	}
	b.ReportMetric(float64(gap.Milliseconds())/float64(b.N), "ms-gap")
	b.ReportMetric(float64(late.Milliseconds())/float64(b.N), "ms-late")
}
