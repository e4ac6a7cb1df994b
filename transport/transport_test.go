package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/blobgc/blobgc/internal/testnet"
	"github.com/blobgc/blobgc/internal/testtiming"
	pb "github.com/blobgc/blobgc/transport/transportpb"
)

func TestNewRequiresLocalAddr(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without LocalAddr succeeded")
	}
	if _, err := New(Config{LocalAddr: "127.0.0.1:1", MaxMessageSize: 4096}); err == nil {
		t.Fatal("New accepted a message size limit too small for any batch")
	}
	if _, err := New(Config{LocalAddr: "127.0.0.1:1", MaxInFlight: -1}); err == nil {
		t.Fatal("New accepted a negative MaxInFlight")
	}
	tr, err := New(Config{LocalAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.cfg.Timeout != DefaultTimeout || tr.cfg.HeartbeatTimeout != DefaultHeartbeatTimeout ||
		tr.cfg.MaxInFlight != DefaultMaxInFlight || tr.cfg.MaxMessageSize != DefaultMaxMessageSize {
		t.Fatalf("defaults not applied: %+v", tr.cfg)
	}
	if tr.LocalAddr() != "127.0.0.1:1" {
		t.Fatalf("LocalAddr = %q", tr.LocalAddr())
	}
}

func TestTransport_StartStop(t *testing.T) {
	n := newNode(t, Config{})
	if err := n.trans.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTransport_AppendEntries(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	args := makeAppendRPC()
	args.Entries = append(args.Entries, &raft.Log{
		Index: 102, Term: 4, Type: raft.LogCommand, Data: []byte("data"),
		Extensions: []byte("ext"), AppendedAt: time.Unix(1700000000, 123456789),
	})
	want := makeAppendRPCResponse()
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		if d := equal(&args, rpc.Command); d != "" {
			t.Errorf("command mismatch (-want +got):\n%s", d)
		}
		return &want, nil
	})
	var out raft.AppendEntriesResponse
	if err := n2.trans.AppendEntries("id1", n1.addr, &args, &out); err != nil {
		t.Fatal(err)
	}
	if d := equal(want, out); d != "" {
		t.Fatalf("response mismatch (-want +got):\n%s", d)
	}
}

func TestTransport_RemoteErrorCarriesResponse(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		return &raft.AppendEntriesResponse{Term: 7, LastLog: 3}, errors.New("raft says no")
	})
	args := makeAppendRPC()
	var out raft.AppendEntriesResponse
	err := n2.trans.AppendEntries("id1", n1.addr, &args, &out)
	if err == nil || err.Error() != "raft says no" {
		t.Fatalf("err = %v, want raft's error text", err)
	}
	if out.Term != 7 || out.LastLog != 3 {
		t.Fatalf("response fields lost with the error: %+v", out)
	}
}

func TestTransport_UnknownCommandAnswer(t *testing.T) {
	// A nil response with raft's "unexpected command" error, as raft answers
	// an RPC it does not know.
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		return nil, errors.New("unexpected command")
	})
	var out raft.RequestPreVoteResponse
	err := n2.trans.RequestPreVote("id1", n1.addr, &raft.RequestPreVoteRequest{Term: 3}, &out)
	if err == nil || !strings.Contains(err.Error(), "unexpected command") {
		t.Fatalf("err = %v", err)
	}
}

