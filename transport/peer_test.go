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
	"google.golang.org/grpc/status"

	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/internal/testnet"
	"github.com/blobgc/blobgc/internal/testpki"
)

const testDomain = auth.DefaultTrustDomain

// members is an Authorizer admitting the server identities of ids, as
// blobgc's membership check does.
func members(ids ...string) Authorizer {
	return func(cert *x509.Certificate) (raft.ServerID, error) {
		id, err := auth.FromCertificate(cert, testDomain)
		if err != nil {
			return "", err
		}
		if !id.IsServer() {
			return "", errors.New(id.String() + " is not a server")
		}
		for _, m := range ids {
			if m == id.ServerID {
				return raft.ServerID(m), nil
			}
		}
		return "", errors.New(id.ServerID + " is not a member")
	}
}

// serverIdentity is a Config.VerifyServer that wants the server identity of
// the dialed id.
func serverIdentity(id raft.ServerID, cert *x509.Certificate) error {
	got, err := auth.FromCertificate(cert, testDomain)
	if err != nil {
		return err
	}
	if got != auth.ServerIdentity(testDomain, string(id)) {
		return errors.New("certificate names " + got.String())
	}
	return nil
}

// identityNode starts transport id with its server identity certificate,
// a shared server that admits the given members, and VerifyServer on.
func identityNode(t *testing.T, ca *testpki.CA, id string, admit Authorizer) *node {
	t.Helper()
	return certNode(t, ca, ca.Server(t, testDomain, id), raft.ServerID(id), admit)
}

func certNode(t *testing.T, ca *testpki.CA, cert tls.Certificate, id raft.ServerID, admit Authorizer) *node {
	t.Helper()
	lis := testnet.Listen(t)
	addr := raft.ServerAddress(lis.Addr().String())
	trans, err := New(Config{
		LocalAddr: addr, LocalID: id, HeartbeatTimeout: 5 * time.Second,
		TLS:          &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool, MinVersion: tls.VersionTLS13},
		VerifyServer: serverIdentity,
	})
	if err != nil {
		t.Fatal(err)
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.Pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS13}
	unary, stream := RequirePeerCert(admit)
	srv := grpc.NewServer(append(ServerOptions(0, serverTLS), grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))...)
	trans.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	n := &node{trans: trans, server: srv, lis: lis, addr: addr}
	t.Cleanup(n.stop)
	return n
}

// grantAll answers every RPC reaching n's raft and counts them.
func grantAll(t *testing.T, n *node) <-chan raft.RPC {
	seen := make(chan raft.RPC, 100)
	respondAll(t, n.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		seen <- rpc
		switch rpc.Command.(type) {
		case *raft.RequestVoteRequest:
			return &raft.RequestVoteResponse{Term: 3, Granted: true}, nil
		case *raft.TimeoutNowRequest:
			return &raft.TimeoutNowResponse{}, nil
		default:
			return &raft.AppendEntriesResponse{Term: 3, Success: true}, nil
		}
	})
	return seen
}

func header(id string) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte("x")}
}

func wantNothingReached(t *testing.T, seen <-chan raft.RPC) {
	t.Helper()
	select {
	case rpc := <-seen:
		t.Fatalf("a refused call reached raft: %T", rpc.Command)
	default:
	}
}

