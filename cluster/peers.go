package cluster

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/transport"
)

// Peers: with TLS, only a member's server certificate may speak raft. A
// peer presents a certificate from the cluster CA whose identity is
// spiffe://<TrustDomain>/server/<id> with id in the current raft
// configuration, or any server identity while this server's configuration
// is empty (a fresh server waiting to be added through AddServer). The
// transport also makes each request's raft source id match the certificate
// and checks, when dialing, that the peer reached is the server meant.

// memberRefresh is how often the cached membership is re-read from raft, so
// that a removed server loses its access within this time. A certificate
// naming an id missing from the cache re-reads it at once, so an added server
// is admitted without delay.
const memberRefresh = time.Second

// memberCache caches the ids of the latest raft configuration for the peer
// check on the hot path.
type memberCache struct {
	ids atomic.Pointer[map[raft.ServerID]bool]
}

// refresh re-reads the configuration from r (an atomic read in raft).
func (m *memberCache) refresh(r *raft.Raft) map[raft.ServerID]bool {
	ids := map[raft.ServerID]bool{}
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			ids[srv.ID] = true
		}
	}
	m.ids.Store(&ids)
	return ids
}

// admits reports whether id may speak raft to this server.
func (m *memberCache) admits(r *raft.Raft, id raft.ServerID) bool {
	if ids := m.ids.Load(); ids != nil && (*ids)[id] {
		return true
	}
	ids := m.refresh(r)
	return ids[id] || len(ids) == 0
}

// verifiedCert returns the caller's certificate if TLS verified it against
// the cluster CA.
func verifiedCert(ctx context.Context) *x509.Certificate {
	cert, _ := transport.PeerCertificate(ctx)
	return cert
}

// trustDomain is the trust domain of this cluster's identities.
func (s *Server) trustDomain() string { return s.cfg.TrustDomain }

// authorizePeer is the transport.Authorizer of this server: the raft id a
// verified certificate speaks for, if it is a peer.
func (s *Server) authorizePeer(cert *x509.Certificate) (raft.ServerID, error) {
	id, err := auth.FromCertificate(cert, s.trustDomain())
	if err != nil {
		return "", err
	}
	if !id.IsServer() {
		return "", fmt.Errorf("%s is not a server identity", id)
	}
	if !s.peerIDs.admits(s.raft, raft.ServerID(id.ServerID)) {
		return "", fmt.Errorf("server %q is not in the raft configuration", id.ServerID)
	}
	return raft.ServerID(id.ServerID), nil
}

// peerIdentity returns the raft id of the caller of ctx if it is a peer: it
// presented a verified server certificate of a current member (see
// authorizePeer). Callers without TLS are never peers.
func (s *Server) peerIdentity(ctx context.Context) (id string, ok bool) {
	cert := verifiedCert(ctx)
	if cert == nil {
		return "", false
	}
	sid, err := s.authorizePeer(cert)
	return string(sid), err == nil
}

// verifyServer checks, while dialing raft server id, that the certificate
// the peer answered with names that server.
func (s *Server) verifyServer(id raft.ServerID, cert *x509.Certificate) error {
	got, err := auth.FromCertificate(cert, s.trustDomain())
	if err != nil {
		return err
	}
	if want := auth.ServerIdentity(s.trustDomain(), string(id)); got != want {
		return fmt.Errorf("certificate names %s, want %s", got, want)
	}
	return nil
}

// peerOptions are the shared server's interceptors that admit only peers to
// the raft service (none without TLS).
func (s *Server) peerOptions() []grpc.ServerOption {
	if s.tls == nil {
		return nil
	}
	unary, stream := transport.RequirePeerCert(s.authorizePeer)
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}
}

// Reload re-reads the TLS certificate, key and CA files: new handshakes
// (peers, clients, dialing) use them, open connections keep theirs. On
// error the files in use stay. Without TLS it does nothing.
func (s *Server) Reload() error {
	if s.tls == nil {
		return nil
	}
	if err := s.tls.reload(); err != nil {
		s.log.Error("TLS reload failed; keeping the certificates in use", "error", err)
		return err
	}
	s.log.Info("TLS certificates reloaded", "cert", s.cfg.TLS.CertFile, "ca", s.cfg.TLS.CAFile)
	return nil
}

// ValidateServerID checks a raft server id: the name rules of auth.ValidName,
// so it fits in a certificate's server identity.
func ValidateServerID(id string) error {
	if err := auth.ValidName(id); err != nil {
		return fmt.Errorf("server id %q: %v", id, err)
	}
	return nil
}

// ValidateServerAddress checks a raft server address: host:port with a
// non-empty host, a port from 1 to 65535, and no control characters.
func ValidateServerAddress(addr string) error {
	for _, c := range addr {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("address %q: control character %q", addr, c)
		}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: want host:port: %v", addr, err)
	}
	if host == "" {
		return fmt.Errorf("address %q: empty host", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("address %q: port must be a number from 1 to 65535", addr)
	}
	return nil
}
