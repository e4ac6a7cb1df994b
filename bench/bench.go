// Package bench drives a blobgc cluster the way its users do — VM nodes
// sending full and delta reports, operators registering and pinning blobs,
// sweepers claiming, dashboards reading — through the client package, and
// measures throughput and latency.
//
// A run starts Clients workers that share Conns client.Client instances
// (each holds one connection per server). Every worker picks its next
// operation from the weighted Mix, so a run can be one pure workload
// ("pin=1") or a blend. Each worker that reports is one simulated VM node
// with its own Reporter, so delta sequence numbers stay in order. Hashes are
// drawn from a namespace unique to the run, so runs against the same cluster
// do not collide. The run ends after Duration or Total operations, whichever
// comes first; latencies of every operation are kept and summarised as
// percentiles and a histogram, overall and per operation.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blobgc/blobgc/client"
)

// Op names one kind of operation.
type Op string

// The operations a run can mix.
const (
	OpPin         Op = "pin"          // coordinator pin of Batch fresh hashes
	OpRegister    Op = "register"     // RegisterBlobs of Batch fresh hashes
	OpFull        Op = "full"         // a VM node's full report of ReportSize hashes
	OpDelta       Op = "delta"        // a VM node's delta: DeltaSize added, the previous delta's removed
	OpStatus      Op = "status"       // linearizable GetStatus of a hash this worker wrote
	OpStatusStale Op = "status-stale" // stale GetStatus, answered by any server
	OpClaim       Op = "claim"        // a sweeper's Claim of Batch hashes, then ConfirmCollected of what was granted
)

// Ops lists every operation, in the order results are printed.
var Ops = []Op{OpPin, OpRegister, OpFull, OpDelta, OpStatus, OpStatusStale, OpClaim}

// Config describes a run.
type Config struct {
	Servers       []string
	ClientOptions []client.Option
	Clients       int           // concurrent workers (default 1)
	Conns         int           // client.Client instances shared by the workers (default 1)
	Duration      time.Duration // stop after this long (0: only Total)
	Total         int           // stop after this many operations (0: only Duration)
	Mix           map[Op]int    // weights; default pin=1
	Batch         int           // hashes per pin, register and claim (default 1)
	ReportSize    int           // hashes per full report (default 100)
	DeltaSize     int           // hashes added (and removed) per delta (default 100)
	// Progress, if set, gets a live progress line every ProgressEvery
	// (default 1 s), overwritten in place with "\r".
	Progress      io.Writer
	ProgressEvery time.Duration
}

// ParseMix parses "pin=3,status=1" into weights.
func ParseMix(s string) (map[Op]int, error) {
	mix := map[Op]int{}
	for _, part := range strings.Split(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			w = "1"
		}
		op := Op(name)
		if !validOp(op) {
			return nil, fmt.Errorf("mix: unknown operation %q (want %s)", name, opList())
		}
		n, err := strconv.Atoi(w)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("mix: weight of %s: %q is not a whole number >= 0", name, w)
		}
		mix[op] += n
	}
	return mix, nil
}

func validOp(op Op) bool {
	for _, o := range Ops {
		if o == op {
			return true
		}
	}
	return false
}

func opList() string {
	names := make([]string, len(Ops))
	for i, o := range Ops {
		names[i] = string(o)
	}
	return strings.Join(names, ", ")
}

func (c *Config) setDefaults() error {
	if len(c.Servers) == 0 {
		return errors.New("bench: no servers")
	}
	if c.Clients <= 0 {
		c.Clients = 1
	}
	if c.Conns <= 0 {
		c.Conns = 1
	}
	if c.Conns > c.Clients {
		c.Conns = c.Clients
	}
	if c.Duration <= 0 && c.Total <= 0 {
		return errors.New("bench: give a duration or a total number of operations")
	}
	if len(c.Mix) == 0 {
		c.Mix = map[Op]int{OpPin: 1}
	}
	sum := 0
	for op, w := range c.Mix {
		if !validOp(op) {
			return fmt.Errorf("bench: unknown operation %q", op)
		}
		sum += w
	}
	if sum == 0 {
		return errors.New("bench: the mix has no operation with a weight above 0")
	}
	if c.Batch <= 0 {
		c.Batch = 1
	}
	if c.ReportSize <= 0 {
		c.ReportSize = 100
	}
	if c.DeltaSize <= 0 {
		c.DeltaSize = 100
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = time.Second
	}
	return nil
}

