package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Authorizer decides whether the caller holding a certificate verified by
// the cluster CA is a raft peer, and returns the raft server id it speaks
// for. It is called for every raft call and every message of a pipeline
// stream, so it must be cheap.
type Authorizer func(cert *x509.Certificate) (raft.ServerID, error)

// PeerCertificate returns the certificate, verified against the server's
// ClientCAs, that the caller of ctx presented; ok is false for a caller
// without one (or without TLS).
func PeerCertificate(ctx context.Context) (cert *x509.Certificate, ok bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil, false
	}
	return info.State.VerifiedChains[0][0], true
}

// authorizedPeer is what RequirePeerCert leaves in the context of an
// admitted raft call, so that each request's source can be checked.
type authorizedPeer struct {
	cert      *x509.Certificate
	authorize Authorizer
}

type authorizedPeerKey struct{}

// checkSource refuses a request whose RPC header names another source than
// the caller's certificate, or whose caller is no longer a peer (a pipeline
// stream outlives membership changes). Calls admitted without an Authorizer
// (plaintext, or RequirePeerCert(nil)) pass.
func checkSource(ctx context.Context, h raft.RPCHeader) error {
	ap, ok := ctx.Value(authorizedPeerKey{}).(authorizedPeer)
	if !ok {
		return nil
	}
	id, err := ap.authorize(ap.cert)
	if err != nil {
		return status.Errorf(codes.PermissionDenied, "transport: peer certificate refused: %v", err)
	}
	if string(h.ID) != string(id) {
		return status.Errorf(codes.PermissionDenied, "transport: certificate of server %q cannot send a request from %q", id, h.ID)
	}
	return nil
}

// checkCall is the check every raft handler makes on each request: meant
// for this server, and sent by the server the caller's certificate names.
func (t *Transport) checkCall(ctx context.Context, h raft.RPCHeader) error {
	if err := t.checkTarget(ctx); err != nil {
		return err
	}
	return checkSource(ctx, h)
}

// peerStream gives a server stream the context RequirePeerCert built.
type peerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s peerStream) Context() context.Context { return s.ctx }

// wrongServerf is the handshake error of a dialed peer whose certificate
// names another server: the address now belongs to someone else.
func wrongServerf(format string, args ...any) error {
	return fmt.Errorf(wrongServerPrefix+" "+format, args...)
}

// peerCredentials returns the TLS credentials for dialing server id: the
// handshake fails unless the peer's verified certificate passes
// Config.VerifyServer for id.
func (t *Transport) peerCredentials(id raft.ServerID) credentials.TransportCredentials {
	cfg := t.cfg.TLS.Clone()
	if verify := t.cfg.VerifyServer; verify != nil {
		prev := cfg.VerifyConnection
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if prev != nil {
				if err := prev(cs); err != nil {
					return err
				}
			}
			if len(cs.PeerCertificates) == 0 {
				return wrongServerf("peer for %q presented no certificate", id)
			}
			if err := verify(id, cs.PeerCertificates[0]); err != nil {
				return wrongServerf("peer is not server %q: %v", id, err)
			}
			return nil
		}
	}
	return credentials.NewTLS(cfg)
}
