package systemtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/bench"
	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/internal/testnet"
)

// BenchmarkScale puts a real 3-server cluster (processes) at fleet scale:
// BLOBGC_SCALE_BLOBS registered blobs (default 10M) and BLOBGC_SCALE_NODES
// simulated VM nodes (default 1,000) sending delta reports. It reports how
// fast registration goes, report latency under that load, a GC cycle's
// latency, the leader's resident memory, the time to save a snapshot, how long a killed follower takes
// to restart and catch up, and how long a new server takes to join and
// catch up by snapshot. Run it alone:
//
//	go test -run '^$' -bench Scale -benchtime 1x -timeout 60m ./system_test/
func BenchmarkScale(b *testing.B) {
	blobs, nodes := envInt("BLOBGC_SCALE_BLOBS", 10_000_000), envInt("BLOBGC_SCALE_NODES", 1000)
	// The default snapshot threshold (8,192 entries) checked every 30 s rather
	// than 120 s, so that snapshots happen within the run and a joining server
	// catches up by one; each is a full copy of the state (580 MB at 10M blobs).
	settings := []string{"--snapshot-interval=30s", "--trailing-logs=1000", "--apply-timeout=60s"}
	pc := startProcs(b, 3, nil, settings...)
	c := pc.newClient()
	pc.waitLeader(c)
	ctx := context.Background()
	b.ResetTimer()

	// Registration: 1,000 hashes per call from 16 clients.
	reg, err := bench.Run(ctx, bench.Config{Servers: pc.addrs(), Clients: 16, Conns: 4, Total: blobs / 1000,
		Mix: map[bench.Op]int{bench.OpRegister: 1}, Batch: 1000})
	if err != nil || reg.Errors > 0 {
		b.Fatalf("register: %v %v", err, reg.FirstErrors)
	}
	b.ReportMetric(reg.HashesPerS, "registered-hashes/s")
	// The first cycle finds every registered blob new and unreferenced: it
	// is the one cycle whose work grows with the whole state, so it gets
	// minutes. One node reports first, or the cycle would be skipped
	// (min_nodes_reporting) and leave that work to the cycle after the
	// reports.
	if _, err := c.Report(ctx, &blobgcv1.ReportRequest{NodeId: "scale-probe", Kind: blobgcv1.ReportKind_REPORT_KIND_FULL, Seq: 1}); err != nil {
		b.Fatal(err)
	}
	slow, err := client.New(pc.addrs(), client.WithCallTimeout(10*time.Minute))
	if err != nil {
		b.Fatal(err)
	}
	defer slow.Close()
	t0 := time.Now()
	if _, err := slow.RunCycle(ctx, false); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(time.Since(t0).Seconds(), "first-cycle-s")

	// Reports: every node sends a full report of 100 hashes, then deltas.
	rep, err := bench.Run(ctx, bench.Config{Servers: pc.addrs(), Clients: nodes, Conns: 8, Duration: 30 * time.Second,
		Mix: map[bench.Op]int{bench.OpDelta: 1}, DeltaSize: 10})
	if err != nil || rep.Errors > 0 {
		b.Fatalf("reports: %v %v", err, rep.FirstErrors)
	}
	b.ReportMetric(rep.OpsPerSec, "reports/s")
	b.ReportMetric(rep.Latency.P50*1000, "report-p50-ms")
	b.ReportMetric(rep.Latency.P99*1000, "report-p99-ms")

	t0 = time.Now()
	if _, err := c.RunCycle(ctx, false); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "cycle-ms")

	leader := pc.index(pc.waitLeader(c))
	b.ReportMetric(float64(rssKiB(b, pc.procs[leader].cmd.Process.Pid))/1024, "leader-RSS-MiB")
	// Snapshot: the leader captures and streams the whole state (what
	// `blobgc snapshot save` does).
	var size countingWriter
	t0 = time.Now()
	if _, _, err := c.SaveSnapshot(ctx, func(*blobgcv1.SnapshotInfo) (io.Writer, error) { size = 0; return &size, nil }); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(time.Since(t0).Seconds(), "snapshot-save-s")
	b.ReportMetric(float64(size)/(1<<20), "snapshot-MiB")

	// Restart: a killed follower comes back and catches up.
	follower := (leader + 1) % 3
	pc.kill(follower)
	t0 = time.Now()
	pc.start(follower)
	pc.waitConverged(c)
	b.ReportMetric(time.Since(t0).Seconds(), "restart-catch-up-s")

	// Join: a fourth server joins and catches up by snapshot.
	p := &proc{id: "s4", addr: testnet.Addr(b), dir: b.TempDir() + "/s4"}
	p.args = []string{"server", "--id", p.id, "--data-dir", p.dir, "--listen", p.addr,
		"--join", strings.Join(pc.addrs(), ","), "--cycle-interval=-1s", "--insecure"}
	p.args = append(p.args, settings...)
	pc.procs = append(pc.procs, p)
	t0 = time.Now()
	pc.start(len(pc.procs) - 1)
	pc.waitConverged(c)
	b.ReportMetric(time.Since(t0).Seconds(), "join-catch-up-s")
	b.StopTimer()
	st, err := c.Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if st.Known < int64(blobs) {
		b.Fatalf("%d known blobs, want %d", st.Known, blobs)
	}
}

// countingWriter counts the bytes written to it.
type countingWriter int64

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}

// rssKiB reads a process's resident set size from /proc.
func rssKiB(tb testing.TB, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}
