package cluster

import (
	"context"
	"sync"
)

// leaderCheck lets concurrent linearizable reads share one VerifyLeader
// round. A read takes the commit index first and then needs a round that
// starts after that; so a read joins the round that has not started yet,
// never the one in flight. While a round runs, every read that arrives
// joins the next one, which starts as soon as the current one ends: under
// load one round serves many reads, and a lone read waits for one round,
// as before.
type leaderCheck struct {
	verify func() error // raft's VerifyLeader, waited for

	mu      sync.Mutex
	next    *verifyRound // collecting reads, not started yet
	running bool         // a round is in flight (run's loop is active)
}

type verifyRound struct {
	done chan struct{}
	err  error
}

// confirm returns once a round that started after the call confirmed (nil)
// or denied leadership, or when ctx ends.
func (lc *leaderCheck) confirm(ctx context.Context) error {
	lc.mu.Lock()
	if lc.next == nil {
		lc.next = &verifyRound{done: make(chan struct{})}
	}
	rd := lc.next
	if !lc.running {
		lc.running = true
		go lc.run()
	}
	lc.mu.Unlock()
	select {
	case <-rd.done:
		return rd.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run starts rounds until no read is waiting for one.
func (lc *leaderCheck) run() {
	for {
		lc.mu.Lock()
		rd := lc.next
		lc.next = nil
		if rd == nil {
			lc.running = false
			lc.mu.Unlock()
			return
		}
		lc.mu.Unlock()
		rd.err = lc.verify()
		close(rd.done)
	}
}
