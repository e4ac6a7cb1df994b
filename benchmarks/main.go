package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/blobgc/blobgc/bench"
	"github.com/blobgc/blobgc/client"
)

// workload is one measurement, run against both systems where etcd has an
// equivalent.
type workload struct {
	Name    string
	Clients int
	blobgc  bench.Config // Servers and Duration are filled in per run
	etcdVal int          // size of each etcd put's value; 0: blobgc only
}

var workloads = []workload{
	{Name: "write, 1 client", Clients: 1, blobgc: bench.Config{Mix: map[bench.Op]int{bench.OpPin: 1}}, etcdVal: 32},
	{Name: "write, 16 clients", Clients: 16, blobgc: bench.Config{Mix: map[bench.Op]int{bench.OpPin: 1}}, etcdVal: 32},
	{Name: "write, 64 clients", Clients: 64, blobgc: bench.Config{Mix: map[bench.Op]int{bench.OpPin: 1}}, etcdVal: 32},
	{Name: "full report 100, 16 clients", Clients: 16, blobgc: bench.Config{Mix: map[bench.Op]int{bench.OpFull: 1}, ReportSize: 100}, etcdVal: 3200},
	{Name: "delta report 100, 16 clients", Clients: 16, blobgc: bench.Config{Mix: map[bench.Op]int{bench.OpDelta: 1}, DeltaSize: 50}, etcdVal: 3200},
	// The same 32,000 bytes per call through raft: 1,000 hashes against a
	// 32 KB value, so the absolute 1M hashes/s target has a yardstick. A
	// delta of 500 added and 500 removed is a report of 1,000 hashes.
	{Name: "register 1000/call, 16 clients", Clients: 16, blobgc: bench.Config{Mix: map[bench.Op]int{bench.OpRegister: 1}, Batch: 1000}, etcdVal: 32000},
	{Name: "register 1000/call, 64 clients", Clients: 64, blobgc: bench.Config{Mix: map[bench.Op]int{bench.OpRegister: 1}, Batch: 1000}, etcdVal: 32000},
	{Name: "full report 1000/call, 64 clients", Clients: 64, blobgc: bench.Config{Mix: map[bench.Op]int{bench.OpFull: 1}, ReportSize: 1000}, etcdVal: 32000},
	{Name: "delta report 1000/call, 64 clients", Clients: 64, blobgc: bench.Config{Mix: map[bench.Op]int{bench.OpDelta: 1}, DeltaSize: 500}, etcdVal: 32000},
}

// batched reports whether a workload's calls carry 1,000 hashes (a delta
// carries its additions and as many removals): its row gives hashes/s.
func (w workload) batched() bool {
	return max(w.blobgc.Batch, 2*w.blobgc.DeltaSize, w.blobgc.ReportSize) >= 1000
}

// measurement is one workload's result in one round.
type measurement struct {
	System   string  `json:"system"`
	Workload string  `json:"workload"`
	Round    int     `json:"round"`
	OpsPerS  float64 `json:"ops_per_sec"`
	HashesPS float64 `json:"hashes_per_sec"`
	P50      float64 `json:"p50_s"`
	P99      float64 `json:"p99_s"`
	P999     float64 `json:"p999_s"`
	Errors   int     `json:"errors"`
}