func TestTransport_HeartbeatFastPath(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	var calls atomic.Int32
	n1.trans.SetHeartbeatHandler(func(rpc raft.RPC) {
		calls.Add(1)
		rpc.Respond(&raft.AppendEntriesResponse{Term: 10, Success: true}, nil)
	})
	// Nobody reads Consumer(): a normal AppendEntries stays pending there,
	// and the heartbeat must still be answered.
	blocked := make(chan error, 1)
	go func() {
		args := makeAppendRPC()
		blocked <- n2.trans.AppendEntries("id1", n1.addr, &args, new(raft.AppendEntriesResponse))
	}()
	for _, hdr := range []raft.RPCHeader{{Addr: []byte("leader")}, {}} {
		hb := raft.AppendEntriesRequest{RPCHeader: hdr, Term: 10}
		if len(hdr.Addr) == 0 {
			hb.Leader = []byte("deprecated-leader-field")
		}
		var out raft.AppendEntriesResponse
		if err := n2.trans.AppendEntries("id1", n1.addr, &hb, &out); err != nil {
			t.Fatal(err)
		}
		if !out.Success || out.Term != 10 {
			t.Fatalf("heartbeat response %+v", out)
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("heartbeat handler called %d times, want 2", calls.Load())
	}
	select {
	case err := <-blocked:
		t.Fatalf("non-heartbeat AppendEntries bypassed Consumer(): %v", err)
	default:
	}
	rpc := recvRPC(t, n1.trans.Consumer())
	rpc.Respond(&raft.AppendEntriesResponse{}, nil)
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
}

func TestTransport_RequestVote(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	args := raft.RequestVoteRequest{
		Term: 20, Candidate: []byte("butters"), LastLogIndex: 100, LastLogTerm: 19,
		LeadershipTransfer: true, RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("b"), Addr: []byte("butters")},
	}
	want := raft.RequestVoteResponse{Term: 100, Peers: []byte("peers"), Granted: true}
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		if d := equal(&args, rpc.Command); d != "" {
			t.Errorf("command mismatch (-want +got):\n%s", d)
		}
		return &want, nil
	})
	var out raft.RequestVoteResponse
	if err := n2.trans.RequestVote("id1", n1.addr, &args, &out); err != nil {
		t.Fatal(err)
	}
	if d := equal(want, out); d != "" {
		t.Fatalf("response mismatch:\n%s", d)
	}
}

func TestTransport_RequestPreVote(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	args := raft.RequestPreVoteRequest{
		Term: 20, LastLogIndex: 100, LastLogTerm: 19,
		RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("b"), Addr: []byte("butters")},
	}
	want := raft.RequestPreVoteResponse{Term: 20, Granted: true}
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		if d := equal(&args, rpc.Command); d != "" {
			t.Errorf("command mismatch (-want +got):\n%s", d)
		}
		return &want, nil
	})
	var out raft.RequestPreVoteResponse
	if err := n2.trans.RequestPreVote("id1", n1.addr, &args, &out); err != nil {
		t.Fatal(err)
	}
	if d := equal(want, out); d != "" {
		t.Fatalf("response mismatch:\n%s", d)
	}
}

// oldPeer is a Raft service without RequestPreVote, like a peer running an
// older version.
type oldPeer struct{ pb.UnimplementedRaftServer }

func TestTransport_PreVoteUnimplementedIsUnexpectedCommand(t *testing.T) {
	lis := testnet.Listen(t)
	srv := grpc.NewServer()
	pb.RegisterRaftServer(srv, oldPeer{})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	n2 := newNode(t, Config{})
	var out raft.RequestPreVoteResponse
	err := n2.trans.RequestPreVote("old", raft.ServerAddress(lis.Addr().String()), &raft.RequestPreVoteRequest{Term: 1}, &out)
	// raft's preElectSelf treats exactly this text as a granted pre-vote.
	if err == nil || !strings.Contains(err.Error(), "unexpected command") {
		t.Fatalf("err = %v, want one containing %q", err, "unexpected command")
	}
}

func TestTransport_TimeoutNow(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	args := raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("x"), Addr: []byte("y")}}
	want := raft.TimeoutNowResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("z"), Addr: []byte("w")}}
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		if d := equal(&args, rpc.Command); d != "" {
			t.Errorf("command mismatch (-want +got):\n%s", d)
		}
		return &want, nil
	})
	var out raft.TimeoutNowResponse
	if err := n2.trans.TimeoutNow("id1", n1.addr, &args, &out); err != nil {
		t.Fatal(err)
	}
	if d := equal(want, out); d != "" {
		t.Fatalf("response mismatch:\n%s", d)
	}
}

