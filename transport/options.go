package transport

import (
	"context"
	"crypto/tls"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/transport/transportpb"
)

// ServerOptions returns the options of the one grpc.Server a blobgc server
// shares between raft and its client API: message size limits that admit a
// full AppendEntries batch (0 means DefaultMaxMessageSize), a keepalive
// policy that admits client pings every 5 s or less often (the transport
// pings every 10 s), static flow-control windows sized for raft batches
// (1 MiB per stream, 4 MiB per connection), and TLS credentials when
// tlsCfg is non-nil. For mTLS between peers while API clients may connect
// without a certificate, use ClientAuth tls.VerifyClientCertIfGiven with the
// cluster CA in ClientCAs: ServerOptions then also installs RequirePeerCert
// (nil), so the raft service admits only callers with a verified certificate.
// A malformed protobuf message is answered InvalidArgument (grpc-go's own
// codec answers Internal), and unknown fields are dropped on decoding.
func ServerOptions(maxMessageSize int, tlsCfg *tls.Config) []grpc.ServerOption {
	if maxMessageSize <= 0 {
		maxMessageSize = DefaultMaxMessageSize
	}
	opts := append((&strictCodec{}).serverOptions(),
		grpc.MaxRecvMsgSize(maxMessageSize),
		grpc.MaxSendMsgSize(maxMessageSize),
		// grpc-go's default policy (5 min, no pings without streams) answers
		// the transport's 10 s keepalive with GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             5 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    10 * time.Second,
			Timeout: 5 * time.Second,
		}),
		grpc.InitialWindowSize(1<<20),
		grpc.InitialConnWindowSize(4<<20),
	)
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg.Clone())))
		if tlsCfg.ClientAuth >= tls.VerifyClientCertIfGiven {
			unary, stream := RequirePeerCert(nil)
			opts = append(opts, grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
		}
	}
	return opts
}

// raftServicePrefix is the full-method prefix of every raft RPC.
var raftServicePrefix = "/" + pb.Raft_ServiceDesc.ServiceName + "/"

// RequirePeerCert returns interceptors that refuse raft-service calls
// (Unauthenticated) from callers that did not present a client certificate
// verified against the server's ClientCAs, and leave every other service
// alone. authorize, if non-nil, may refuse a verified certificate
// (PermissionDenied), for example because it names no member of the
// configuration; the transport then also refuses every request whose raft
// RPC header names another source than the server id authorize returned,
// checking each message of a stream again. They only make sense on a server
// with TLS credentials whose ClientAuth verifies given certificates
// (VerifyClientCertIfGiven or stricter).
func RequirePeerCert(authorize Authorizer) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	check := func(ctx context.Context, method string) (context.Context, error) {
		if !strings.HasPrefix(method, raftServicePrefix) {
			return ctx, nil
		}
		cert, ok := PeerCertificate(ctx)
		if !ok {
			return nil, status.Error(codes.Unauthenticated, "transport: raft service requires a peer certificate from the cluster CA")
		}
		if authorize == nil {
			return ctx, nil
		}
		if _, err := authorize(cert); err != nil {
			return nil, status.Errorf(codes.PermissionDenied, "transport: peer certificate refused: %v", err)
		}
		return context.WithValue(ctx, authorizedPeerKey{}, authorizedPeer{cert: cert, authorize: authorize}), nil
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := check(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := check(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		if ctx != ss.Context() {
			ss = peerStream{ServerStream: ss, ctx: ctx}
		}
		return handler(srv, ss)
	}
	return unary, stream
}

// GracefulStop stops the shared server s, letting running calls finish for
// at most timeout before stopping it hard. grpc.Server.GracefulStop alone
// would wait for ever on long-lived streams such as an idle pipeline whose
// peer keeps it open.
func GracefulStop(s *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		s.Stop()
		<-done
	}
}
