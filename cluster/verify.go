package cluster

import (
	"context"
	"sync"

	"github.com/hashicorp/raft"
)

// leaderChecks shares raft.VerifyLeader rounds between linearizable reads.
// Each round costs a heartbeat exchange with every follower, so a flood of
// reads (or of no-op writes answered like reads) would otherwise send one
// round per call. A caller joins the next round that has not started yet,
// never one already running, so the round still begins after the caller
// took its commit index; at most one round runs at a time.
type leaderChecks struct {
	raft    *raft.Raft
	mu      sync.Mutex
	next    *checkRound // not started yet; new callers join it
	running bool
}

type checkRound struct {
	done chan struct{}
	err  error
}

// verify waits for a VerifyLeader round that starts after the call.
func (l *leaderChecks) verify(ctx context.Context) error {
	l.mu.Lock()
	if l.next == nil {
		l.next = &checkRound{done: make(chan struct{})}
	}
	round := l.next
	if !l.running {
		l.startLocked()
	}
	l.mu.Unlock()
	select {
	case <-round.done:
		return round.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startLocked runs the next round; l.mu is held.
func (l *leaderChecks) startLocked() {
	round := l.next
	l.next, l.running = nil, true
	go func() {
		round.err = l.raft.VerifyLeader().Error()
		close(round.done)
		l.mu.Lock()
		l.running = false
		if l.next != nil {
			l.startLocked()
		}
		l.mu.Unlock()
	}()
}