func TestTransport_ParallelRPCs(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		req := rpc.Command.(*raft.RequestVoteRequest)
		return &raft.RequestVoteResponse{Term: req.Term, Granted: true}, nil
	})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			var out raft.RequestVoteResponse
			err := n2.trans.RequestVote("id1", n1.addr, &raft.RequestVoteRequest{Term: uint64(i + 1)}, &out)
			if err == nil && out.Term != uint64(i+1) {
				err = fmt.Errorf("call %d got the answer to term %d", i, out.Term)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestTransport_EncodeDecodePeer(t *testing.T) {
	n := newNode(t, Config{})
	for _, addr := range []raft.ServerAddress{"127.0.0.1:8300", "[::1]:9", "node-1.example:7000"} {
		enc := n.trans.EncodePeer("id", addr)
		if dec := n.trans.DecodePeer(enc); dec != addr {
			t.Fatalf("DecodePeer(EncodePeer(%q)) = %q", addr, dec)
		}
	}
}

func TestTransport_AppendEntriesPipeline(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	args := makeAppendRPC()
	var seen atomic.Uint64
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		seen.Add(1)
		// The term echoes the request's commit index so the test can check order.
		return &raft.AppendEntriesResponse{Term: req.LeaderCommitIndex, Success: true}, nil
	})
	p, err := n2.trans.AppendEntriesPipeline("id1", n1.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const count = 50
	go func() {
		for i := range count {
			a := args
			a.LeaderCommitIndex = uint64(i + 1)
			if _, err := p.AppendEntries(&a, new(raft.AppendEntriesResponse)); err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
		}
	}()
	for i := range count {
		select {
		case f := <-p.Consumer():
			if err := f.Error(); err != nil {
				t.Fatal(err)
			}
			if f.Response().Term != uint64(i+1) || f.Request().LeaderCommitIndex != uint64(i+1) {
				t.Fatalf("future %d out of order: request %d response %d", i, f.Request().LeaderCommitIndex, f.Response().Term)
			}
			if f.Start().IsZero() {
				t.Fatal("future has no start time")
			}
		case <-time.After(testtiming.Hang()):
			t.Fatalf("future %d never arrived", i)
		}
	}
	if seen.Load() != count {
		t.Fatalf("server saw %d requests", seen.Load())
	}
}

// TestTransport_Pipeline_CloseStreams ports NetworkTransport's test: the
// receiving side kills its streams mid-flight; futures fail and nothing hangs.
func TestTransport_Pipeline_CloseStreams(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	args := makeAppendRPC()
	want := makeAppendRPCResponse()
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) { return &want, nil })

	for _, cancelStreams := range []bool{true, false} {
		p, err := n2.trans.AppendEntriesPipeline("id1", n1.addr)
		if err != nil {
			t.Fatal(err)
		}
		var futureErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < 100; i++ {
				select {
				case f := <-p.Consumer():
					if err := f.Error(); err != nil {
						futureErr = err
						if f.Response() == nil {
							t.Error("failed future has a nil Response")
						}
						return
					}
					if d := equal(&want, f.Response()); d != "" {
						t.Errorf("response mismatch:\n%s", d)
					}
				case <-time.After(testtiming.Hang()):
					t.Errorf("future %d never arrived (cancelStreams=%v)", i, cancelStreams)
					return
				}
			}
		}()
		for i := 0; i < 100; i++ {
			if cancelStreams && i == 10 {
				// Wait until the inbound stream is registered, then kill it.
				waitFor(t, testtiming.Hang(), "inbound stream", func() bool {
					n1.trans.mu.Lock()
					defer n1.trans.mu.Unlock()
					return len(n1.trans.inbound) > 0
				})
				n1.trans.CloseStreams()
			}
			if _, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse)); err != nil {
				break
			}
		}
		<-done
		if cancelStreams && futureErr == nil {
			t.Fatal("expected an error due to the streams being closed")
		} else if !cancelStreams && futureErr != nil {
			t.Fatalf("unexpected error: %v", futureErr)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal("second pipeline Close:", err)
		}
	}
}

