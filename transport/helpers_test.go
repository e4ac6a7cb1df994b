package transport

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/blobgc/blobgc/internal/testnet"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// node is one transport registered on its own shared gRPC server, the way a
// blobgc server runs it (a health service stands in for the client API).
type node struct {
	trans  *Transport
	server *grpc.Server
	lis    net.Listener
	addr   raft.ServerAddress
}

// newNode starts a transport on a fresh loopback port. The server is
// stopped and the transport closed when the test ends.
func newNode(tb testing.TB, cfg Config) *node {
	tb.Helper()
	lis := testnet.Listen(tb)
	return newNodeOn(tb, lis, cfg, nil)
}

// newNodeOn starts a transport on lis; serverTLS, if set, is the shared
// server's TLS configuration.
func newNodeOn(tb testing.TB, lis net.Listener, cfg Config, serverTLS *tls.Config) *node {
	tb.Helper()
	cfg.LocalAddr = raft.ServerAddress(lis.Addr().String())
	trans, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions(cfg.MaxMessageSize, serverTLS)...)
	trans.Register(srv)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	n := &node{trans: trans, server: srv, lis: lis, addr: cfg.LocalAddr}
	tb.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	_ = n.trans.Close()
	n.server.Stop()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recvRPC takes the next RPC from a consumer channel or fails the test.
func recvRPC(tb testing.TB, ch <-chan raft.RPC) raft.RPC {
	tb.Helper()
	select {
	case rpc := <-ch:
		return rpc
	case <-time.After(testtiming.Hang()):
		tb.Fatal("no RPC arrived")
		return raft.RPC{}
	}
}

// equal compares raft structs, treating nil and empty slices alike (the wire
// cannot tell them apart and raft never does) and times by Equal.
func equal(a, b any) string {
	return cmp.Diff(a, b, cmpopts.EquateEmpty())
}

func makeAppendRPC() raft.AppendEntriesRequest {
	return raft.AppendEntriesRequest{
		Term:              10,
		PrevLogEntry:      100,
		PrevLogTerm:       4,
		Entries:           []*raft.Log{{Index: 101, Term: 4, Type: raft.LogNoop}},
		LeaderCommitIndex: 90,
		RPCHeader:         raft.RPCHeader{ID: []byte("id-cartman"), Addr: []byte("cartman")},
	}
}

func makeAppendRPCResponse() raft.AppendEntriesResponse {
	return raft.AppendEntriesResponse{Term: 4, LastLog: 90, Success: true}
}

// respondAll answers every RPC on ch with fn's result until the test ends.
func respondAll(tb testing.TB, ch <-chan raft.RPC, fn func(rpc raft.RPC) (any, error)) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	tb.Cleanup(func() { close(done); <-stopped })
	go func() {
		defer close(stopped)
		for {
			select {
			case rpc := <-ch:
				resp, err := fn(rpc)
				rpc.Respond(resp, err)
			case <-done:
				return
			}
		}
	}()
}
