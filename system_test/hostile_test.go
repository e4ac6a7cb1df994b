package systemtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/internal/rawproto"
)

// rssBound is the most resident memory a server may use under the hostile
// load below (about 40 MB when idle).
const rssBound = 768 << 20

// attackStats counts the hostile calls by kind and outcome.
type attackStats struct {
	mu    sync.Mutex
	calls map[string]int
	bad   []string // outcomes a hardened server must not give
}

func (a *attackStats) record(kind string, err error, allowed ...codes.Code) {
	a.mu.Lock()
	defer a.mu.Unlock()
	code := status.Code(err)
	a.calls[kind+" "+code.String()]++
	// A busy cluster may answer anything with Unavailable or a deadline,
	// and a connection over its refusal budget gets ResourceExhausted.
	if code == codes.Unavailable || code == codes.DeadlineExceeded || code == codes.Canceled || slices.Contains(allowed, code) || throttled(err) {
		return
	}
	if len(a.bad) < 20 {
		a.bad = append(a.bad, fmt.Sprintf("%s: %v", kind, err))
	}
}

func (a *attackStats) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ks []string
	for k, n := range a.calls {
		ks = append(ks, fmt.Sprintf("%s=%d", k, n))
	}
	slices.Sort(ks)
	return strings.Join(ks, " ")
}

// throttled says whether err refused a call of a connection over its
// refusal budget.
func throttled(err error) bool {
	return status.Code(err) == codes.ResourceExhausted && strings.Contains(err.Error(), "too many refused calls")
}

// rawConn dials addr without the client's retries and with a send limit far
// above the servers' message limit.
func rawConn(tb testing.TB, addr string) *grpc.ClientConn {
	tb.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc
}

func wireHashes(from, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		h := hashN(from + i)
		out[i] = h[:]
	}
	return out
}

// attack runs a hostile client against the servers at addrs until ctx ends:
// oversized messages, full reports whose last chunk never comes, a flood of
// node ids, many streams on one connection and more connections than a
// server admits, floods of cycles, claims, confirms and digests, and
// malformed protobuf. only, if not empty, names the one attack to run (one
// of attackKinds). It returns when every attacker has stopped.
func attack(ctx context.Context, tb testing.TB, addrs []string, only string) *attackStats {
	st := &attackStats{calls: map[string]int{}}
	on := func(kind string) bool { return only == "" || only == kind }
	conns := make([]*grpc.ClientConn, len(addrs))
	for i, a := range addrs {
		conns[i] = rawConn(tb, a)
	}
	api := func(i int) blobgcv1.BlobGCClient { return blobgcv1.NewBlobGCClient(conns[i%len(conns)]) }
	var wg sync.WaitGroup
	loop := func(kind string, workers int, f func(w, i int)) {
		if !on(kind) {
			return
		}
		for w := range workers {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					f(w, i)
				}
			})
		}
	}
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 5*time.Second) }

	// 300,000 hashes: about 10 MB, over the 4 MiB message limit, refused
	// from its length prefix before the server reads it. Encoded once, so
	// that the attacker's CPU goes to sending, not to encoding.
	huge, err := proto.Marshal(&blobgcv1.HashesRequest{Hashes: wireHashes(1<<30, 300000)})
	if err != nil {
		tb.Fatal(err)
	}
	loop("oversized", 4, func(w, i int) {
		c, cancel := call()
		defer cancel()
		var out []byte
		err := conns[(w+i)%len(conns)].Invoke(c, blobgcv1.BlobGC_Pin_FullMethodName, &huge, &out, grpc.ForceCodecV2(rawproto.Codec{}))
		if status.Code(err) == codes.ResourceExhausted && !strings.Contains(err.Error(), "larger than max") && !throttled(err) {
			err = status.Errorf(codes.Internal, "not refused by the message limit: %v", err)
		}
		st.record("oversized", err, codes.ResourceExhausted)
	})
	// Chunked full reports of 10,000 hashes each whose last chunk never
	// comes, for 10 node ids.
	chunk := wireHashes(1<<29, 10000)
	loop("chunks", 1, func(_, i int) {
		if i >= 10 {
			<-ctx.Done()
			return
		}
		c, cancel := call()
		defer cancel()
		_, err := api(i).Report(c, &blobgcv1.ReportRequest{NodeId: fmt.Sprintf("staged-%d", i), Kind: blobgcv1.ReportKind_REPORT_KIND_FULL_CHUNK,
			Seq: 1, Active: chunk, Chunk: &blobgcv1.Chunk{ReportId: 1, Index: 0}})
		st.record("unfinished chunk", err, codes.OK, codes.ResourceExhausted)
	})
	// A flood of node ids, each with a small full report.
	loop("nodes", 2, func(w, i int) {
		c, cancel := call()
		defer cancel()
		_, err := api(i).Report(c, &blobgcv1.ReportRequest{NodeId: fmt.Sprintf("flood-%d-%d", w, i), Kind: blobgcv1.ReportKind_REPORT_KIND_FULL,
			Seq: 1, Active: wireHashes(i, 1)})
		st.record("node flood", err, codes.OK, codes.ResourceExhausted)
	})
	// Cycles, and claims and confirms that change nothing.
	loop("noops", 2, func(w, i int) {
		c, cancel := call()
		defer cancel()
		var err error
		switch i % 3 {
		case 0:
			_, err = api(w+i).RunCycle(c, &blobgcv1.RunCycleRequest{})
		case 1:
			_, err = api(w+i).Claim(c, &blobgcv1.HashesRequest{Hashes: wireHashes(1<<28+i, 100)})
		case 2:
			_, err = api(w+i).ConfirmCollected(c, &blobgcv1.HashesRequest{Hashes: wireHashes(1<<28+i, 100)})
		}
		st.record("cycle/claim/confirm flood", err, codes.OK)
	})
	// Full digests and the largest pages, which are limited in concurrency.
	loop("heavy", 3, func(w, i int) {
		c, cancel := call()
		defer cancel()
		var err error
		if i%2 == 0 {
			_, err = api(w+i).Digest(c, &blobgcv1.DigestRequest{})
		} else {
			_, err = api(w+i).ListNodes(c, &blobgcv1.ListNodesRequest{PageSize: 10000, Consistency: blobgcv1.Consistency_CONSISTENCY_STALE})
		}
		st.record("expensive reads", err, codes.OK, codes.ResourceExhausted)
	})
	// Malformed protobuf.
	loop("malformed", 1, func(_, i int) {
		c, cancel := call()
		defer cancel()
		var out []byte
		err := conns[i%len(conns)].Invoke(c, blobgcv1.BlobGC_RegisterBlobs_FullMethodName, &rawproto.Malformed, &out, grpc.ForceCodecV2(rawproto.Codec{}))
		st.record("malformed", err, codes.InvalidArgument)
	})
	// More streams on one connection than a server admits: long-lived
	// watches, and a burst of calls queued behind them.
	loop("streams", 1, func(_, _ int) {
		cc := rawConn(tb, addrs[0])
		for range 64 {
			w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
			if err == nil {
				go func() {
					for {
						if _, err := w.Recv(); err != nil {
							return
						}
					}
				}()
			}
		}
		var burst sync.WaitGroup
		for range 200 {
			burst.Go(func() {
				c, cancel := call()
				defer cancel()
				_, err := blobgcv1.NewBlobGCClient(cc).GetStats(c, &blobgcv1.GetStatsRequest{Consistency: blobgcv1.Consistency_CONSISTENCY_STALE})
				st.record("stream burst", err, codes.OK)
			})
		}
		burst.Wait()
		<-ctx.Done()
	})
	// More connections than one follower admits, held open without a
	// handshake.
	loop("conns", 1, func(_, _ int) {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		target := addrs[len(addrs)-1]
		for range 300 {
			c, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				continue
			}
			held = append(held, c)
		}
		<-ctx.Done()
	})
	wg.Wait()
	return st
}