// TestTransport_Pipeline_ServerStopped: the peer's whole server goes away
// while requests are in flight.
func TestTransport_Pipeline_ServerStopped(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	p, err := n2.trans.AppendEntriesPipeline("id1", n1.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	args := makeAppendRPC()
	if _, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	recvRPC(t, n1.trans.Consumer()) // in flight, never answered
	n1.server.Stop()
	select {
	case f := <-p.Consumer():
		if f.Error() == nil {
			t.Fatal("future succeeded after the server stopped")
		}
		if f.Response() == nil || f.Response().Success {
			t.Fatalf("failed future response %+v", f.Response())
		}
	case <-time.After(testtiming.Hang()):
		t.Fatal("future never completed")
	}
	waitFor(t, testtiming.Hang(), "sends to fail", func() bool {
		_, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse))
		return err != nil
	})
}

func TestTransport_Pipeline_MaxRPCsInFlight(t *testing.T) {
	for _, max := range []int{0, 1, 2, 10} {
		t.Run(fmt.Sprintf("max=%d", max), func(t *testing.T) {
			n1 := newNode(t, Config{MaxInFlight: max})
			n2 := newNode(t, Config{MaxInFlight: max})
			p, err := n2.trans.AppendEntriesPipeline("id1", n1.addr)
			if max == 1 {
				if !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
					t.Fatalf("err = %v, want ErrPipelineReplicationNotSupported", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			expectedMax := max
			if max == 0 {
				expectedMax = 2
			}
			args := makeAppendRPC()
			// As with NetworkTransport: max-1 requests go out without
			// waiting; the max-th is sent and then blocks until an answer
			// arrives, so raft builds its next request only then.
			for i := 0; i < expectedMax-1; i++ {
				if _, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse)); err != nil {
					t.Fatal(err)
				}
			}
			errCh := make(chan error, 1)
			go func() {
				_, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse))
				errCh <- err
			}()
			var held []raft.RPC
			for i := 0; i < expectedMax; i++ {
				held = append(held, recvRPC(t, n1.trans.Consumer()))
			}
			select {
			case err := <-errCh:
				t.Fatalf("AppendEntries didn't block with %d in flight (err %v)", expectedMax, err)
			case <-time.After(50 * time.Millisecond):
			}
			// A further request cannot be sent while max are unanswered:
			// the sender is still blocked in the max-th call.
			select {
			case rpc := <-n1.trans.Consumer():
				t.Fatalf("request %d reached the peer with %d in flight: %T", expectedMax+1, expectedMax, rpc.Command)
			default:
			}
			// One answer lets the blocked call return.
			resp := makeAppendRPCResponse()
			held[0].Respond(&resp, nil)
			<-p.Consumer()
			select {
			case err := <-errCh:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(testtiming.Hang()):
				t.Fatal("last append didn't unblock")
			}
			for _, rpc := range held[1:] {
				rpc.Respond(&resp, nil)
			}
		})
	}
}

// TestTransport_Pipeline_Watchdog: a peer that accepts requests but never
// answers makes the pipeline fail after Timeout instead of hanging.
func TestTransport_Pipeline_Watchdog(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{Timeout: time.Second})
	p, err := n2.trans.AppendEntriesPipeline("id1", n1.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	args := makeAppendRPC()
	if _, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	rpc := recvRPC(t, n1.trans.Consumer()) // raft "hangs" on it
	select {
	case f := <-p.Consumer():
		if !errors.Is(f.Error(), errPipelineStalled) {
			t.Fatalf("future error %v, want %v", f.Error(), errPipelineStalled)
		}
	case <-time.After(testtiming.Hang()):
		t.Fatal("stalled pipeline never failed")
	}
	rpc.Respond(&raft.AppendEntriesResponse{}, nil)
	if _, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse)); !errors.Is(err, errPipelineStalled) {
		t.Fatalf("send after stall: %v", err)
	}
}

