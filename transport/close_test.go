package transport

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/blobgc/blobgc/internal/testtiming"
)

// inFlight starts one call of every kind from n2 to n1 and returns a channel
// that yields each call's error. The calls wait for raft's answer, which n1
// never gives: callers collect the RPCs from n1's Consumer and hold them.
func inFlight(t *testing.T, n1, n2 *node) (results <-chan error, calls int) {
	out := make(chan error, 16)
	args := makeAppendRPC()
	hb := raft.AppendEntriesRequest{Term: 1, RPCHeader: raft.RPCHeader{Addr: []byte("l")}}
	fns := []func() error{
		func() error { return n2.trans.AppendEntries("n1", n1.addr, &args, new(raft.AppendEntriesResponse)) },
		func() error {
			return n2.trans.RequestVote("n1", n1.addr, &raft.RequestVoteRequest{Term: 1}, new(raft.RequestVoteResponse))
		},
		func() error {
			return n2.trans.InstallSnapshot("n1", n1.addr, &raft.InstallSnapshotRequest{Size: 4}, new(raft.InstallSnapshotResponse), bytes.NewReader([]byte("snap")))
		},
		func() error {
			p, err := n2.trans.AppendEntriesPipeline("n1", n1.addr)
			if err != nil {
				return err
			}
			defer p.Close()
			f, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse))
			if err != nil {
				return err
			}
			// Completes even if Close wins over delivery to Consumer().
			return f.Error()
		},
	}
	for _, fn := range fns {
		go func() { out <- fn() }()
	}
	// A heartbeat whose handler never answers either.
	go func() { out <- n2.trans.AppendEntries("n1", n1.addr, &hb, new(raft.AppendEntriesResponse)) }()
	return out, len(fns) + 1
}

func collect(t *testing.T, results <-chan error, calls int, want func(error) bool) {
	t.Helper()
	for i := 0; i < calls; i++ {
		select {
		case err := <-results:
			if !want(err) {
				t.Errorf("in-flight call ended with %v", err)
			}
		case <-time.After(testtiming.Hang()):
			t.Fatalf("%d of %d in-flight calls never returned", calls-i, calls)
		}
	}
}

func serving(t *testing.T, n *node) {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+string(n.addr), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testtiming.Hang())
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("shared server stopped serving after the transport closed: %v", err)
	}
}

// holdAll takes n RPCs from the consumer without answering them (the
// heartbeat goes to a handler that never answers).
func holdAll(t *testing.T, n *node, count int) {
	n.trans.SetHeartbeatHandler(func(raft.RPC) {})
	for range count {
		rpc := recvRPC(t, n.trans.Consumer())
		if rpc.Reader != nil {
			go func() { _, _ = rpc.Reader.Read(make([]byte, 16)) }()
		}
	}
}

func TestClose_CallerWithCallsInFlight(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	results, calls := inFlight(t, n1, n2)
	holdAll(t, n1, calls-1)
	if err := n2.trans.Close(); err != nil {
		t.Fatal(err)
	}
	collect(t, results, calls, func(err error) bool {
		return errors.Is(err, raft.ErrTransportShutdown) || errors.Is(err, raft.ErrPipelineShutdown)
	})
	if err := n2.trans.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	serving(t, n2)
	n1.stop()
	n2.stop()
}

func TestClose_PeerWithRequestsPending(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	results, calls := inFlight(t, n1, n2)
	holdAll(t, n1, calls-1)
	// The receiving transport closes: its handlers answer Unavailable and
	// its server keeps serving other services.
	if err := n1.trans.Close(); err != nil {
		t.Fatal(err)
	}
	collect(t, results, calls, func(err error) bool { return err != nil })
	serving(t, n1)
	n1.stop()
	n2.stop()
}

func TestClose_DoesNotHangOnBlockedConsumer(t *testing.T) {
	// One vote is taken by "raft" and never answered; the next one finds
	// nobody reading Consumer(). Close must end both handlers.
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	done := make(chan error, 2)
	vote := func() {
		done <- n2.trans.RequestVote("n1", n1.addr, &raft.RequestVoteRequest{Term: 1}, new(raft.RequestVoteResponse))
	}
	go vote()
	recvRPC(t, n1.trans.Consumer())
	go vote()
	closed := make(chan struct{})
	go func() { _ = n1.trans.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(testtiming.Hang()):
		t.Fatal("Close hung")
	}
	for range 2 {
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("vote succeeded without raft")
			}
		case <-time.After(testtiming.Hang()):
			t.Fatal("a vote never ended")
		}
	}
	n1.stop()
	n2.stop()
}

func TestGracefulStop_BoundedWithOpenStreams(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	// An idle pipeline keeps a stream (and its handler) open on n1.
	p, err := n2.trans.AppendEntriesPipeline("n1", n1.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	args := makeAppendRPC()
	if _, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	rpc := recvRPC(t, n1.trans.Consumer())
	rpc.Respond(&raft.AppendEntriesResponse{Success: true}, nil)
	<-p.Consumer()

	stopped := make(chan struct{})
	go func() { GracefulStop(n1.server, 50*time.Millisecond); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(testtiming.Hang()):
		t.Fatal("GracefulStop hung on an open pipeline stream")
	}
	// The pipeline notices.
	waitFor(t, testtiming.Hang(), "the pipeline to fail", func() bool {
		_, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse))
		return err != nil
	})
}

func TestGracefulStop_IdleServer(t *testing.T) {
	n := newNode(t, Config{})
	stopped := make(chan struct{})
	go func() { GracefulStop(n.server, time.Hour); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(testtiming.Hang()):
		t.Fatal("GracefulStop of an idle server did not return")
	}
}
