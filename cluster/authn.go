package cluster

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/gateway"
	"github.com/blobgc/blobgc/transport/transportpb"
)

const (
	// principalKey carries the principal a follower authenticated to the
	// leader (auth.EncodePrincipal). The leader believes it only from a
	// verified peer.
	principalKey = "blobgc-principal"
	// authorizationKey carries a client's bearer token: "Bearer <token>".
	authorizationKey = "authorization"
	bearerPrefix     = "Bearer "
)

// openServices answer without authentication: health checks, reflection, and
// raft (whose callers the transport checks against their certificates).
var openServices = map[string]bool{
	healthpb.Health_ServiceDesc.ServiceName:                    true,
	reflectionv1.ServerReflection_ServiceDesc.ServiceName:      true,
	reflectionv1alpha.ServerReflection_ServiceDesc.ServiceName: true,
	transportpb.Raft_ServiceDesc.ServiceName:                   true,
}

// serviceOf returns the service of a full method name "/pkg.Service/Method".
func serviceOf(fullMethod string) string {
	s := strings.TrimPrefix(fullMethod, "/")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// authn is a server's client authentication: who may call, and the record
// of who was refused.
type authn struct {
	required bool         // false: every caller is auth.Anonymous
	tls      bool         // callers can present verified certificates
	tokens   *auth.Tokens // nil without a token file
	denied   *prometheus.CounterVec
	log      hclog.Logger
}

func newAuthn(cfg Config, log hclog.Logger, reg prometheus.Registerer) (*authn, error) {
	a := &authn{tls: cfg.TLS.CAFile != "", log: log.Named("auth")}
	if cfg.TokenFile != "" {
		t, err := auth.LoadTokens(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		a.tokens = t
	}
	a.required = a.tls || a.tokens != nil
	a.denied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "blobgc_auth_denied_total",
		Help: "API calls refused with PermissionDenied, by method and the caller's role.",
	}, []string{"method", "role"})
	reg.MustRegister(a.denied)
	if !a.required {
		a.log.Warn("authentication is off (no token file and no TLS client CA): every caller is an anonymous admin")
	}
	return a, nil
}

// ReloadTokens re-reads the token file (on SIGHUP): revoked tokens are
// refused from now on, new ones accepted. It logs counts, never tokens. On
// error the previous tokens stay in use.
func (s *Server) ReloadTokens() error {
	if s.authn.tokens == nil {
		return nil
	}
	ch, err := s.authn.tokens.Reload()
	if err != nil {
		s.authn.log.Error("token file not reloaded; the previous tokens stay in use", "error", err)
		return err
	}
	s.authn.log.Info("token file reloaded", "added", ch.Added, "removed", ch.Removed, "changed", ch.Changed, "total", ch.Total)
	return nil
}

// authUnary authenticates every call to a guarded service, puts the
// principal into the context and checks the role table.
func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if openServices[serviceOf(info.FullMethod)] {
		return handler(ctx, req)
	}
	ctx, err := s.admit(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// authStream is authUnary for streaming methods.
func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if openServices[serviceOf(info.FullMethod)] {
		return handler(srv, ss)
	}
	ctx, err := s.admit(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, ctxStream{ss, ctx})
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c ctxStream) Context() context.Context { return c.ctx }

// admit authenticates the caller and authorises method for it.
func (s *Server) admit(ctx context.Context, method string) (context.Context, error) {
	ctx, p, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if !auth.Allowed(method, p.Role) {
		need := "a rule, and it has none"
		if roles, ok := auth.RolesFor(method); ok {
			need = "role " + auth.JoinRoles(roles)
		}
		return nil, s.deny(method, p, methodName(method)+" needs "+need)
	}
	return auth.NewContext(ctx, p), nil
}

