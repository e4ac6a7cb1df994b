package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Reads that arrive while a round is in flight share the next round; none
// of them is answered by the round that started before it arrived.
func TestLeaderCheckSharesRounds(t *testing.T) {
	var rounds atomic.Int32
	release := make(chan error)
	lc := &leaderCheck{verify: func(time.Time) error {
		if rounds.Add(1) == 1 {
			return <-release // the first round waits for the test
		}
		return nil
	}}
	first := make(chan error, 1)
	go func() { first <- lc.confirm(context.Background()) }()
	waitFor(t, "the first round to start", func() bool { return rounds.Load() == 1 })

	const readers = 50
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	var joined atomic.Int32
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			joined.Add(1)
			errs <- lc.confirm(context.Background())
		}()
	}
	waitFor(t, "the readers to join the next round", func() bool {
		lc.mu.Lock()
		defer lc.mu.Unlock()
		return joined.Load() == readers && lc.next != nil
	})
	// Give stragglers between joined.Add and confirm's lock a moment; a
	// late one only starts one more round, which the count allows.
	time.Sleep(10 * time.Millisecond)

	denied := errors.New("first round: not the leader")
	release <- denied
	if err := <-first; err != denied {
		t.Fatalf("first read: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil { // denied: answered by the round that started before it
			t.Fatalf("a read that joined during the first round was answered by it: %v", err)
		}
	}
	if n := rounds.Load(); n > 3 {
		t.Fatalf("%d reads took %d VerifyLeader rounds, want them to share 1 (or 2 with a straggler)", readers+1, n-1)
	}
}

// A read whose context ends stops waiting; the round still completes.
func TestLeaderCheckHonoursContext(t *testing.T) {
	release := make(chan struct{})
	lc := &leaderCheck{verify: func(time.Time) error { <-release; return nil }}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := lc.confirm(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled read: %v", err)
	}
	close(release)
	if err := lc.confirm(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