type report struct {
	Date         string               `json:"date"`
	LoadAvg      string               `json:"load_average"`
	Rounds       int                  `json:"rounds"`
	Duration     string               `json:"duration_per_workload"`
	BlobgcArgs   []string             `json:"blobgc_args"`
	Measurements []measurement        `json:"measurements"`
	Failover     map[string][]float64 `json:"failover_s"` // system → seconds per kill
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "etcd-member" {
		if err := runEtcdMember(os.Args[2:]); err != nil {
			log.Fatal(err)
		}
		return
	}
	var (
		rounds    = flag.Int("rounds", 3, "interleaved rounds (medians are reported)")
		duration  = flag.Duration("duration", 5*time.Second, "time per workload per round")
		failovers = flag.Int("failovers", 3, "leader kills per system per round")
		out       = flag.String("out", "bench-results", "directory for results.json, results.md and plots")
		bin       = flag.String("blobgc", "", "blobgc binary (required)")
		extra     = flag.String("blobgc-args", "", "extra flags for every blobgc server, space-separated (e.g. --log-store=wal)")
		basePort  = flag.Int("base-port", 20100, "first of the ports used (below 32768)")
		only      = flag.String("only", "", "run only workloads whose name contains this")
		replot    = flag.Bool("replot", false, "run nothing: write results.md and the plots again from --out/results.json")
	)
	flag.Parse()
	if *replot {
		must(writeReport(*out, nil, *only))
		return
	}
	if *bin == "" {
		log.Fatal("--blobgc is required")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	rep := &report{Date: time.Now().UTC().Format(time.RFC3339), Rounds: *rounds, Duration: duration.String(),
		BlobgcArgs: strings.Fields(*extra), Failover: map[string][]float64{}}
	var sel []workload
	for _, w := range workloads {
		if strings.Contains(w.Name, *only) {
			sel = append(sel, w)
		}
	}
	for r := 0; r < *rounds; r++ {
		systems := []string{"blobgc", "etcd"}
		if r%2 == 1 {
			systems = []string{"etcd", "blobgc"} // neither always goes first
		}
		for _, sys := range systems {
			log.Printf("round %d/%d: %s", r+1, *rounds, sys)
			ms, fo, err := runSystem(sys, *bin, rep.BlobgcArgs, *basePort, sel, *duration, *failovers, r)
			if err != nil {
				log.Fatalf("%s: %v", sys, err)
			}
			rep.Measurements = append(rep.Measurements, ms...)
			rep.Failover[sys] = append(rep.Failover[sys], fo...)
			// The batched rows leave gigabytes of dirty pages behind: the
			// next system's fsyncs must not queue behind their writeback.
			syscall.Sync()
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		rep.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	must(writeReport(*out, rep, *only))
}

// writeReport writes results.json (unless rep is nil: then it reads it),
// results.md and the plots into dir, and prints the table.
func writeReport(dir string, rep *report, only string) error {
	path := filepath.Join(dir, "results.json")
	if rep == nil {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rep = &report{}
		if err := json.Unmarshal(b, rep); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	} else {
		js, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(path, js, 0o644); err != nil {
			return err
		}
	}
	var sel []workload
	for _, w := range workloads {
		if strings.Contains(w.Name, only) {
			sel = append(sel, w)
		}
	}
	md := table(rep, sel)
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	return plots(rep, sel, dir)
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// runSystem starts a fresh cluster of sys, runs the workloads and the
// failovers, and stops it.
func runSystem(sys, bin string, extra []string, basePort int, sel []workload, d time.Duration, failovers, round int) ([]measurement, []float64, error) {
	dir, err := os.MkdirTemp("", "compare-"+sys+"-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	var ms []measurement
	record := func(w workload, r *bench.Result) {
		ms = append(ms, measurement{System: sys, Workload: w.Name, Round: round, OpsPerS: r.OpsPerSec, HashesPS: r.HashesPerS,
			P50: r.Latency.P50, P99: r.Latency.P99, P999: r.Latency.P999, Errors: r.Errors})
		log.Printf("  %-32s %9.1f ops/s  p50 %6.2fms  p99 %6.2fms  errors %d", w.Name, r.OpsPerSec, r.Latency.P50*1000, r.Latency.P99*1000, r.Errors)
		for _, e := range r.FirstErrors {
			log.Printf("    error: %s", e)
		}
	}
	var fo []float64
	switch sys {
	case "blobgc":
		bc, err := startBlobgc(bin, dir, basePort, extra)
		if err != nil {
			return nil, nil, err
		}
		defer bc.stopAll()
		for _, w := range sel {
			cfg := w.blobgc
			cfg.Servers, cfg.Clients, cfg.Conns, cfg.Duration = bc.addrs, w.Clients, min(w.Clients, 4), d
			r, err := bench.Run(ctx, cfg)
			if err != nil {
				return nil, nil, err
			}
			record(w, r)
		}
		for i := 0; i < failovers; i++ {
			gap, err := failoverBlobgc(bc)
			if err != nil {
				return nil, nil, err
			}
			fo = append(fo, gap.Seconds())
			log.Printf("  failover %d: %v", i+1, gap.Round(time.Millisecond))
		}
	case "etcd":
		ec, err := startEtcd(dir, basePort+50)
		if err != nil {
			return nil, nil, err
		}
		defer ec.stopAll()
		for _, w := range sel {
			if w.etcdVal == 0 {
				continue
			}
			r, err := loadEtcd(ctx, ec, w, d)
			if err != nil {
				return nil, nil, err
			}
			record(w, r)
		}
		for i := 0; i < failovers; i++ {
			gap, err := failoverEtcd(ec)
			if err != nil {
				return nil, nil, err
			}
			fo = append(fo, gap.Seconds())
			log.Printf("  failover %d: %v", i+1, gap.Round(time.Millisecond))
		}
	}
	return ms, fo, nil
}

// loadEtcd runs w's etcd equivalent: puts of fresh keys with values of
// w.etcdVal bytes, over min(clients, 4) clients, as bench.Run shares its
// connections.
func loadEtcd(ctx context.Context, ec *etcdCluster, w workload, d time.Duration) (*bench.Result, error) {
	conns := make([]*clientv3.Client, min(w.Clients, 4))
	for i := range conns {
		c, err := ec.client()
		if err != nil {
			return nil, err
		}
		defer c.Close()
		conns[i] = c
	}
	val := strings.Repeat("v", w.etcdVal)
	ns := rand.Uint64()
	return bench.Load(ctx, bench.LoadConfig{Clients: w.Clients, Duration: d}, func(i int) bench.Worker {
		c, n := conns[i%len(conns)], 0
		return func(ctx context.Context) (bench.Op, int, error) {
			n++
			_, err := c.Put(ctx, fmt.Sprintf("k/%x/%d/%d", ns, i, n), val)
			return "put", 1, err
		}
	})
}

// failoverBlobgc kills the leader and returns the time until a write
// through a surviving server is acknowledged; the killed server is then
// restarted and a leader awaited.
func failoverBlobgc(bc *blobgcCluster) (time.Duration, error) {
	leader := bc.leader()
	if leader < 0 {
		return 0, fmt.Errorf("no leader")
	}
	var survivors []string
	for i, a := range bc.addrs {
		if i != leader {
			survivors = append(survivors, a)
		}
	}
	cl, err := client.New(survivors, client.WithBackoff(5*time.Millisecond, 10*time.Millisecond))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	h := bench.HashOf(rand.Uint64(), 1)
	killed := time.Now()
	bc.kill(leader)
	if err := retryWrite(func(ctx context.Context) error { _, err := cl.Pin(ctx, []client.Hash{h}); return err }); err != nil {
		return 0, err
	}
	gap := time.Since(killed)
	if err := bc.start(leader); err != nil {
		return 0, err
	}
	// The next kill waits until the restarted server has caught up, so that
	// every kill finds a healthy cluster of three.
	return gap, waitUntil(2*time.Minute, "all servers caught up after the restart", func() bool {
		if bc.leader() < 0 {
			return false
		}
		all, err := bc.client()
		if err != nil {
			return false
		}
		defer all.Close()
		var idx []uint64
		for _, a := range bc.addrs {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			d, err := all.DigestOf(ctx, a)
			cancel()
			if err != nil {
				return false
			}
			idx = append(idx, d.AppliedIndex)
		}
		return idx[0] == idx[1] && idx[1] == idx[2]
	})
}

func failoverEtcd(ec *etcdCluster) (time.Duration, error) {
	leader := ec.leader()
	if leader < 0 {
		return 0, fmt.Errorf("no leader")
	}
	var survivors []string
	for i, a := range ec.clientAddrs {
		if i != leader {
			survivors = append(survivors, a)
		}
	}
	cl, err := clientv3.New(clientv3.Config{Endpoints: survivors, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	killed := time.Now()
	ec.kill(leader)
	if err := retryWrite(func(ctx context.Context) error { _, err := cl.Put(ctx, "failover", "x"); return err }); err != nil {
		return 0, err
	}
	gap := time.Since(killed)
	if err := ec.start(leader); err != nil {
		return 0, err
	}
	if err := ec.waitLeader(); err != nil {
		return 0, err
	}
	// As for blobgc: the restarted member catches up before the next kill.
	return gap, waitUntil(2*time.Minute, "all members caught up after the restart", func() bool {
		all, err := ec.client()
		if err != nil {
			return false
		}
		defer all.Close()
		var idx []uint64
		for _, a := range ec.clientAddrs {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := all.Status(ctx, a)
			cancel()
			if err != nil {
				return false
			}
			idx = append(idx, st.RaftAppliedIndex)
		}
		return idx[0] == idx[1] && idx[1] == idx[2]
	})
}

// retryWrite tries write every 10 ms, each try bounded to a second, until
// one succeeds or a minute has passed.
func retryWrite(write func(ctx context.Context) error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := write(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no write acknowledged within a minute: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// summary is one system's workload over all rounds: medians of the rounds'
// figures, and the errors of all rounds.
type summary struct {
	ops, hashes, p50, p99 float64
	errs                  int
}

// medians summarises one system's workload; ok is false when it did not run.
func medians(rep *report, sys, name string) (sm summary, ok bool) {
	var o, h, a, b []float64
	for _, m := range rep.Measurements {
		if m.System == sys && m.Workload == name {
			o, h, a, b = append(o, m.OpsPerS), append(h, m.HashesPS), append(a, m.P50), append(b, m.P99)
			sm.errs += m.Errors
		}
	}
	sm.ops, sm.hashes, sm.p50, sm.p99 = median(o), median(h), median(a), median(b)
	return sm, len(o) > 0
}

// withErrors marks a throughput cell whose rounds had failed requests: the
// rate then counts only what succeeded, and the ratio is not a comparison.
func withErrors(cell string, errs int) string {
	if errs == 0 {
		return cell
	}
	return fmt.Sprintf("%s, **%d errors**", cell, errs)
}

func table(rep *report, sel []workload) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Medians of %d interleaved rounds, %s per workload, %s, load average at the end %s.\n\n", rep.Rounds, rep.Duration, rep.Date, rep.LoadAvg)
	fmt.Fprintln(&sb, "| workload | blobgc ops/s | p50 | p99 | etcd ops/s | p50 | p99 | throughput ratio | p99 ratio |")
	fmt.Fprintln(&sb, "|---|---|---|---|---|---|---|---|---|")
	for _, w := range sel {
		b, _ := medians(rep, "blobgc", w.Name)
		e, ok := medians(rep, "etcd", w.Name)
		ops := fmt.Sprintf("%.0f", b.ops)
		if w.batched() || !ok {
			ops = fmt.Sprintf("%.0f (%.0f hashes/s)", b.ops, b.hashes)
		}
		ops = withErrors(ops, b.errs)
		if !ok {
			fmt.Fprintf(&sb, "| %s | %s | %.2f ms | %.2f ms | — | | | | |\n", w.Name, ops, b.p50*1000, b.p99*1000)
			continue
		}
		fmt.Fprintf(&sb, "| %s | %s | %.2f ms | %.2f ms | %s | %.2f ms | %.2f ms | %.2fx | %.2fx |\n",
			w.Name, ops, b.p50*1000, b.p99*1000, withErrors(fmt.Sprintf("%.0f", e.ops), e.errs), e.p50*1000, e.p99*1000, b.ops/e.ops, b.p99/e.p99)
	}
	bf, ef := median(rep.Failover["blobgc"]), median(rep.Failover["etcd"])
	if bf > 0 && ef > 0 {
		fmt.Fprintf(&sb, "| leader SIGKILL → next acknowledged write (median of %d) | %.0f ms | | | %.0f ms | | | %.2fx | |\n",
			len(rep.Failover["blobgc"]), bf*1000, ef*1000, bf/ef)
	}
	return sb.String()
}
