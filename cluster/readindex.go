package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// leaderCheck lets concurrent linearizable reads and lease checks share one
// round of leadership confirmation. A read takes the commit index first and
// then needs a round that starts after that; so a read joins the round that
// has not started yet, never the one in flight. While a round runs, every
// read that arrives joins the next one, which starts as soon as the current
// one ends: under load one round serves many reads, and a lone read waits
// for one round.
type leaderCheck struct {
	// verify confirms leadership by requests sent at or after start
	// (Server.confirmSince).
	verify func(start time.Time) error

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
		rd.err = lc.verify(time.Now())
		close(rd.done)
	}
}

// errNotConfirmed: no quorum accepted, within ElectionTimeout, requests sent
// since the round started (see transport.Ack).
var errNotConfirmed = errors.New("no quorum accepted a request sent since the check started")

// confirmSince returns nil once a quorum of voters accepted, at this
// server's term, AppendEntries requests that were sent at or after since.
// It asks raft to send heartbeats now (VerifyLeader) but does not wait for
// raft's answer: that answer may count replies to requests sent before a
// stall, and a round must not hang on it, since every read on this server
// waits for the round. The acks decide, within ElectionTimeout; losing the
// session ends the wait at once.
func (s *Server) confirmSince(since time.Time) error {
	s.mu.Lock()
	ss, changed := s.sess, s.sessChanged
	s.mu.Unlock()
	if ss == nil {
		return raft.ErrNotLeader
	}
	s.raft.VerifyLeader()
	timer := time.NewTimer(s.cfg.ElectionTimeout)
	defer timer.Stop()
	for {
		recorded := s.trans.AckRecorded()
		if s.quorumAckedSince(ss.term, since) {
			return nil
		}
		select {
		case <-recorded:
		case <-changed:
			return raft.ErrLeadershipLost
		case <-timer.C:
			return errNotConfirmed
		case <-s.shutdownCh:
			return raft.ErrRaftShutdown
		}
	}
}

// quorumAckedSince reports whether this server and enough other voters to
// make a quorum accepted requests at term sent at or after since. It counts
// this server, so callers check that it leads at term.
func (s *Server) quorumAckedSince(term uint64, since time.Time) bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	voters, acked := 0, 0
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage != raft.Voter {
			continue
		}
		voters++
		if srv.ID == raft.ServerID(s.cfg.ID) {
			acked++
		} else if a := s.trans.LastAck(srv.ID); a.Term == term && !a.Sent.Before(since) {
			acked++
		}
	}
	return voters > 0 && acked > voters/2
}