func TestTransport_InstallSnapshot(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	for _, size := range []int64{0, 10, snapshotChunkSize - 1, snapshotChunkSize, snapshotChunkSize + 1, 3<<20 + 17, 64 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := make([]byte, size)
			var seed [32]byte
			binary.LittleEndian.PutUint64(seed[:], uint64(size))
			rand.NewChaCha8(seed).Read(data)
			args := raft.InstallSnapshotRequest{
				RPCHeader:       raft.RPCHeader{ProtocolVersion: 3, ID: []byte("leader-id"), Addr: []byte("kyle")},
				SnapshotVersion: raft.SnapshotVersionMax, Term: 10, Leader: []byte("kyle"),
				LastLogIndex: 100, LastLogTerm: 9, Peers: []byte("blah blah"),
				Configuration: []byte("conf"), ConfigurationIndex: 77, Size: size,
			}
			want := raft.InstallSnapshotResponse{Term: 10, Success: true}
			got := make(chan []byte, 1)
			go func() {
				rpc := recvRPC(t, n1.trans.Consumer())
				if d := equal(&args, rpc.Command); d != "" {
					t.Errorf("command mismatch:\n%s", d)
				}
				b, err := io.ReadAll(rpc.Reader)
				if err != nil {
					t.Errorf("reading snapshot: %v", err)
				}
				got <- b
				rpc.Respond(&want, nil)
			}()
			var out raft.InstallSnapshotResponse
			if err := n2.trans.InstallSnapshot("id1", n1.addr, &args, &out, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if d := equal(want, out); d != "" {
				t.Fatalf("response mismatch:\n%s", d)
			}
			if b := <-got; !bytes.Equal(b, data) {
				t.Fatalf("snapshot differs: got %d bytes, want %d", len(b), len(data))
			}
		})
	}
}

func TestTransport_InstallSnapshot_WrongSize(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	args := raft.InstallSnapshotRequest{Term: 1, Leader: []byte("l"), Size: 1000}

	// The sender fails the call; if the request got far enough to reach raft,
	// raft's read of it fails too (the cancelled stream may also end before
	// the handler dispatches it).
	checkReceiver := func(t *testing.T) (stop func()) {
		done := make(chan struct{})
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			select {
			case rpc := <-n1.trans.Consumer():
				_, err := io.ReadAll(rpc.Reader)
				if err == nil {
					t.Error("receiver read a snapshot of the wrong size without error")
				}
				rpc.Respond(&raft.InstallSnapshotResponse{}, err)
			case <-done:
			}
		}()
		return func() { close(done); <-finished }
	}
	t.Run("sender data shorter than Size", func(t *testing.T) {
		stop := checkReceiver(t)
		defer stop()
		err := n2.trans.InstallSnapshot("id1", n1.addr, &args, new(raft.InstallSnapshotResponse), bytes.NewReader(make([]byte, 999)))
		if err == nil || !strings.Contains(err.Error(), "ended after 999 of 1000") {
			t.Fatalf("short snapshot: err = %v", err)
		}
	})
	t.Run("sender data longer than Size", func(t *testing.T) {
		stop := checkReceiver(t)
		defer stop()
		err := n2.trans.InstallSnapshot("id1", n1.addr, &args, new(raft.InstallSnapshotResponse), bytes.NewReader(make([]byte, 1001)))
		if err == nil || !strings.Contains(err.Error(), "longer") {
			t.Fatalf("long snapshot: err = %v", err)
		}
	})
	// A misbehaving sender that streams more than it declared, or less.
	for _, tc := range []struct {
		name   string
		chunks [][]byte
	}{
		{"stream longer than Size", [][]byte{make([]byte, 600), make([]byte, 600)}},
		{"stream shorter than Size", [][]byte{make([]byte, 600)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := grpc.NewClient("passthrough:///"+string(n1.addr), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			readErr := make(chan error, 1)
			args := args
			args.Term = 100 + uint64(len(tc.chunks))
			go func() {
				for {
					// Skip requests of the earlier subtests whose senders gave up.
					rpc := recvRPC(t, n1.trans.Consumer())
					_, err := io.ReadAll(rpc.Reader)
					rpc.Respond(&raft.InstallSnapshotResponse{}, err)
					if rpc.Command.(*raft.InstallSnapshotRequest).Term == args.Term {
						readErr <- err
						return
					}
				}
			}()
			stream, err := pb.NewRaftClient(conn).InstallSnapshot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&pb.InstallSnapshotChunk{Meta: encodeInstallSnapshotRequest(&args)}); err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.chunks {
				if err := stream.Send(&pb.InstallSnapshotChunk{Data: c}); err != nil {
					break
				}
			}
			resp, err := stream.CloseAndRecv()
			if err != nil {
				t.Fatal(err)
			}
			if resp.Error == "" {
				t.Fatal("receiver accepted a snapshot of the wrong size")
			}
			if err := <-readErr; err == nil || err == io.EOF {
				t.Fatalf("reader error %v", err)
			}
		})
	}
}

