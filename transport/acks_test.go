package transport

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/blobgc/blobgc/internal/testtiming"
)

// What the follower answers, chosen by the request's LeaderCommitIndex.
const (
	answerAccept  = 1 // same term, success
	answerNewer   = 2 // a newer term: the follower follows another leader
	answerMissing = 3 // same term, log mismatch
	answerHeld    = 4 // same term, success, after the test releases it
)

// An Ack records when the accepted request was sent, however late its
// answer was read: a leader's lease must not be renewed by answers that
// waited while it was stopped. Rejections and answers from a newer term
// record nothing.
func TestAck_RecordsSendTimeOfAcceptedRequests(t *testing.T) {
	follower := newNode(t, Config{})
	leader := newNode(t, Config{})
	arrived, release := make(chan struct{}), make(chan struct{})
	respondAll(t, follower.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		resp := &raft.AppendEntriesResponse{Term: req.Term, Success: true}
		switch req.LeaderCommitIndex {
		case answerNewer:
			resp.Term, resp.Success = req.Term+1, false
		case answerMissing:
			resp.Success = false
		case answerHeld:
			close(arrived)
			<-release
		}
		return resp, nil
	})
	send := func(term, answer uint64) {
		t.Helper()
		args := makeAppendRPC()
		args.Term, args.LeaderCommitIndex = term, answer
		if err := leader.trans.AppendEntries("f", follower.addr, &args, new(raft.AppendEntriesResponse)); err != nil {
			t.Fatal(err)
		}
	}
	if a := leader.trans.LastAck("f"); a != (Ack{}) {
		t.Fatalf("an ack before any request: %+v", a)
	}

	before := time.Now()
	send(5, answerAccept)
	after := time.Now()
	a := leader.trans.LastAck("f")
	if a.Term != 5 || a.Sent.Before(before) || a.Sent.After(after) {
		t.Fatalf("ack %+v, want term 5 sent in [%v, %v]", a, before, after)
	}

	send(5, answerNewer)
	send(5, answerMissing)
	if got := leader.trans.LastAck("f"); got != a {
		t.Fatalf("a rejected request changed the ack: %+v, was %+v", got, a)
	}

	// An answer held back by the follower is recorded at its send time.
	recorded := leader.trans.AckRecorded()
	done := make(chan struct{})
	go func() { defer close(done); send(5, answerHeld) }()
	<-arrived
	answeredAfter := time.Now()
	select {
	case <-recorded:
		t.Fatal("AckRecorded closed before any answer")
	default:
	}
	close(release)
	<-done
	select {
	case <-recorded:
	case <-time.After(testtiming.Hang()):
		t.Fatal("AckRecorded not closed after an accepted request")
	}
	held := leader.trans.LastAck("f")
	if held.Term != 5 || !held.Sent.After(a.Sent) || !held.Sent.Before(answeredAfter) {
		t.Fatalf("held answer recorded as %+v, want sent after %v and before %v", held, a.Sent, answeredAfter)
	}

	// A newer term replaces an older one.
	send(6, answerAccept)
	if got := leader.trans.LastAck("f"); got.Term != 6 {
		t.Fatalf("ack after term 6: %+v", got)
	}
}

// Pipelined requests record acks the same way.
func TestAck_Pipeline(t *testing.T) {
	follower := newNode(t, Config{})
	leader := newNode(t, Config{})
	respondAll(t, follower.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		if req.LeaderCommitIndex == answerNewer {
			return &raft.AppendEntriesResponse{Term: req.Term + 1}, nil
		}
		return &raft.AppendEntriesResponse{Term: req.Term, Success: true}, nil
	})
	p, err := leader.trans.AppendEntriesPipeline("f", follower.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(answer uint64) raft.AppendFuture {
		t.Helper()
		args := makeAppendRPC()
		args.LeaderCommitIndex = answer
		if _, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse)); err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-p.Consumer():
			if err := f.Error(); err != nil {
				t.Fatal(err)
			}
			return f
		case <-time.After(testtiming.Hang()):
			t.Fatal("no answer")
			return nil
		}
	}
	f := send(answerAccept)
	if a := leader.trans.LastAck("f"); a.Term != f.Request().Term || !a.Sent.Equal(f.Start()) {
		t.Fatalf("ack %+v, want term %d sent at the future's start %v", a, f.Request().Term, f.Start())
	}
	send(answerNewer)
	if a := leader.trans.LastAck("f"); !a.Sent.Equal(f.Start()) {
		t.Fatalf("an answer from a newer term changed the ack: %+v", a)
	}
}
