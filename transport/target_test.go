package transport

import (
	"testing"

	"github.com/hashicorp/raft"
)

// An address can come to point at another server (a restarted container
// that got another's old IP). The server refuses calls meant for another
// raft ID, and the caller drops its connections to that address so that the
// next call dials, and resolves, it again.
func TestWrongServerIsRefusedAndReconnected(t *testing.T) {
	a := newNode(t, Config{LocalID: "a"})
	b := newNode(t, Config{LocalID: "b"})
	respondAll(t, b.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		return &raft.RequestVoteResponse{Term: 7, Granted: true}, nil
	})

	var resp raft.RequestVoteResponse
	err := a.trans.RequestVote("c", b.addr, &raft.RequestVoteRequest{Term: 7}, &resp)
	if !isWrongServer(err) {
		t.Fatalf("vote meant for c answered by b: err = %v, want a wrong-server refusal", err)
	}
	a.trans.mu.Lock()
	_, cached := a.trans.peers[b.addr]
	a.trans.mu.Unlock()
	if cached {
		t.Fatal("connections to an address answered by the wrong server were kept")
	}

	if err := a.trans.AppendEntries("c", b.addr, &raft.AppendEntriesRequest{Term: 7, PrevLogEntry: 1}, new(raft.AppendEntriesResponse)); !isWrongServer(err) {
		t.Fatalf("append meant for c answered by b: err = %v", err)
	}

	if err := a.trans.RequestVote("b", b.addr, &raft.RequestVoteRequest{Term: 7}, &resp); err != nil || !resp.Granted {
		t.Fatalf("vote meant for b: granted %v, err %v", resp.Granted, err)
	}
	// A caller that names no target (an older peer) is served.
	if err := a.trans.RequestVote("", b.addr, &raft.RequestVoteRequest{Term: 7}, &resp); err != nil {
		t.Fatalf("vote naming no target: %v", err)
	}
}