// attackKinds names the attacks of attack, for running one alone.
var attackKinds = []string{"oversized", "chunks", "nodes", "noops", "heavy", "malformed", "streams", "conns"}

// rss returns a process's resident memory in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// cpuSeconds returns the user and system CPU time a process has used, from
// /proc (clock ticks of 1/100 s).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// serversCPU returns the CPU seconds used by all server processes.
func (pc *procCluster) serversCPU() float64 {
	var sum float64
	for _, p := range pc.procs {
		if p.cmd != nil {
			sum += cpuSeconds(p.cmd.Process.Pid)
		}
	}
	return sum
}

// sampleRSS records the highest RSS of each process until ctx ends.
func (pc *procCluster) sampleRSS(ctx context.Context) (peaks func() []int64) {
	maxes := make([]atomic.Int64, len(pc.procs))
	pids := make([]int, len(pc.procs))
	for i, p := range pc.procs {
		pids[i] = p.cmd.Process.Pid
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			for i, pid := range pids {
				if v, err := rss(pid); err == nil && v > maxes[i].Load() {
					maxes[i].Store(v)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() []int64 {
		<-done
		out := make([]int64, len(maxes))
		for i := range maxes {
			out[i] = maxes[i].Load()
		}
		return out
	}
}

// term returns the current raft term as the leader reports it.
func term(tb testing.TB, c *client.Client, addr string) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := c.MembersOf(ctx, addr)
	if err != nil {
		tb.Fatal(err)
	}
	return m.Term
}

// A hostile client changes nothing and starves nothing: while it attacks a
// real 3-server cluster, a well-behaved client keeps writing, the leader
// keeps its term (at most a couple of elections on a loaded machine), every
// server's memory stays bounded, every hostile call gets the answer its
// limit gives, and every write acknowledged to the well-behaved client is
// there afterwards.
func TestHostileClientChangesNothingAndStarvesNothing(t *testing.T) {
	pc := startProcs(t, 3, nil)
	good := pc.newClient()
	leader := pc.waitLeader(good)
	term0 := term(t, good, leader)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peaks := pc.sampleRSS(ctx)
	var acked []client.Hash
	var goodErrs []error
	goodDone := make(chan struct{})
	go func() {
		defer close(goodDone)
		for i := 0; ctx.Err() == nil; i++ {
			h := hashN(1<<20 + i)
			wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := good.Pin(wctx, []client.Hash{h})
			wcancel()
			if err != nil {
				goodErrs = append(goodErrs, err)
				continue
			}
			acked = append(acked, h)
		}
	}()
	stats := attack(ctx, t, pc.addrs(), "")
	<-goodDone
	t.Logf("hostile calls: %s", stats)
	for _, b := range stats.bad {
		t.Errorf("hostile call answered wrongly: %s", b)
	}
	for i, p := range peaks() {
		t.Logf("%s: peak RSS %d MiB", pc.procs[i].id, p>>20)
		if p > rssBound {
			t.Errorf("%s: peak RSS %d MiB over the bound %d MiB", pc.procs[i].id, p>>20, rssBound>>20)
		}
	}

	leader = pc.waitLeader(good)
	if term1 := term(t, good, leader); term1 > term0+2 {
		t.Errorf("term went from %d to %d under the hostile load: leadership was lost repeatedly", term0, term1)
	}
	if len(goodErrs) > 0 {
		t.Errorf("the well-behaved client failed %d times, first: %v", len(goodErrs), goodErrs[0])
	}
	if len(acked) < 10 {
		t.Errorf("the well-behaved client got only %d writes through in 10 s", len(acked))
	}
	pc.waitConverged(good)
	vctx := ctxT(t, 2*time.Minute)
	for _, h := range acked {
		st, err := good.Status(vctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != blobgcv1.BlobState_BLOB_STATE_PINNED {
			t.Fatalf("acknowledged pin of %s is %v afterwards", h, st.State)
		}
	}
	t.Logf("%d acknowledged writes of the well-behaved client all present", len(acked))
}

// TestHostileAttackerProcess is the attacker of BenchmarkHostileP99 in a
// process of its own (so that its goroutines and garbage do not share a Go
// runtime with the measured client). It runs only when started by the
// benchmark, and attacks until it gets SIGTERM.
func TestHostileAttackerProcess(t *testing.T) {
	addrs := os.Getenv("BLOBGC_HOSTILE_ADDRS")
	if addrs == "" {
		t.Skip("started by BenchmarkHostileP99 only")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	attack(ctx, t, strings.Split(addrs, ","), os.Getenv("BLOBGC_HOSTILE_ONLY"))
}

// startAttacker runs TestHostileAttackerProcess in a new process of this
// test binary; stop ends it.
func startAttacker(b *testing.B, addrs []string, only string) (pid int, stop func()) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHostileAttackerProcess$", "-test.timeout=30m")
	cmd.Env = append(os.Environ(), "BLOBGC_HOSTILE_ADDRS="+strings.Join(addrs, ","), "BLOBGC_HOSTILE_ONLY="+only)
	cmd.Stderr = os.Stderr // stdout only says PASS
	orphanProof(cmd)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return cmd.Process.Pid, func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
}

// BenchmarkHostileP99 measures a well-behaved client's pin latency against
// three server processes, first quiet and then while the hostile client of
// TestHostileClientChangesNothingAndStarvesNothing attacks from a process of
// its own (all attacks, then each alone), and reports both p99s, their
// ratio (the target is at most 3) and the CPU the servers and the attacker
// used. The attacker runs on the same machine, so on a small one its CPU
// counts against the servers.
func BenchmarkHostileP99(b *testing.B) {
	pc := startProcs(b, 3, nil)
	good := pc.newClient()
	pc.waitLeader(good)
	var next atomic.Int64
	for _, kind := range append([]string{"all"}, attackKinds...) {
		b.Run("attack="+kind, func(b *testing.B) {
			measure := func() []time.Duration {
				var lat []time.Duration
				for range b.N {
					h := hashN(1<<21 + int(next.Add(1)))
					t0 := time.Now()
					if _, err := good.Pin(context.Background(), []client.Hash{h}); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				slices.Sort(lat)
				return lat
			}
			p99 := func(l []time.Duration) float64 { return float64(l[min(len(l)-1, len(l)*99/100)].Microseconds()) / 1000 }
			only := kind
			if kind == "all" {
				only = ""
			}
			b.ResetTimer()
			quiet := measure()
			pid, stop := startAttacker(b, pc.addrs(), only)
			time.Sleep(2 * time.Second) // let the attack reach full strength
			cpu0, att0, t0 := pc.serversCPU(), cpuSeconds(pid), time.Now()
			loud := measure()
			wall := time.Since(t0).Seconds()
			cpu1, att1 := pc.serversCPU(), cpuSeconds(pid)
			stop()
			b.StopTimer()
			b.ReportMetric(p99(quiet), "quiet-p99-ms")
			b.ReportMetric(p99(loud), "attacked-p99-ms")
			b.ReportMetric(p99(loud)/p99(quiet), "p99-ratio")
			b.ReportMetric((cpu1-cpu0)/wall, "servers-cores")
			b.ReportMetric((att1-att0)/wall, "attacker-cores")
		})
	}
}
