package cluster

import (
	"context"
	"io"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/blobgc/blobgc/fsm"
)

// replicated is the raft.FSM the server hands to raft: it passes command
// entries to the fsm.FSM and tracks the index of the last entry the FSM
// goroutine has processed, including the entries the fsm.FSM never sees (the
// per-term barrier entries, which carry no data, and configuration changes).
// Linearizable reads wait on that index: raft's own AppliedIndex moves when
// entries are handed to the FSM goroutine, before they are applied.
type replicated struct {
	f *fsm.FSM

	mu     sync.Mutex
	index  uint64
	notify chan struct{} // closed and replaced whenever index moves
	// lastCycle sums up the last GC cycle this server applied. It is an
	// observation, not replicated state (it starts empty after a restart):
	// the state machine records only cycles that found something.
	lastCycle cycleSummary
}

// cycleSummary is what Stats tells of the last cycle.
type cycleSummary struct {
	time        int64 // cluster time; 0: none applied yet
	newlyMarked int
	eligible    int
	skipped     string
}

var _ raft.BatchingFSM = (*replicated)(nil)

func newReplicated(f *fsm.FSM) *replicated {
	return &replicated{f: f, notify: make(chan struct{})}
}

func (r *replicated) Apply(l *raft.Log) interface{} {
	return r.ApplyBatch([]*raft.Log{l})[0]
}

func (r *replicated) ApplyBatch(logs []*raft.Log) []interface{} {
	if len(logs) == 0 {
		return nil
	}
	allCommands := true
	for _, l := range logs {
		if !isCommand(l) {
			allCommands = false
			break
		}
	}
	var out []interface{}
	if allCommands {
		out = r.f.ApplyBatch(logs)
	} else {
		out = make([]interface{}, len(logs))
		pos := make([]int, 0, len(logs))
		cmds := make([]*raft.Log, 0, len(logs))
		for j, l := range logs {
			if isCommand(l) {
				pos = append(pos, j)
				cmds = append(cmds, l)
			}
		}
		if len(cmds) > 0 {
			res := r.f.ApplyBatch(cmds)
			for j, p := range pos {
				out[p] = res[j]
			}
		}
	}
	r.noteCycle(out)
	r.advance(logs[len(logs)-1].Index)
	return out
}

// noteCycle remembers the last cycle among a batch's results.
func (r *replicated) noteCycle(out []interface{}) {
	for i := len(out) - 1; i >= 0; i-- {
		if res, ok := out[i].(*fsm.Result); ok && res.Err == nil && res.Cycle != nil && !res.Duplicate { // a replayed cycle did not run again
			r.noteCycleResult(res.Cycle)
			return
		}
	}
}

// noteCycleResult remembers c as the last cycle: one applied from the log,
// or one the leader answered without a log entry because it changed
// nothing (only the leader then knows of it).
func (r *replicated) noteCycleResult(c *fsm.CycleResult) {
	r.mu.Lock()
	r.lastCycle = cycleSummary{time: c.Time, newlyMarked: len(c.NewlyMarked), eligible: len(c.Eligible), skipped: c.Skipped}
	r.mu.Unlock()
}

// LastCycle returns the last cycle this server applied since it started.
func (r *replicated) LastCycle() cycleSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastCycle
}

// isCommand reports whether l is for the fsm.FSM; empty command entries are the
// leader's term barriers.
func isCommand(l *raft.Log) bool { return l.Type == raft.LogCommand && len(l.Data) > 0 }

func (r *replicated) Snapshot() (raft.FSMSnapshot, error) { return r.f.Snapshot() }

func (r *replicated) Restore(rc io.ReadCloser) error {
	if err := r.f.Restore(rc); err != nil {
		return err
	}
	r.mu.Lock()
	r.index = r.f.AppliedIndex()
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
	return nil
}

func (r *replicated) advance(i uint64) {
	r.mu.Lock()
	if i > r.index {
		r.index = i
		close(r.notify)
		r.notify = make(chan struct{})
	}
	r.mu.Unlock()
}

// Index returns the index of the last entry processed by the FSM goroutine.
func (r *replicated) Index() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.index
}

// waitApplied blocks until the FSM has processed index idx or ctx ends.
func (r *replicated) waitApplied(ctx context.Context, idx uint64) error {
	for {
		r.mu.Lock()
		if r.index >= idx {
			r.mu.Unlock()
			return nil
		}
		ch := r.notify
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