// A member may call only as itself: the RPC header's source must be the id
// its certificate names, on unary calls and on every pipelined message.
func TestPeer_SourceMustMatchCertificate(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	admit := members("n1", "n2")
	n1 := identityNode(t, ca, "n1", admit)
	n2 := identityNode(t, ca, "n2", admit)
	seen := grantAll(t, n1)

	if err := n2.trans.RequestVote("n1", n1.addr, &raft.RequestVoteRequest{RPCHeader: header("n2"), Term: 3}, new(raft.RequestVoteResponse)); err != nil {
		t.Fatalf("a member calling as itself: %v", err)
	}
	<-seen
	for _, forged := range []string{"n1", "n3", ""} {
		err := n2.trans.RequestVote("n1", n1.addr, &raft.RequestVoteRequest{RPCHeader: header(forged), Term: 4}, new(raft.RequestVoteResponse))
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("n2 calling as %q: %v, want PermissionDenied", forged, err)
		}
		err = n2.trans.TimeoutNow("n1", n1.addr, &raft.TimeoutNowRequest{RPCHeader: header(forged)}, new(raft.TimeoutNowResponse))
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("TimeoutNow from n2 as %q: %v, want PermissionDenied", forged, err)
		}
	}
	wantNothingReached(t, seen)

	p, err := n2.trans.AppendEntriesPipeline("n1", n1.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	good := makeAppendRPC()
	good.RPCHeader = header("n2")
	if _, err := p.AppendEntries(&good, new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	if f := <-p.Consumer(); f.Error() != nil {
		t.Fatalf("pipelined append as itself: %v", f.Error())
	}
	<-seen
	bad := makeAppendRPC()
	bad.RPCHeader = header("n1")
	f, err := p.AppendEntries(&bad, new(raft.AppendEntriesResponse))
	if err == nil {
		err = f.Error()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("pipelined append as another server: %v, want PermissionDenied", err)
	}
	wantNothingReached(t, seen)
}

// Certificates from the cluster CA that are not a member's are refused:
// a client identity, a server outside the configuration, and a
// certificate naming no identity.
func TestPeer_OnlyMembersAreAdmitted(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	admit := members("n1", "n2")
	n1 := identityNode(t, ca, "n1", admit)
	seen := grantAll(t, n1)
	callers := map[string]tls.Certificate{
		"client identity":   ca.Client(t, testDomain, auth.RoleAdmin, "n2"),
		"non-member server": ca.Server(t, testDomain, "n9"),
		"other domain":      ca.Server(t, "elsewhere", "n2"),
		"no identity":       ca.Issue(t, "n2", true),
	}
	for name, cert := range callers {
		caller := certNode(t, ca, cert, "n2", admit)
		for _, from := range []string{"n2", "n9"} {
			err := caller.trans.RequestVote("n1", n1.addr, &raft.RequestVoteRequest{RPCHeader: header(from), Term: 3}, new(raft.RequestVoteResponse))
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("%s calling as %s: %v, want PermissionDenied", name, from, err)
			}
		}
		// The refusal may reach a pipelined send as the end of the stream.
		if err := pipelinedAppend(caller, n1, "n2"); err == nil {
			t.Fatalf("%s pipelined an append", name)
		}
	}
	wantNothingReached(t, seen)
}

// A server dialing a peer checks that the certificate it is answered with
// names the server raft meant; otherwise no request is sent, and the
// connections to that address are dropped.
func TestPeer_DialChecksServerIdentity(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	admit := members("n1", "n2", "n3")
	// n1 without a LocalID does not refuse calls meant for another server,
	// so only the dialer's check stands between n2 and the wrong server.
	n1 := certNode(t, ca, ca.Server(t, testDomain, "n1"), "", admit)
	n2 := identityNode(t, ca, "n2", admit)
	seen := grantAll(t, n1)
	// n2 believes n3 lives at n1's address.
	err := n2.trans.RequestVote("n3", n1.addr, &raft.RequestVoteRequest{RPCHeader: header("n2"), Term: 3}, new(raft.RequestVoteResponse))
	if !isWrongServer(err) {
		t.Fatalf("dialing n3 at n1's address: %v, want a wrong-server handshake error", err)
	}
	wantNothingReached(t, seen)
	if err := n2.trans.RequestVote("n1", n1.addr, &raft.RequestVoteRequest{RPCHeader: header("n2"), Term: 3}, new(raft.RequestVoteResponse)); err != nil {
		t.Fatalf("dialing n1 at its address: %v", err)
	}
	<-seen
}

// pipelinedAppend sends one append from caller to n over a pipeline and
// returns its outcome.
func pipelinedAppend(caller, n *node, from string) error {
	p, err := caller.trans.AppendEntriesPipeline("n1", n.addr)
	if err != nil {
		return err
	}
	defer p.Close()
	args := makeAppendRPC()
	args.RPCHeader = header(from)
	f, err := p.AppendEntries(&args, new(raft.AppendEntriesResponse))
	if err != nil {
		return err
	}
	return f.Error()
}

func TestPeer_PeerCertificate(t *testing.T) {
	if _, ok := PeerCertificate(context.Background()); ok {
		t.Fatal("a context without a peer has a certificate")
	}
}
