package transport

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/blobgc/blobgc/internal/testtiming"
)

// faultPair is two wrapped transports that answer every vote and append.
// Votes get the deadline of raft RPCs in tests unless cfg sets one: the
// default second can pass on a loaded machine before a first call (which
// dials) is answered.
func faultPair(t *testing.T, cfg Config) (f *Faults, a, b raft.Transport, aAddr, bAddr raft.ServerAddress) {
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = testtiming.RPC()
	}
	f = NewFaults()
	n1 := newNode(t, cfg)
	n2 := newNode(t, cfg)
	for _, n := range []*node{n1, n2} {
		respondAll(t, n.trans.Consumer(), func(rpc raft.RPC) (any, error) {
			switch rpc.Command.(type) {
			case *raft.RequestVoteRequest:
				return &raft.RequestVoteResponse{Granted: true}, nil
			case *raft.RequestPreVoteRequest:
				return &raft.RequestPreVoteResponse{Granted: true}, nil
			case *raft.TimeoutNowRequest:
				return &raft.TimeoutNowResponse{}, nil
			default:
				return &raft.AppendEntriesResponse{Success: true}, nil
			}
		})
	}
	return f, f.Wrap(n1.trans), f.Wrap(n2.trans), n1.addr, n2.addr
}

func vote(from raft.Transport, to raft.ServerAddress) error {
	return from.RequestVote("x", to, &raft.RequestVoteRequest{Term: 1}, new(raft.RequestVoteResponse))
}

func TestFaults_PartitionAndHeal(t *testing.T) {
	f, a, b, aAddr, bAddr := faultPair(t, Config{})
	if err := vote(a, bAddr); err != nil {
		t.Fatal(err)
	}
	f.Partition(aAddr, bAddr)
	if err := vote(a, bAddr); !errors.Is(err, ErrFaultInjected) {
		t.Fatalf("a->b across a partition: %v", err)
	}
	if err := vote(b, aAddr); !errors.Is(err, ErrFaultInjected) {
		t.Fatalf("b->a across a partition: %v", err)
	}
	f.Heal()
	if err := vote(a, bAddr); err != nil {
		t.Fatal(err)
	}
	if err := vote(b, aAddr); err != nil {
		t.Fatal(err)
	}
}

func TestFaults_PartitionOneWay(t *testing.T) {
	f, a, b, aAddr, bAddr := faultPair(t, Config{})
	f.PartitionOneWay(aAddr, bAddr)
	if err := vote(a, bAddr); !errors.Is(err, ErrFaultInjected) {
		t.Fatalf("a->b: %v", err)
	}
	if err := vote(b, aAddr); err != nil {
		t.Fatalf("b->a must still work: %v", err)
	}
}

func TestFaults_Isolate(t *testing.T) {
	f, a, b, aAddr, bAddr := faultPair(t, Config{})
	f.Isolate(aAddr)
	if err := vote(a, bAddr); !errors.Is(err, ErrFaultInjected) {
		t.Fatalf("from the isolated node: %v", err)
	}
	if err := vote(b, aAddr); !errors.Is(err, ErrFaultInjected) {
		t.Fatalf("to the isolated node: %v", err)
	}
	var pv raft.RequestPreVoteResponse
	if err := a.(raft.WithPreVote).RequestPreVote("x", bAddr, &raft.RequestPreVoteRequest{}, &pv); !errors.Is(err, ErrFaultInjected) {
		t.Fatalf("pre-vote from the isolated node: %v", err)
	}
	if err := a.TimeoutNow("x", bAddr, &raft.TimeoutNowRequest{}, new(raft.TimeoutNowResponse)); !errors.Is(err, ErrFaultInjected) {
		t.Fatalf("TimeoutNow from the isolated node: %v", err)
	}
	if err := a.InstallSnapshot("x", bAddr, &raft.InstallSnapshotRequest{}, new(raft.InstallSnapshotResponse), nil); !errors.Is(err, ErrFaultInjected) {
		t.Fatalf("InstallSnapshot from the isolated node: %v", err)
	}
	if _, err := a.AppendEntriesPipeline("x", bAddr); !errors.Is(err, ErrFaultInjected) {
		t.Fatalf("pipeline from the isolated node: %v", err)
	}
}

