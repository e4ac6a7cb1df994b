package cluster

import (
	"context"
	"crypto/x509"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/blobgc/blobgc/auth"
)

// verifiedCert returns the caller's certificate if TLS verified it against
// the cluster CA.
func verifiedCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// trustDomain is the trust domain of this cluster's identities.
func (s *Server) trustDomain() string {
	if s.cfg.TrustDomain != "" {
		return s.cfg.TrustDomain
	}
	return auth.DefaultTrustDomain
}

// peerIdentity returns the id of the raft server calling, when the caller
// presented a verified certificate naming a server of this trust domain
// whose id is in the current raft configuration.
func (s *Server) peerIdentity(ctx context.Context) (id string, ok bool) {
	cert := verifiedCert(ctx)
	if cert == nil {
		return "", false
	}
	ident, err := auth.FromCertificate(cert, s.trustDomain())
	if err != nil || !ident.IsServer() {
		return "", false
	}
	if _, member, err := s.configServer(ident.ServerID); err != nil || !member {
		return "", false
	}
	return ident.ServerID, true
}