// authenticate returns the caller's principal. A verified peer (a server of
// the configuration) forwarding a call names the client's principal; anyone
// else authenticates with a bearer token or a client certificate, and the
// forwarding headers they set are dropped.
func (s *Server) authenticate(ctx context.Context) (context.Context, auth.Principal, error) {
	if !s.authn.required {
		return ctx, auth.Anonymous, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	// A call the HTTP gateway makes for an HTTP caller comes over this
	// server's own connection and certificate: only the caller's bearer
	// token may say who it is.
	viaHTTP := len(md.Get(gateway.ViaHTTPKey)) > 0
	if _, ok := s.peerIdentity(ctx); ok && !viaHTTP {
		if v := md.Get(principalKey); len(v) > 0 {
			p, err := auth.DecodePrincipal(v[0])
			if err != nil {
				return ctx, p, status.Errorf(codes.Unauthenticated, "forwarded principal: %v", err)
			}
			return ctx, p, nil
		}
	} else if s.authn.tls || viaHTTP {
		// Without TLS there are no verified peers and the marker only
		// prevents loops; with TLS only a peer may set it.
		ctx = withoutIncoming(ctx, md, forwardedKey, principalKey)
	}
	if v := md.Get(authorizationKey); len(v) > 0 {
		token, ok := strings.CutPrefix(v[0], bearerPrefix)
		switch {
		case !ok || token == "":
			return ctx, auth.Principal{}, status.Error(codes.Unauthenticated, `authorization metadata: want "Bearer <token>"`)
		case s.authn.tokens == nil:
			return ctx, auth.Principal{}, status.Error(codes.Unauthenticated, "this server accepts no bearer tokens (it has no token file); use a client certificate")
		}
		p, ok := s.authn.tokens.Lookup(token)
		if !ok {
			return ctx, p, status.Error(codes.Unauthenticated, "bearer token not accepted: unknown or revoked")
		}
		return ctx, p, nil
	}
	if viaHTTP {
		return ctx, auth.Principal{}, status.Error(codes.Unauthenticated,
			"no credentials: over HTTP this cluster requires the header Authorization: Bearer <token> (client certificates do not authenticate HTTP calls)")
	}
	if cert := verifiedCert(ctx); cert != nil {
		id, err := auth.FromCertificate(cert, s.trustDomain())
		if err != nil {
			return ctx, auth.Principal{}, status.Errorf(codes.Unauthenticated, "client certificate names no blobgc identity: %v", err)
		}
		if id.IsServer() {
			return ctx, auth.Principal{Name: id.ServerID, Role: auth.RoleServer}, nil
		}
		return ctx, auth.PrincipalOf(id), nil
	}
	return ctx, auth.Principal{}, status.Error(codes.Unauthenticated,
		"no credentials: this cluster requires a bearer token (metadata authorization: Bearer <token>) or a client certificate from its CA")
}

// withoutIncoming returns ctx with the incoming metadata keys removed.
func withoutIncoming(ctx context.Context, md metadata.MD, keys ...string) context.Context {
	var out metadata.MD
	for _, k := range keys {
		if len(md.Get(k)) == 0 {
			continue
		}
		if out == nil {
			out = md.Copy()
		}
		out.Delete(k)
	}
	if out == nil {
		return ctx
	}
	return metadata.NewIncomingContext(ctx, out)
}

// deny counts and logs a refused call and returns its PermissionDenied.
func (s *Server) deny(method string, p auth.Principal, why string) error {
	s.authn.denied.WithLabelValues(methodName(method), string(p.Role)).Inc()
	s.authn.log.Warn("permission denied", "principal", p.String(), "method", method, "reason", why)
	return status.Errorf(codes.PermissionDenied, "permission denied: %s (caller %s)", why, p)
}

// mayActAsNode refuses a report or deregistration for a node id that the
// caller's credential does not name.
func (s *Server) mayActAsNode(ctx context.Context, method, node string) error {
	p, _ := auth.FromContext(ctx)
	if p.MayActAsNode(node) {
		return nil
	}
	return s.deny(method, p, fmt.Sprintf("%s as node %q needs role admin or a node credential naming %q", methodName(method), node, node))
}

// mayAddServer lets a server add only itself (joining); admins add anyone.
func (s *Server) mayAddServer(ctx context.Context, id string) error {
	p, _ := auth.FromContext(ctx)
	if p.Role != auth.RoleServer || p.Name == id {
		return nil
	}
	return s.deny(pb.BlobGC_AddServer_FullMethodName, p, fmt.Sprintf("a server may add only itself, not %q", id))
}

// identityMD is the outgoing metadata that carries the caller's identity to
// another server: the principal (believed there only from a verified peer)
// and the bearer token, if any (re-checked there; without TLS the only
// proof).
func identityMD(ctx context.Context) []string {
	var kv []string
	if p, ok := auth.FromContext(ctx); ok {
		kv = append(kv, principalKey, auth.EncodePrincipal(p))
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(authorizationKey); len(v) > 0 {
		kv = append(kv, authorizationKey, v[0])
	}
	return kv
}