func TestTransport_MessageSizeLimit(t *testing.T) {
	t.Run("entry over the limit fails at once", func(t *testing.T) {
		n1 := newNode(t, Config{MaxMessageSize: 1 << 20})
		n2 := newNode(t, Config{MaxMessageSize: 1 << 20})
		args := makeAppendRPC()
		args.Entries = []*raft.Log{{Index: 101, Term: 4, Type: raft.LogCommand, Data: make([]byte, 2<<20)}}
		err := n2.trans.AppendEntries("id1", n1.addr, &args, new(raft.AppendEntriesResponse))
		if err == nil || !strings.Contains(err.Error(), "message size limit") {
			t.Fatalf("err = %v, want a size limit error", err)
		}
		p, err := n2.trans.AppendEntriesPipeline("id1", n1.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if _, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse)); err == nil || !strings.Contains(err.Error(), "message size limit") {
			t.Fatalf("pipeline err = %v, want a size limit error", err)
		}
	})
	t.Run("the server enforces its limit", func(t *testing.T) {
		// A sender configured with a larger limit than the receiver.
		n1 := newNode(t, Config{MaxMessageSize: 1 << 20})
		n2 := newNode(t, Config{})
		args := makeAppendRPC()
		args.Entries = []*raft.Log{{Index: 101, Term: 4, Type: raft.LogCommand, Data: make([]byte, 2<<20)}}
		err := n2.trans.AppendEntries("id1", n1.addr, &args, new(raft.AppendEntriesResponse))
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("err = %v, want ResourceExhausted", err)
		}
	})
	t.Run("default admits MaxAppendEntries x 1 MiB", func(t *testing.T) {
		// The default message limit under test; the deadline only bounds
		// a hang (64 MiB under -race on a loaded machine is slow).
		n1 := newNode(t, Config{Timeout: testtiming.Hang()})
		n2 := newNode(t, Config{Timeout: testtiming.Hang()})
		respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
			req := rpc.Command.(*raft.AppendEntriesRequest)
			return &raft.AppendEntriesResponse{LastLog: uint64(len(req.Entries)), Success: true}, nil
		})
		args := makeAppendRPC()
		args.Entries = nil
		entry := make([]byte, 1<<20)
		for i := range 64 {
			args.Entries = append(args.Entries, &raft.Log{Index: uint64(101 + i), Term: 4, Type: raft.LogCommand, Data: entry})
		}
		var out raft.AppendEntriesResponse
		if err := n2.trans.AppendEntries("id1", n1.addr, &args, &out); err != nil {
			t.Fatal(err)
		}
		if out.LastLog != 64 {
			t.Fatalf("peer saw %d entries", out.LastLog)
		}
	})
}

// blackHole accepts TCP connections and never answers on them.
func blackHole(t *testing.T) raft.ServerAddress {
	lis := testnet.Listen(t)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return raft.ServerAddress(lis.Addr().String())
}

