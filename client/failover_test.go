package client

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/blobgc/blobgc/internal/testnet"
)

// With no server listening, a call with a dial timeout fails with an
// UnreachableError that names every address, long before its deadline.
func TestNoServerReachableNamesEveryAddress(t *testing.T) {
	addrs := []string{testnet.Addr(t), testnet.Addr(t), testnet.Addr(t)}
	c := newTestClient(t, addrs, WithDialTimeout(200*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.Stats(ctx)
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want an UnreachableError", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the call ran until its deadline")
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("code %v, want Unavailable", status.Code(err))
	}
	for _, a := range addrs {
		if !strings.Contains(err.Error(), a) {
			t.Errorf("error does not name %s: %v", a, err)
		}
	}
}

// Without a dial timeout the call retries until its deadline, then says
// that no server answered rather than returning the bare context error.
func TestNoServerReachableAtDeadline(t *testing.T) {
	addrs := []string{testnet.Addr(t), testnet.Addr(t)}
	c := newTestClient(t, addrs)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Stats(ctx)
	var ue *UnreachableError
	if !errors.As(err, &ue) || len(ue.Errors) != 2 {
		t.Fatalf("err = %v, want an UnreachableError naming both servers", err)
	}
}

// One live server among dead ones: the dial timeout never cuts the call
// short, since a server answers.
func TestDialTimeoutNeedsEveryServerSilent(t *testing.T) {
	live := startFake(t)
	c := newTestClient(t, []string{testnet.Addr(t), testnet.Addr(t), live.addr}, WithDialTimeout(time.Nanosecond))
	for i := 0; i < 5; i++ {
		if _, err := c.Pin(context.Background(), hashesN(0, 1)); err != nil {
			t.Fatalf("pin %d: %v", i, err)
		}
	}
}

// Clients start at a random server: of many fresh clients without a known
// leader, not all send their first call to the same server.
func TestClientsStartAtRandomServers(t *testing.T) {
	fakes := []*fakeServer{startFake(t), startFake(t), startFake(t)}
	addrs := []string{fakes[0].addr, fakes[1].addr, fakes[2].addr}
	for i := 0; i < 30; i++ {
		c := newTestClient(t, addrs)
		if _, err := c.Stats(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	used := 0
	for _, f := range fakes {
		if f.count("GetStats") > 0 {
			used++
		}
	}
	if used < 2 {
		t.Fatalf("30 clients all started at the same server")
	}
}

// A server that lets an attempt time out without a word is suspect: the
// next calls go elsewhere instead of waiting on it again.
func TestTimedOutServerIsSkipped(t *testing.T) {
	silent, live := startFake(t), startFake(t)
	release := make(chan struct{})
	defer close(release)
	silent.answer = func(string, int, proto.Message) error {
		<-release
		return nil
	}
	c := newTestClient(t, []string{silent.addr, live.addr}, WithCallTimeout(100*time.Millisecond))
	for i := 0; silent.count("Pin") == 0; i++ {
		if i == 50 {
			t.Fatal("no call reached the silent server")
		}
		if _, err := c.Pin(context.Background(), hashesN(0, 1)); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	_, suspect := c.down[silent.addr]
	c.mu.Unlock()
	if !suspect {
		t.Fatal("the server that timed out is not marked suspect")
	}
}

// Only an attempt on the leader is abandoned when another server names a
// different one: a follower forwards to the leader itself, and a client
// that cannot reach the named leader (advertised names it cannot resolve,
// as from a compose host) must not give up on its slow calls.
func TestSlowCallToFollowerIsNotAbandoned(t *testing.T) {
	follower, peer := startFake(t), startFake(t)
	unreachableLeader := testnet.Addr(t)
	peer.leader = func() string { return unreachableLeader }
	follower.answer = func(method string, n int, _ proto.Message) error {
		if method == "Pin" {
			time.Sleep(500 * time.Millisecond)
		}
		return nil
	}
	c := newTestClient(t, []string{follower.addr, peer.addr}, WithLeaderCheck(20*time.Millisecond))
	c.mu.Lock()
	c.next = 0 // start at the follower
	c.mu.Unlock()
	if _, err := c.Pin(context.Background(), hashesN(0, 1)); err != nil {
		t.Fatal(err)
	}
	if f, p := follower.count("Pin"), peer.count("Pin"); f != 1 || p != 0 {
		t.Fatalf("the follower saw %d pins and the other server %d, want 1 and 0: the slow attempt was abandoned", f, p)
	}
}

// An attempt on the leader that stays silent is abandoned as soon as
// another server names a new leader, long before the call timeout.
func TestSilentLeaderIsLeftForTheNewOne(t *testing.T) {
	old, next := startFake(t), startFake(t)
	release := make(chan struct{})
	defer close(release)
	leader := old.addr
	var mu sync.Mutex
	names := func() string { mu.Lock(); defer mu.Unlock(); return leader }
	old.leader, next.leader = names, names
	c := newTestClient(t, []string{old.addr, next.addr}, WithCallTimeout(time.Hour), WithLeaderCheck(20*time.Millisecond))
	if _, err := c.Stats(context.Background()); err != nil || c.Leader() != old.addr {
		t.Fatalf("leader %q, err %v", c.Leader(), err)
	}
	// The leader freezes; the other server takes over.
	old.answer = func(string, int, proto.Message) error { <-release; return nil }
	mu.Lock()
	leader = next.addr
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Pin(ctx, hashesN(0, 1)); err != nil {
		t.Fatal(err)
	}
	if next.count("Pin") != 1 || c.Leader() != next.addr {
		t.Fatalf("new leader saw %d pins, client follows %q", next.count("Pin"), c.Leader())
	}
}
