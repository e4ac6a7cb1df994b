package transport

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Ack is the newest AppendEntries request (heartbeat, plain or pipelined)
// that a peer accepted at the request's own term: Sent is when this
// transport sent it.
//
// A leader's lease must run from when a confirming request was sent, not
// from when its answer was read. raft's VerifyLeader counts any successful
// answer, and after a leader stalls (SIGSTOP, a long pause) the answers
// that queued in its sockets, sent before a newer leader was elected,
// confirm it the moment it resumes. Sent times recorded here make such
// answers as old as they are.
type Ack struct {
	Term uint64
	Sent time.Time
}

type ackTable struct {
	mu   sync.Mutex
	byID map[raft.ServerID]Ack
	wake chan struct{} // closed on the next record; nil while nobody waits
}

func (a *ackTable) record(id raft.ServerID, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse, sent time.Time) {
	if !resp.Success || resp.Term != req.Term || id == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byID == nil {
		a.byID = make(map[raft.ServerID]Ack)
	}
	if cur := a.byID[id]; req.Term > cur.Term || req.Term == cur.Term && sent.After(cur.Sent) {
		a.byID[id] = Ack{Term: req.Term, Sent: sent}
	}
	if a.wake != nil {
		close(a.wake)
		a.wake = nil
	}
}

// LastAck returns peer id's newest Ack; the zero Ack if it never accepted one.
func (t *Transport) LastAck(id raft.ServerID) Ack {
	t.acks.mu.Lock()
	defer t.acks.mu.Unlock()
	return t.acks.byID[id]
}

// AckRecorded returns a channel closed when the next Ack is recorded.
func (t *Transport) AckRecorded() <-chan struct{} {
	t.acks.mu.Lock()
	defer t.acks.mu.Unlock()
	if t.acks.wake == nil {
		t.acks.wake = make(chan struct{})
	}
	return t.acks.wake
}