func TestTransport_BlackHolePeerCallsEndByDeadline(t *testing.T) {
	target := blackHole(t)
	n := newNode(t, Config{Timeout: 300 * time.Millisecond, HeartbeatTimeout: 100 * time.Millisecond})
	calls := map[string]func() error{
		"RequestVote": func() error {
			return n.trans.RequestVote("x", target, &raft.RequestVoteRequest{Term: 1}, new(raft.RequestVoteResponse))
		},
		"RequestPreVote": func() error {
			return n.trans.RequestPreVote("x", target, &raft.RequestPreVoteRequest{Term: 1}, new(raft.RequestPreVoteResponse))
		},
		"TimeoutNow": func() error {
			return n.trans.TimeoutNow("x", target, &raft.TimeoutNowRequest{}, new(raft.TimeoutNowResponse))
		},
		"Heartbeat": func() error {
			return n.trans.AppendEntries("x", target, &raft.AppendEntriesRequest{Term: 1, Leader: []byte("l")}, new(raft.AppendEntriesResponse))
		},
		"AppendEntries": func() error {
			args := makeAppendRPC()
			return n.trans.AppendEntries("x", target, &args, new(raft.AppendEntriesResponse))
		},
		"InstallSnapshot": func() error {
			return n.trans.InstallSnapshot("x", target, &raft.InstallSnapshotRequest{Size: 3}, new(raft.InstallSnapshotResponse), strings.NewReader("abc"))
		},
		"AppendEntriesPipeline": func() error {
			_, err := n.trans.AppendEntriesPipeline("x", target)
			return err
		},
	}
	var wg sync.WaitGroup
	for name, call := range calls {
		wg.Go(func() {
			done := make(chan error, 1)
			go func() { done <- call() }()
			select {
			case err := <-done:
				if err == nil {
					t.Errorf("%s to a black hole succeeded", name)
				}
			case <-time.After(testtiming.Hang()):
				t.Errorf("%s to a black hole never returned", name)
			}
		})
	}
	wg.Wait()
}

// TestTransport_PeerRestartSameAddress: a peer that went away and comes back
// on the same address is reachable again without recreating the transport.
func TestTransport_PeerRestartSameAddress(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	answer := func(ch <-chan raft.RPC) {
		respondAll(t, ch, func(rpc raft.RPC) (any, error) {
			return &raft.RequestVoteResponse{Term: 5, Granted: true}, nil
		})
	}
	answer(n1.trans.Consumer())
	vote := func() error {
		return n2.trans.RequestVote("id1", n1.addr, &raft.RequestVoteRequest{Term: 5}, new(raft.RequestVoteResponse))
	}
	if err := vote(); err != nil {
		t.Fatal(err)
	}
	n1.stop()
	if err := vote(); err == nil {
		t.Fatal("vote to a stopped peer succeeded")
	}
	var lis net.Listener
	waitFor(t, testtiming.Hang(), "the port to be free", func() bool {
		var err error
		lis, err = net.Listen("tcp", string(n1.addr))
		return err == nil
	})
	restarted := newNodeOn(t, lis, Config{}, nil)
	answer(restarted.trans.Consumer())
	waitFor(t, testtiming.Hang(), "the restarted peer to answer", func() bool { return vote() == nil })
}

func TestTransport_CloseTwice(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		return &raft.RequestVoteResponse{Granted: true}, nil
	})
	if err := n2.trans.RequestVote("id1", n1.addr, &raft.RequestVoteRequest{}, new(raft.RequestVoteResponse)); err != nil {
		t.Fatal(err)
	}
	if err := n2.trans.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n2.trans.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	err := n2.trans.RequestVote("id1", n1.addr, &raft.RequestVoteRequest{}, new(raft.RequestVoteResponse))
	if !errors.Is(err, raft.ErrTransportShutdown) {
		t.Fatalf("call after Close: %v", err)
	}
	if _, err := n2.trans.AppendEntriesPipeline("id1", n1.addr); !errors.Is(err, raft.ErrTransportShutdown) {
		t.Fatalf("pipeline after Close: %v", err)
	}
}

// TestTransport_InstallSnapshot_RefusedEarly: raft answers with an error
// before reading the whole snapshot; the sender gets raft's error text.
func TestTransport_InstallSnapshot_RefusedEarly(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		return &raft.InstallSnapshotResponse{Term: 9}, errors.New("snapshot refused: stale term")
	})
	size := int64(32 << 20) // far beyond the flow-control windows
	var out raft.InstallSnapshotResponse
	err := n2.trans.InstallSnapshot("id1", n1.addr, &raft.InstallSnapshotRequest{Term: 1, Size: size}, &out, io.LimitReader(zeroReader{}, size))
	if err == nil || !strings.Contains(err.Error(), "snapshot refused: stale term") {
		t.Fatalf("err = %v, want raft's error", err)
	}
	if out.Term != 9 {
		t.Fatalf("response %+v", out)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