// Result is what a run measured.
type Result struct {
	Clients     int               `json:"clients"`
	Conns       int               `json:"conns"`
	Elapsed     time.Duration     `json:"elapsed_ns"`
	Ops         int               `json:"ops"`
	Errors      int               `json:"errors"`
	OpsPerSec   float64           `json:"ops_per_sec"`
	HashesPerS  float64           `json:"hashes_per_sec"`
	Latency     Summary           `json:"latency"`
	PerOp       map[Op]*OpResult  `json:"per_op"`
	FirstErrors []string          `json:"first_errors,omitempty"`
	Histogram   []HistogramBucket `json:"histogram"`
	byOp        map[Op][]time.Duration
}

// OpResult is one operation's share of a run.
type OpResult struct {
	Ops       int     `json:"ops"`
	Errors    int     `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	Latency   Summary `json:"latency"`
}

// Summary holds latency percentiles, in seconds for JSON.
type Summary struct {
	Mean  float64 `json:"mean_s"`
	P50   float64 `json:"p50_s"`
	P90   float64 `json:"p90_s"`
	P99   float64 `json:"p99_s"`
	P999  float64 `json:"p999_s"`
	Max   float64 `json:"max_s"`
	Count int     `json:"count"`
}

// HistogramBucket counts the latencies up to UpTo seconds (and above the
// previous bucket).
type HistogramBucket struct {
	UpTo  float64 `json:"up_to_s"`
	Count int     `json:"count"`
}

// worker is one simulated client: a VM node when it reports.
type worker struct {
	c        *client.Client
	rng      *mrand.Rand
	ns       uint64 // this run's hash namespace
	id       int
	next     uint64 // counter of fresh hashes
	reporter *client.Reporter
	prev     []client.Hash // the last delta's additions
	written  []client.Hash // recent hashes this worker registered or pinned
}

func (w *worker) fresh(n int) []client.Hash {
	hs := make([]client.Hash, n)
	for i := range hs {
		w.next++
		hs[i] = HashOf(w.ns, uint64(w.id)<<40|w.next)
	}
	return hs
}

func (w *worker) remember(hs []client.Hash) {
	w.written = append(w.written, hs...)
	if over := len(w.written) - 4096; over > 0 {
		w.written = append(w.written[:0], w.written[over:]...)
	}
}

func (w *worker) known() client.Hash {
	if len(w.written) == 0 {
		return HashOf(w.ns, uint64(w.id)<<40)
	}
	return w.written[w.rng.IntN(len(w.written))]
}

// HashOf returns a well-spread hash for (namespace, n): unique per pair, and
// cheap enough not to show in the numbers.
func HashOf(ns, n uint64) client.Hash {
	var h client.Hash
	x := ns ^ n*0x9e3779b97f4a7c15
	for i := 0; i < 4; i++ {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(h[i*8:], z^(z>>31))
	}
	return h
}

// do runs one operation and returns how many hashes it carried.
func (w *worker) do(ctx context.Context, cfg *Config, op Op) (int, error) {
	switch op {
	case OpPin:
		hs := w.fresh(cfg.Batch)
		_, err := w.c.Pin(ctx, hs)
		w.remember(hs)
		return len(hs), err
	case OpRegister:
		hs := w.fresh(cfg.Batch)
		_, err := w.c.RegisterBlobs(ctx, hs)
		w.remember(hs)
		return len(hs), err
	case OpFull:
		hs := w.fresh(cfg.ReportSize)
		return len(hs), w.reporter.Full(ctx, hs, nil)
	case OpDelta:
		add := w.fresh(cfg.DeltaSize)
		err := w.reporter.Delta(ctx, add, w.prev, nil, nil)
		w.prev = add
		return len(add) * 2, err
	case OpStatus:
		_, err := w.c.Status(ctx, w.known())
		return 1, err
	case OpStatusStale:
		_, err := w.c.Status(ctx, w.known(), client.Stale())
		return 1, err
	case OpClaim:
		hs := w.fresh(cfg.Batch)
		granted, _, err := w.c.Claim(ctx, hs)
		if err == nil && len(granted) > 0 {
			_, err = w.c.ConfirmCollected(ctx, granted)
		}
		return len(hs), err
	}
	return 0, fmt.Errorf("bench: unknown operation %q", op)
}

type sample struct {
	op  Op
	lat time.Duration
	err error
}

// Run runs the benchmark described by cfg.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	clients := make([]*client.Client, cfg.Conns)
	for i := range clients {
		c, err := client.New(cfg.Servers, cfg.ClientOptions...)
		if err != nil {
			for _, o := range clients[:i] {
				o.Close()
			}
			return nil, err
		}
		clients[i] = c
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()

	var seed [8]byte
	rand.Read(seed[:])
	ns := binary.LittleEndian.Uint64(seed[:])
	ops, weights := weighted(cfg.Mix)
	return Load(ctx, cfg.Load(), func(i int) Worker {
		w := &worker{c: clients[i%len(clients)], rng: mrand.New(mrand.NewPCG(ns, uint64(i))), ns: ns, id: i}
		w.reporter = w.c.Reporter(fmt.Sprintf("bench-%x-%d", ns&0xffffff, i))
		return func(ctx context.Context) (Op, int, error) {
			op := pick(w.rng, ops, weights)
			n, err := w.do(ctx, &cfg, op)
			return op, n, err
		}
	})
}

// LoadConfig is what Load needs of a run: how many workers, how long, and
// where the progress line goes.
type LoadConfig struct {
	Clients, Conns int
	Duration       time.Duration
	Total          int
	Progress       io.Writer
	ProgressEvery  time.Duration
}

// Load returns the part of cfg that Load uses.
func (c Config) Load() LoadConfig {
	return LoadConfig{Clients: c.Clients, Conns: c.Conns, Duration: c.Duration, Total: c.Total, Progress: c.Progress, ProgressEvery: c.ProgressEvery}
}

// A Worker runs one operation and says which it was and how many hashes
// (or keys) it carried.
type Worker func(ctx context.Context) (op Op, n int, err error)

// Load is the measuring loop of Run, for any system under test: it runs
// lc.Clients workers made by newWorker until lc.Duration has passed or
// lc.Total operations have started, and summarises what they did. An
// operation in flight when the time is up runs to its end.
func Load(ctx context.Context, lc LoadConfig, newWorker func(i int) Worker) (*Result, error) {
	if lc.ProgressEvery <= 0 {
		lc.ProgressEvery = time.Second
	}
	runCtx := ctx
	var cancel context.CancelFunc = func() {}
	if lc.Duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, lc.Duration)
	}
	defer cancel()

	var started, done, failed, hashes atomic.Int64
	samples := make([][]sample, lc.Clients)
	var wg sync.WaitGroup
	start := time.Now()
	stopProgress := progress(lc, start, &done, &failed)
	for i := 0; i < lc.Clients; i++ {
		do := newWorker(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				if lc.Total > 0 && started.Add(1) > int64(lc.Total) {
					return
				}
				t0 := time.Now()
				op, n, err := do(ctx)
				lat := time.Since(t0)
				if err != nil && ctx.Err() != nil {
					return
				}
				samples[i] = append(samples[i], sample{op, lat, err})
				done.Add(1)
				if err != nil {
					failed.Add(1)
				} else {
					hashes.Add(int64(n))
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return summarise(lc, elapsed, samples, hashes.Load()), nil
}

func weighted(mix map[Op]int) ([]Op, []int) {
	var ops []Op
	var cum []int
	sum := 0
	for _, op := range Ops { // fixed order: the same mix picks the same way
		if w := mix[op]; w > 0 {
			sum += w
			ops = append(ops, op)
			cum = append(cum, sum)
		}
	}
	return ops, cum
}

func pick(r *mrand.Rand, ops []Op, cum []int) Op {
	x := r.IntN(cum[len(cum)-1])
	return ops[sort.SearchInts(cum, x+1)]
}

// progress prints a live line until the returned stop is called.
func progress(cfg LoadConfig, start time.Time, done, failed *atomic.Int64) (stop func()) {
	if cfg.Progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.ProgressEvery)
		defer t.Stop()
		var last int64
		lastAt := start
		for {
			select {
			case <-quit:
				fmt.Fprint(cfg.Progress, "\r\033[K")
				return
			case now := <-t.C:
				n := done.Load()
				rate := float64(n-last) / now.Sub(lastAt).Seconds()
				last, lastAt = n, now
				fmt.Fprintf(cfg.Progress, "\r\033[K%6.1fs  %d ops  %.0f ops/s  %d errors", now.Sub(start).Seconds(), n, rate, failed.Load())
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

func summarise(cfg LoadConfig, elapsed time.Duration, samples [][]sample, hashes int64) *Result {
	r := &Result{Clients: cfg.Clients, Conns: cfg.Conns, Elapsed: elapsed, PerOp: map[Op]*OpResult{}, byOp: map[Op][]time.Duration{}}
	var all []time.Duration
	for _, ss := range samples {
		for _, s := range ss {
			or := r.PerOp[s.op]
			if or == nil {
				or = &OpResult{}
				r.PerOp[s.op] = or
			}
			or.Ops++
			r.Ops++
			if s.err != nil {
				or.Errors++
				r.Errors++
				if len(r.FirstErrors) < 5 {
					r.FirstErrors = append(r.FirstErrors, fmt.Sprintf("%s: %v", s.op, s.err))
				}
				continue
			}
			all = append(all, s.lat)
			r.byOp[s.op] = append(r.byOp[s.op], s.lat)
		}
	}
	secs := elapsed.Seconds()
	r.OpsPerSec = float64(r.Ops-r.Errors) / secs
	r.HashesPerS = float64(hashes) / secs
	r.Latency = summary(all)
	r.Histogram = histogram(all)
	for op, or := range r.PerOp {
		or.OpsPerSec = float64(or.Ops-or.Errors) / secs
		or.Latency = summary(r.byOp[op])
	}
	return r
}

func summary(lat []time.Duration) Summary {
	if len(lat) == 0 {
		return Summary{}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		if i < 0 {
			i = 0
		}
		return lat[i].Seconds()
	}
	return Summary{
		Mean: (sum / time.Duration(len(lat))).Seconds(),
		P50:  q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999),
		Max: lat[len(lat)-1].Seconds(), Count: len(lat),
	}
}

// histogram buckets sorted latencies by powers of two from 100 µs, like
// etcd's benchmark tool prints them.
func histogram(sorted []time.Duration) []HistogramBucket {
	if len(sorted) == 0 {
		return nil
	}
	var out []HistogramBucket
	bound := 100 * time.Microsecond
	i := 0
	for i < len(sorted) {
		n := 0
		for i < len(sorted) && sorted[i] <= bound {
			n++
			i++
		}
		out = append(out, HistogramBucket{UpTo: bound.Seconds(), Count: n})
		bound *= 2
	}
	return out
}

// WriteText prints r for a person: totals, percentiles, a histogram and one
// line per operation.
func (r *Result) WriteText(w io.Writer) {
	fmt.Fprintf(w, "Summary (%d clients, %d connections):\n", r.Clients, r.Conns)
	fmt.Fprintf(w, "  Total:      %.2f s\n", r.Elapsed.Seconds())
	fmt.Fprintf(w, "  Operations: %d (%d errors)\n", r.Ops, r.Errors)
	fmt.Fprintf(w, "  Throughput: %.1f ops/s, %.0f hashes/s\n", r.OpsPerSec, r.HashesPerS)
	l := r.Latency
	fmt.Fprintf(w, "  Latency:    mean %s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		ms(l.Mean), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max))
	if len(r.Histogram) > 0 {
		fmt.Fprintln(w, "\nResponse time histogram:")
		most := 0
		for _, b := range r.Histogram {
			most = max(most, b.Count)
		}
		for _, b := range r.Histogram {
			bar := 0
			if most > 0 {
				bar = b.Count * 40 / most
			}
			fmt.Fprintf(w, "  <= %9s [%7d] |%s\n", ms(b.UpTo), b.Count, strings.Repeat("∎", bar))
		}
	}
	if len(r.PerOp) > 1 {
		fmt.Fprintln(w, "\nPer operation:")
		var names []string
		for op := range r.PerOp {
			names = append(names, string(op))
		}
		sort.Strings(names)
		for _, name := range names {
			op, or := Op(name), r.PerOp[Op(name)]
			fmt.Fprintf(w, "  %-12s %8d ops %5d errors %9.1f ops/s  p50 %s  p99 %s\n", op, or.Ops, or.Errors, or.OpsPerSec, ms(or.Latency.P50), ms(or.Latency.P99))
		}
	}
	if len(r.FirstErrors) > 0 {
		fmt.Fprintln(w, "\nFirst errors:")
		for _, e := range r.FirstErrors {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

func ms(s float64) string { return fmt.Sprintf("%.2fms", s*1000) }
