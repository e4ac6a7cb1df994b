package client

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/internal/testnet"
)

// hashN returns a distinct hash for every n.
func hashN(n int) Hash {
	var h Hash
	binary.BigEndian.PutUint64(h[:8], uint64(n)+1)
	h[31] = 0xab
	return h
}

func hashesN(from, n int) []Hash {
	out := make([]Hash, n)
	for i := range out {
		out[i] = hashN(from + i)
	}
	return out
}

func newTestClient(t *testing.T, servers []string, opts ...Option) *Client {
	t.Helper()
	opts = append([]Option{WithBackoff(time.Millisecond, 5*time.Millisecond)}, opts...)
	c, err := New(servers, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNewValidatesAddresses(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	if _, err := New([]string{"no-port"}); err == nil {
		t.Fatal("New with an address without port succeeded")
	}
	if _, err := New([]string{"127.0.0.1:1"}, WithTLS("/nonexistent/ca.pem", "", "")); err == nil {
		t.Fatal("New with a missing CA file succeeded")
	}
	c, err := New([]string{" 127.0.0.1:1 ", "127.0.0.1:1", "", "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Servers(); len(got) != 2 {
		t.Fatalf("Servers() = %v, want the 2 distinct addresses", got)
	}
}

func TestFollowsLeaderHintAndHeader(t *testing.T) {
	leader, follower := startFake(t), startFake(t)
	leader.leader = func() string { return leader.addr }
	follower.answer = func(string, int, proto.Message) error { return hintErr(t, leader.addr) }

	c := newTestClient(t, []string{follower.addr})
	if _, err := c.Pin(context.Background(), hashesN(0, 1)); err != nil {
		t.Fatal(err)
	}
	if c.Leader() != leader.addr {
		t.Fatalf("Leader() = %q, want %q", c.Leader(), leader.addr)
	}
	// Known leader: later calls go straight to it.
	for i := 0; i < 5; i++ {
		if _, err := c.Pin(context.Background(), hashesN(0, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if n := follower.count("Pin"); n != 1 {
		t.Fatalf("follower saw %d pins, want 1", n)
	}
	if n := leader.count("Pin"); n != 6 {
		t.Fatalf("leader saw %d pins, want 6", n)
	}
}

func TestLearnsLeaderFromHeader(t *testing.T) {
	leader, follower := startFake(t), startFake(t)
	leader.leader = func() string { return leader.addr }
	follower.leader = func() string { return leader.addr } // forwards, answers, names the leader
	c := newTestClient(t, []string{follower.addr})
	if _, err := c.Stats(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.Leader() != leader.addr {
		t.Fatalf("Leader() = %q, want %q from the header", c.Leader(), leader.addr)
	}
	if _, err := c.Stats(context.Background()); err != nil {
		t.Fatal(err)
	}
	if leader.count("GetStats") != 1 || follower.count("GetStats") != 1 {
		t.Fatalf("calls: leader %d follower %d, want 1 and 1", leader.count("GetStats"), follower.count("GetStats"))
	}
}

func TestSkipsDeadServer(t *testing.T) {
	live := startFake(t)
	c := newTestClient(t, []string{testnet.Addr(t), live.addr})
	for i := 0; i < 4; i++ {
		if _, err := c.Pin(context.Background(), hashesN(0, 1)); err != nil {
			t.Fatalf("pin %d: %v", i, err)
		}
	}
	if live.count("Pin") != 4 {
		t.Fatalf("live server saw %d pins, want 4", live.count("Pin"))
	}
}

func TestLeaderDownFallsBackToRoundRobin(t *testing.T) {
	leader, other := startFake(t), startFake(t)
	leader.leader = func() string { return leader.addr }
	other.leader = leader.leader
	c := newTestClient(t, []string{leader.addr, other.addr})
	if _, err := c.Stats(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.Leader() != leader.addr {
		t.Fatalf("Leader() = %q", c.Leader())
	}
	leader.answer = func(string, int, proto.Message) error { return status.Error(codes.Unavailable, "leadership lost") }
	if _, err := c.Stats(context.Background()); err != nil {
		t.Fatal(err)
	}
	if other.count("GetStats") == 0 {
		t.Fatal("the call never reached the other server")
	}
}

func TestRetriesUnavailable(t *testing.T) {
	f := startFake(t)
	f.answer = func(_ string, n int, _ proto.Message) error {
		if n <= 3 {
			return status.Error(codes.Unavailable, "no leader")
		}
		return nil
	}
	c := newTestClient(t, []string{f.addr})
	if _, err := c.RunCycle(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if n := f.count("RunCycle"); n != 4 {
		t.Fatalf("RunCycle attempts = %d, want 4", n)
	}
}

func TestNeverRetriesClientErrors(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.FailedPrecondition, codes.ResourceExhausted, codes.NotFound, codes.Internal} {
		t.Run(code.String(), func(t *testing.T) {
			f := startFake(t)
			f.answer = func(string, int, proto.Message) error { return status.Error(code, "bad") }
			c := newTestClient(t, []string{f.addr})
			_, err := c.Pin(context.Background(), hashesN(0, 1))
			if status.Code(err) != code {
				t.Fatalf("err = %v, want code %v", err, code)
			}
			if n := f.count("Pin"); n != 1 {
				t.Fatalf("attempts = %d, want 1", n)
			}
		})
	}
}

// An attempt that times out has an unknown outcome: idempotent and
// deduplicated operations are retried.
func TestDeadlineExceededRetriedOnlyWhenIdempotent(t *testing.T) {
	f := startFake(t)
	f.answer = func(method string, n int, _ proto.Message) error {
		if n == 1 || method == "RunCycle" && n == 3 {
			return status.Error(codes.DeadlineExceeded, "apply timed out, outcome unknown")
		}
		return nil
	}
	c := newTestClient(t, []string{f.addr})
	if _, err := c.Pin(context.Background(), hashesN(0, 1)); err != nil {
		t.Fatalf("Pin: %v", err)
	}
	if n := f.count("Pin"); n != 2 {
		t.Fatalf("Pin attempts = %d, want 2", n)
	}
	if _, err := c.RunCycle(context.Background(), true); err != nil {
		t.Fatalf("dry-run RunCycle: %v", err)
	}
	if n := f.count("RunCycle"); n != 2 {
		t.Fatalf("dry-run RunCycle attempts = %d, want 2", n)
	}
	// A real cycle is retried too: its attempts carry one request id, which
	// the cluster runs once.
	if _, err := c.RunCycle(context.Background(), false); err != nil {
		t.Fatalf("RunCycle: %v", err)
	}
	if _, err := c.RunCycle(context.Background(), false); err != nil {
		t.Fatalf("RunCycle: %v", err)
	}
	var ids []string
	for _, r := range f.requests() {
		if rc, ok := r.(*blobgcv1.RunCycleRequest); ok && !rc.DryRun {
			ids = append(ids, rc.RequestId)
		}
	}
	if len(ids) != 3 || ids[0] == "" || ids[0] != ids[1] || ids[2] == ids[0] {
		t.Fatalf("RunCycle request ids %q: want one id per call, reused by its retry", ids)
	}
}

// The per-attempt timeout is enforced by the client itself.
func TestCallTimeoutRetriesSlowAttempt(t *testing.T) {
	f := startFake(t)
	release := make(chan struct{})
	f.answer = func(_ string, n int, _ proto.Message) error {
		if n == 1 {
			<-release
		}
		return nil
	}
	defer close(release)
	c := newTestClient(t, []string{f.addr}, WithCallTimeout(100*time.Millisecond))
	if _, err := c.Stats(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := f.count("GetStats"); n < 2 {
		t.Fatalf("attempts = %d, want a retry after the slow one", n)
	}
}

func TestGivesUpAtContextDeadline(t *testing.T) {
	f := startFake(t)
	f.answer = func(string, int, proto.Message) error { return status.Error(codes.Unavailable, "no leader") }
	c := newTestClient(t, []string{f.addr})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Stats(ctx)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want the servers' last error (Unavailable)", err)
	}
	if f.count("GetStats") < 2 {
		t.Fatal("no retries before the deadline")
	}
}

func TestRetryBudgetWithoutDeadline(t *testing.T) {
	f := startFake(t)
	f.answer = func(string, int, proto.Message) error { return status.Error(codes.Unavailable, "no leader") }
	c := newTestClient(t, []string{f.addr}, WithRetryTimeout(150*time.Millisecond))
	if _, err := c.Stats(context.Background()); status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable once the budget is spent", err)
	}
}

func TestClosedClient(t *testing.T) {
	f := startFake(t)
	c := newTestClient(t, []string{f.addr})
	c.Close()
	if _, err := c.Stats(context.Background()); err != ErrClosed {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	c := newTestClient(t, []string{"127.0.0.1:1"}, WithBackoff(10*time.Millisecond, 80*time.Millisecond))
	for attempt, want := range []time.Duration{10, 20, 40, 80, 80, 80} {
		want *= time.Millisecond
		for i := 0; i < 50; i++ {
			if d := c.backoff(attempt); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

func TestBatchesAreSplit(t *testing.T) {
	f := startFake(t)
	c := newTestClient(t, []string{f.addr})
	hs := hashesN(0, 2*MaxBatch+5)
	resp, err := c.RegisterBlobs(context.Background(), hs)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Changed != int64(len(hs)) || resp.AppliedIndex != 3 {
		t.Fatalf("response %v: want changed %d, applied index 3 (the last batch's)", resp, len(hs))
	}
	var sizes []int
	var seen []Hash
	for _, r := range f.requests() {
		req := r.(*blobgcv1.HashesRequest)
		sizes = append(sizes, len(req.Hashes))
		got, err := fromBytes(req.Hashes)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, got...)
	}
	if len(sizes) != 3 || sizes[0] != MaxBatch || sizes[1] != MaxBatch || sizes[2] != 5 {
		t.Fatalf("batch sizes %v, want [%d %d 5]", sizes, MaxBatch, MaxBatch)
	}
	for i := range hs {
		if seen[i] != hs[i] {
			t.Fatalf("hash %d sent as %v, want %v", i, seen[i], hs[i])
		}
	}

	granted, idx, err := c.Claim(context.Background(), hashesN(0, MaxBatch+1))
	if err != nil || len(granted) != MaxBatch+1 || idx != 7 || f.count("Claim") != 2 {
		t.Fatalf("Claim: %d granted, index %d, %d requests, err %v", len(granted), idx, f.count("Claim"), err)
	}
}

// An empty batch is sent as is so that the server's error reaches the caller.
func TestEmptyBatchIsSent(t *testing.T) {
	f := startFake(t)
	f.answer = func(string, int, proto.Message) error { return status.Error(codes.InvalidArgument, "empty batch") }
	c := newTestClient(t, []string{f.addr})
	if _, err := c.Pin(context.Background(), nil); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("err = %v", err)
	}
}

// Followers keep naming a crashed leader until they notice; the client does
// not go back to a server that just refused connections.
func TestIgnoresHintsNamingDeadServer(t *testing.T) {
	leader, follower := startFake(t), startFake(t)
	leader.leader = func() string { return leader.addr }
	follower.leader = leader.leader
	c := newTestClient(t, []string{leader.addr, follower.addr})
	if _, err := c.Stats(context.Background()); err != nil || c.Leader() != leader.addr {
		t.Fatalf("leader %q, err %v", c.Leader(), err)
	}
	leader.stop()
	follower.answer = func(_ string, n int, _ proto.Message) error {
		if n <= 5 {
			return hintErr(t, leader.addr)
		}
		return nil
	}
	if _, err := c.Pin(context.Background(), hashesN(0, 1)); err != nil {
		t.Fatal(err)
	}
	if n := follower.count("Pin"); n != 6 {
		t.Fatalf("follower saw %d pins, want 6 (every retry after the leader died)", n)
	}
	if c.Leader() == leader.addr {
		t.Fatal("client still believes in the dead leader")
	}
}

// Stale reads may be answered by any server, so they are spread over all;
// linearizable ones go to the leader.
func TestStaleReadsAreSpread(t *testing.T) {
	leader, follower := startFake(t), startFake(t)
	leader.leader = func() string { return leader.addr }
	follower.leader = func() string { return leader.addr }
	c := newTestClient(t, []string{leader.addr, follower.addr})
	for i := 0; i < 4; i++ {
		if _, err := c.Stats(context.Background(), Stale()); err != nil {
			t.Fatal(err)
		}
	}
	if leader.count("GetStats") != 2 || follower.count("GetStats") != 2 {
		t.Fatalf("stale reads: leader %d, follower %d, want 2 and 2", leader.count("GetStats"), follower.count("GetStats"))
	}
	for i := 0; i < 4; i++ {
		if _, err := c.Stats(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if leader.count("GetStats") != 6 || follower.count("GetStats") != 2 {
		t.Fatalf("linearizable reads: leader %d, follower %d, want 6 and 2", leader.count("GetStats"), follower.count("GetStats"))
	}
	var reqs []*blobgcv1.GetStatsRequest
	for _, r := range append(leader.requests(), follower.requests()...) {
		reqs = append(reqs, r.(*blobgcv1.GetStatsRequest))
	}
	stale := 0
	for _, r := range reqs {
		if r.Consistency == blobgcv1.Consistency_CONSISTENCY_STALE {
			stale++
		}
	}
	if stale != 4 {
		t.Fatalf("%d requests asked for a stale read, want 4", stale)
	}
}
