package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/internal/testnet"
	"github.com/blobgc/blobgc/internal/testpki"
)

// startTLSServer starts server s1, alone in its configuration, with TLS.
func startTLSServer(tb testing.TB) (*Server, testpki.Files, net.Listener) {
	files := testpki.WriteFiles(tb, tb.TempDir())
	lis := testnet.Listen(tb)
	s, err := New(Config{
		ID: "s1", DataDir: tb.TempDir(), Listener: lis, CycleInterval: -1,
		Peers: []Peer{{ID: "s1", Address: lis.Addr().String()}},
		TLS:   TLSFiles{CertFile: files.ServerCert, KeyFile: files.ServerKey, CAFile: files.CA},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.Start(); err != nil {
		tb.Fatal(err)
	}
	return s, files, lis
}

// peerIdentity, the check handlers use for calls that only peers may make,
// names the member a verified server certificate belongs to, and nobody
// else.
func TestPeerIdentity(t *testing.T) {
	s, files, lis := startTLSServer(t)
	withCert := func(c tls.Certificate) context.Context {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		info := credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf, files.Authority.Cert}}}}
		return peer.NewContext(context.Background(), &peer.Peer{Addr: lis.Addr(), AuthInfo: info})
	}
	ca := files.Authority
	deadline := time.Now().Add(time.Minute)
	for {
		id, ok := s.peerIdentity(withCert(ca.Server(t, auth.DefaultTrustDomain, "s1")))
		if ok && id == "s1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member s1: %q %v", id, ok)
		}
		time.Sleep(10 * time.Millisecond) // bootstrap may not have stored the configuration yet
	}
	for name, ctx := range map[string]context.Context{
		"no peer":            context.Background(),
		"plaintext peer":     peer.NewContext(context.Background(), &peer.Peer{Addr: lis.Addr()}),
		"non-member server":  withCert(ca.Server(t, auth.DefaultTrustDomain, "s2")),
		"client certificate": withCert(ca.Client(t, auth.DefaultTrustDomain, auth.RoleAdmin, "s1")),
		"other trust domain": withCert(ca.Server(t, "elsewhere", "s1")),
	} {
		if id, ok := s.peerIdentity(ctx); ok {
			t.Errorf("%s: a peer (%q)", name, id)
		}
	}
}

// BenchmarkAuthorizePeer is the peer check every raft request and every
// pipelined message makes: a member's certificate against the cached
// configuration.
func BenchmarkAuthorizePeer(b *testing.B) {
	s, files, _ := startTLSServer(b)
	c := files.Authority.Server(b, auth.DefaultTrustDomain, "s1")
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); s.raft.GetConfiguration().Configuration().Servers == nil; {
		if time.Now().After(deadline) {
			b.Fatal("no configuration after bootstrap")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.authorizePeer(leaf); err != nil {
			b.Fatal(err)
		}
	}
}