func TestFaults_BlackHoleHangsUntilDeadline(t *testing.T) {
	f, a, _, _, bAddr := faultPair(t, Config{HeartbeatTimeout: 50 * time.Millisecond})
	f.BlackHole(bAddr)
	done := make(chan error, 1)
	go func() { done <- vote(a, bAddr) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrFaultInjected) {
			t.Fatalf("black-holed vote: %v", err)
		}
	case <-time.After(testtiming.Hang()):
		t.Fatal("black-holed vote never hit its deadline")
	}
}

func TestFaults_HealReleasesBlackHoledCall(t *testing.T) {
	f, a, _, _, bAddr := faultPair(t, Config{HeartbeatTimeout: time.Hour})
	f.BlackHole(bAddr)
	done := make(chan error, 1)
	go func() { done <- vote(a, bAddr) }()
	select {
	case err := <-done:
		t.Fatalf("black-holed vote returned before the heal: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	f.Heal()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("vote after the heal: %v", err)
		}
	case <-time.After(testtiming.Hang()):
		t.Fatal("heal did not release the call")
	}
}

func TestFaults_DelayAndDrop(t *testing.T) {
	f, a, _, aAddr, bAddr := faultPair(t, Config{})
	f.SetDelay(aAddr, bAddr, 30*time.Millisecond)
	start := time.Now()
	if err := vote(a, bAddr); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Fatal("delay not applied")
	}
	f.SetDelay(aAddr, bAddr, 0)
	f.SetDropRate(aAddr, bAddr, 1)
	for range 10 {
		if err := vote(a, bAddr); !errors.Is(err, ErrFaultInjected) {
			t.Fatalf("drop rate 1: %v", err)
		}
	}
	f.SetDropRate(aAddr, bAddr, 0.5)
	dropped, passed := 0, 0
	for dropped == 0 || passed == 0 {
		if err := vote(a, bAddr); err != nil {
			dropped++
		} else {
			passed++
		}
		if dropped+passed > 200 {
			t.Fatalf("drop rate 0.5: %d dropped, %d passed", dropped, passed)
		}
	}
	f.SetDropRate(aAddr, bAddr, 0)
	for range 10 {
		if err := vote(a, bAddr); err != nil {
			t.Fatalf("drop rate 0: %v", err)
		}
	}
}

func TestFaults_PipelineRequestsAreGated(t *testing.T) {
	f, a, _, aAddr, bAddr := faultPair(t, Config{})
	p, err := a.AppendEntriesPipeline("x", bAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	args := makeAppendRPC()
	fut, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse))
	if err != nil {
		t.Fatal(err)
	}
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	f.Partition(aAddr, bAddr)
	if _, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse)); !errors.Is(err, ErrFaultInjected) {
		t.Fatalf("pipelined append across a partition: %v", err)
	}
}

// noPreVote hides every optional interface of the transport it embeds.
type noPreVote struct{ raft.Transport }

func TestFaults_WrapKeepsOptionalInterfaces(t *testing.T) {
	f := NewFaults()
	n := newNode(t, Config{})
	w := f.Wrap(n.trans)
	if _, ok := w.(raft.WithPreVote); !ok {
		t.Fatal("wrapped Transport lost WithPreVote")
	}
	if w.LocalAddr() != n.addr {
		t.Fatal("LocalAddr not passed through")
	}
	_, inmem := raft.NewInmemTransport("")
	plain := f.Wrap(noPreVote{inmem})
	if _, ok := plain.(raft.WithPreVote); ok {
		t.Fatal("wrapper claims pre-vote support the wrapped transport lacks")
	}
	if err := plain.(raft.WithClose).Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.(raft.WithClose).Close(); err != nil {
		t.Fatal(err)
	}
	if err := vote(w, n.addr); !errors.Is(err, raft.ErrTransportShutdown) {
		t.Fatalf("Close did not reach the wrapped transport: %v", err)
	}
}
