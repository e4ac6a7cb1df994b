package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A write on a new leader waits for the term barrier before it is stamped,
// and gives up at its deadline.
func TestReadySessionWaitsForBarrier(t *testing.T) {
	ss := &session{ready: make(chan struct{}), done: make(chan struct{})}
	s := &Server{sess: ss, sessChanged: make(chan struct{})}
	got := make(chan *session, 1)
	go func() {
		r, err := s.readySession(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	select {
	case <-got:
		t.Fatal("returned before the barrier applied")
	case <-time.After(20 * time.Millisecond):
	}
	ss.t0, ss.m0 = 5000, time.Now()
	close(ss.ready)
	if r := <-got; r != ss {
		t.Fatal("wrong session")
	}
	if now, _ := ss.now(); now < 5000 {
		t.Fatalf("clock %d before T0", now)
	}

	waiting := &session{ready: make(chan struct{}), done: make(chan struct{})}
	s.sess = waiting
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.readySession(ctx); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("at the deadline: %v", err)
	}
}

// The cluster clock advances with the monotonic clock from T0 only.
func TestSessionClock(t *testing.T) {
	ss := &session{t0: int64(time.Hour), m0: time.Now().Add(-time.Second)}
	now, wall := ss.now()
	if d := time.Duration(now) - time.Hour; d < time.Second || d > time.Minute {
		t.Fatalf("cluster time advanced %v since T0, want about 1s", d)
	}
	if wall <= 0 {
		t.Fatal("no wall time")
	}
}

// pendingFuture is a raft future that is never answered, as one still queued
// in raft's apply channel when raft shuts down.
type pendingFuture struct{ never chan struct{} }

func (f pendingFuture) Error() error { <-f.never; return nil }

// A proposal whose future raft never answers is given up as soon as the
// session ends, not at the caller's deadline.
func TestWaitAppliedEndsWithTheSession(t *testing.T) {
	ss := &session{done: make(chan struct{})}
	never := make(chan struct{})
	defer close(never)
	got := make(chan error, 1)
	go func() { got <- waitApplied(context.Background(), ss, pendingFuture{never}) }()
	close(ss.done)
	if err := <-got; !errors.Is(err, raft.ErrLeadershipLost) {
		t.Fatalf("after the session ended: %v, want ErrLeadershipLost", err)
	}
}
