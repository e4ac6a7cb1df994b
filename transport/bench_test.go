package transport

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// benchCluster starts a 3-node raft cluster on loopback with raft-boltdb
// (fsync on) and the given transport kind (cfg configures the gRPC one),
// and returns its leader.
func benchCluster(b *testing.B, kind string, cfg Config) *raft.Raft {
	var rafts []*raft.Raft
	var servers []raft.Server
	for i := range 3 {
		var trans raft.Transport
		switch kind {
		case "grpc":
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			trans = newNodeOn(b, lis, cfg, nil).trans
		case "tcp":
			nt, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = nt.Close() })
			trans = nt
		}
		dir := b.TempDir()
		store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
		if err != nil {
			b.Fatal(err)
		}
		snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 1, hclog.NewNullLogger())
		if err != nil {
			b.Fatal(err)
		}
		rc := raft.DefaultConfig()
		rc.LocalID = raft.ServerID(fmt.Sprint("node", i))
		rc.Logger = hclog.NewNullLogger()
		rc.SnapshotThreshold = 1 << 30
		rc.SnapshotInterval = time.Hour
		r, err := raft.NewRaft(rc, &testFSM{}, store, store, snaps, trans)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_ = r.Shutdown().Error()
			_ = store.Close()
		})
		rafts = append(rafts, r)
		servers = append(servers, raft.Server{ID: rc.LocalID, Address: trans.LocalAddr()})
	}
	if err := rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range rafts {
			if r.State() == raft.Leader {
				// Let the first configuration commit everywhere.
				if err := r.Barrier(10 * time.Second).Error(); err != nil {
					b.Fatal(err)
				}
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatal("no leader")
	return nil
}

// BenchmarkRaftApply measures committed Applies per second and their p99
// latency on a 3-node cluster, 64 concurrent appliers, 100-byte entries,
// once over this transport and once over raft's NetworkTransport.
func BenchmarkRaftApply(b *testing.B) {
	for _, kind := range []string{"grpc", "tcp"} {
		b.Run("transport="+kind, func(b *testing.B) {
			benchApply(b, benchCluster(b, kind, Config{}), 64, 100)
		})
	}
}

// BenchmarkRaftApplyLarge measures replication of entries near the state
// machine's 1 MiB command limit (16 concurrent appliers, so raft batches up
// to 16 MiB) under a small and the default gRPC message limit: with the
// small one every batch is split into several AppendEntries requests.
func BenchmarkRaftApplyLarge(b *testing.B) {
	for _, limit := range []int{4 << 20, DefaultMaxMessageSize} {
		b.Run(fmt.Sprintf("max-message=%dMiB", limit>>20), func(b *testing.B) {
			benchApply(b, benchCluster(b, "grpc", Config{MaxMessageSize: limit}), 16, 1000*1000)
		})
	}
}

// benchApply runs b.N Applies of size-byte entries from appliers goroutines
// and reports throughput and latency.
func benchApply(b *testing.B, leader *raft.Raft, appliers, size int) {
	entry := make([]byte, size)
	latencies := make([][]time.Duration, appliers)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range appliers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := leader.Apply(entry, 10*time.Second).Error(); err != nil {
					b.Error(err)
					return
				}
				latencies[w] = append(latencies[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(latencies...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	p99 := all[min(len(all)-1, len(all)*99/100)]
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(len(all)*size)/elapsed.Seconds()/1e6, "MB/s")
}
