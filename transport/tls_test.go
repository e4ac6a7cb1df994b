package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/blobgc/blobgc/internal/testnet"
	"github.com/blobgc/blobgc/internal/testpki"
	"github.com/blobgc/blobgc/internal/testtiming"
	pb "github.com/blobgc/blobgc/transport/transportpb"
)

// testPKI is a cluster CA generated for one test.
type testPKI struct{ *testpki.CA }

func newTestPKI(tb testing.TB) *testPKI {
	return &testPKI{testpki.NewCA(tb, "blobgc test cluster CA")}
}

// issue signs a certificate for name, usable as both server and client
// certificate (a peer is both).
func (p *testPKI) issue(tb testing.TB, name string) tls.Certificate {
	return p.Issue(tb, name, true)
}

// peerTLS returns a peer's client TLS config (for Config.TLS) and the shared
// server's TLS config: client certificates verified if given.
func (p *testPKI) peerTLS(tb testing.TB) (client, server *tls.Config) {
	cert := p.issue(tb, "peer.blobgc.test")
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: p.Pool, MinVersion: tls.VersionTLS13}
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    p.Pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
		MinVersion:   tls.VersionTLS13,
	}
	return client, server
}

func newTLSNode(t *testing.T, pki *testPKI, cfg Config) *node {
	lis := testnet.Listen(t)
	var serverTLS *tls.Config
	cfg.TLS, serverTLS = pki.peerTLS(t)
	return newNodeOn(t, lis, cfg, serverTLS)
}

func TestTLS_PeersWithClusterCertificates(t *testing.T) {
	pki := newTestPKI(t)
	n1 := newTLSNode(t, pki, Config{})
	n2 := newTLSNode(t, pki, Config{})
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		switch rpc.Command.(type) {
		case *raft.RequestVoteRequest:
			return &raft.RequestVoteResponse{Term: 3, Granted: true}, nil
		default:
			return &raft.AppendEntriesResponse{Term: 3, Success: true}, nil
		}
	})
	var vote raft.RequestVoteResponse
	if err := n2.trans.RequestVote("n1", n1.addr, &raft.RequestVoteRequest{Term: 3}, &vote); err != nil {
		t.Fatal(err)
	}
	if !vote.Granted {
		t.Fatal("vote not granted")
	}
	p, err := n2.trans.AppendEntriesPipeline("n1", n1.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	args := makeAppendRPC()
	if _, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	f := <-p.Consumer()
	if err := f.Error(); err != nil || !f.Response().Success {
		t.Fatalf("pipelined append over mTLS: %v %+v", err, f.Response())
	}
}

// dialTLS connects to a node's shared server as an arbitrary client.
func dialTLS(t *testing.T, addr raft.ServerAddress, cfg *tls.Config) *grpc.ClientConn {
	conn, err := grpc.NewClient("passthrough:///"+string(addr), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestTLS_RaftServiceRefusesCallerWithoutPeerCert(t *testing.T) {
	pki := newTestPKI(t)
	n1 := newTLSNode(t, pki, Config{})
	// An API client: trusts the cluster CA but has no certificate.
	conn := dialTLS(t, n1.addr, &tls.Config{RootCAs: pki.Pool, MinVersion: tls.VersionTLS13})
	ctx, cancel := context.WithTimeout(context.Background(), testtiming.Hang())
	defer cancel()

	_, err := pb.NewRaftClient(conn).RequestVote(ctx, &pb.RequestVoteRequest{Term: 99})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("RequestVote without a certificate: %v, want Unauthenticated", err)
	}
	stream, err := pb.NewRaftClient(conn).AppendEntriesPipeline(ctx)
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("pipeline without a certificate: %v, want Unauthenticated", err)
	}
	select {
	case rpc := <-n1.trans.Consumer():
		t.Fatalf("unauthenticated call reached raft: %T", rpc.Command)
	default:
	}
	// Other services on the shared server stay open to such clients.
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check without a certificate: %v %v", resp, err)
	}
}

func TestTLS_ForeignCAIsRefused(t *testing.T) {
	pki := newTestPKI(t)
	n1 := newTLSNode(t, pki, Config{})
	rogue := newTestPKI(t)
	conn := dialTLS(t, n1.addr, &tls.Config{
		Certificates: []tls.Certificate{rogue.issue(t, "rogue")},
		RootCAs:      pki.Pool,
		MinVersion:   tls.VersionTLS13,
	})
	ctx, cancel := context.WithTimeout(context.Background(), testtiming.Hang())
	defer cancel()
	if _, err := pb.NewRaftClient(conn).RequestVote(ctx, &pb.RequestVoteRequest{Term: 1}); err == nil {
		t.Fatal("a certificate from a foreign CA was accepted")
	}
	// And the transport itself, configured with the foreign CA, fails.
	lis := testnet.Listen(t)
	clientTLS, _ := rogue.peerTLS(t)
	clientTLS.RootCAs = pki.Pool
	n2 := newNodeOn(t, lis, Config{TLS: clientTLS, HeartbeatTimeout: 2 * time.Second}, nil)
	if err := n2.trans.RequestVote("n1", n1.addr, &raft.RequestVoteRequest{Term: 1}, new(raft.RequestVoteResponse)); err == nil {
		t.Fatal("transport with a foreign certificate got through")
	}
}

func TestTLS_ServerNameIsVerified(t *testing.T) {
	// A server whose certificate is from another CA is not trusted, so a
	// reused address cannot impersonate a peer.
	pki := newTestPKI(t)
	other := newTestPKI(t)
	n1 := newTLSNode(t, other, Config{})
	lis := testnet.Listen(t)
	clientTLS, _ := pki.peerTLS(t)
	n2 := newNodeOn(t, lis, Config{TLS: clientTLS, HeartbeatTimeout: 2 * time.Second}, nil)
	err := n2.trans.RequestVote("n1", n1.addr, &raft.RequestVoteRequest{Term: 1}, new(raft.RequestVoteResponse))
	if err == nil {
		t.Fatal("a server with an untrusted certificate was accepted")
	}
}

func TestTLS_AuthorizeCallback(t *testing.T) {
	pki := newTestPKI(t)
	lis := testnet.Listen(t)
	clientTLS, serverTLS := pki.peerTLS(t)
	unary, stream := RequirePeerCert(func(cert *x509.Certificate) (raft.ServerID, error) {
		if cert.Subject.CommonName != "allowed" {
			return "", errors.New("not a member: " + cert.Subject.CommonName)
		}
		return "allowed", nil
	})
	trans, err := New(Config{LocalAddr: raft.ServerAddress(lis.Addr().String())})
	if err != nil {
		t.Fatal(err)
	}
	// Only the server's credentials and the custom interceptors, no
	// default RequirePeerCert(nil).
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)),
		grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	trans.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { trans.Close(); srv.Stop() })

	conn := dialTLS(t, raft.ServerAddress(lis.Addr().String()), clientTLS)
	ctx, cancel := context.WithTimeout(context.Background(), testtiming.Hang())
	defer cancel()
	_, err = pb.NewRaftClient(conn).RequestVote(ctx, &pb.RequestVoteRequest{Term: 1})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("err = %v, want PermissionDenied", err)
	}
}

func TestTLS_ServerOptionsWithoutTLSDoNotRequireCerts(t *testing.T) {
	// Plaintext servers (tests, dev mode) must not refuse raft calls.
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		return &raft.RequestVoteResponse{Granted: true}, nil
	})
	if err := n2.trans.RequestVote("n1", n1.addr, &raft.RequestVoteRequest{Term: 1}, new(raft.RequestVoteResponse)); err != nil {
		t.Fatal(err)
	}
}
