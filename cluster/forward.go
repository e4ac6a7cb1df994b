package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	// LeaderHeader is the response header naming the leader's address, set on
	// every API response when a leader is known, so clients can go direct.
	LeaderHeader = "blobgc-leader"
	// forwardedKey marks a request forwarded by a follower: the receiver
	// serves it or fails, never forwards again (no loops across a stale view).
	forwardedKey = "blobgc-forwarded"
	// MemberSelfKey, as request metadata, asks a server to describe only
	// itself (the Members fan-out; tests read one server's role with it).
	MemberSelfKey = "blobgc-member-self"

	maxForwardMsg = 256 << 20
)

// connCache keeps one client connection per peer address for forwarding.
type connCache struct {
	creds  credentials.TransportCredentials
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

func newConnCache(tlsCfg *tls.Config) *connCache {
	c := &connCache{conns: map[string]*grpc.ClientConn{}, creds: insecure.NewCredentials()}
	if tlsCfg != nil {
		c.creds = credentials.NewTLS(tlsCfg)
	}
	return c
}

func (c *connCache) get(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, status.Error(codes.Unavailable, "server shutting down")
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	bc := backoff.DefaultConfig
	bc.MaxDelay = time.Second
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(c.creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 2 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxForwardMsg), grpc.MaxCallSendMsgSize(maxForwardMsg)))
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cc
	return cc, nil
}

func (c *connCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for a, cc := range c.conns {
		cc.Close()
		delete(c.conns, a)
	}
}

func hasMD(ctx context.Context, key string) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(key)) > 0
}

// forward sends the same RPC to the leader and fills resp with its answer.
func (s *Server) forward(ctx context.Context, method string, req, resp proto.Message) error {
	if hasMD(ctx, forwardedKey) {
		return s.withHint(codes.Unavailable, "not the leader (request was already forwarded)")
	}
	addr, id := s.raft.LeaderWithID()
	if addr == "" || string(id) == s.cfg.ID {
		return s.withHint(codes.Unavailable, "not the leader and cannot forward")
	}
	cc, err := s.conns.get(string(addr))
	if err != nil {
		return s.withHint(codes.Unavailable, "forwarding to the leader: "+err.Error())
	}
	octx, cancel := context.WithCancelCause(metadata.AppendToOutgoingContext(ctx, append(identityMD(ctx), forwardedKey, s.cfg.ID)...))
	defer cancel(nil)
	stop := s.abandonOnLeaderChange(octx, addr, cancel)
	defer stop()
	err = cc.Invoke(octx, method, req, resp)
	s.metrics.forwarded.WithLabelValues(methodName(method), codeOf(err)).Inc()
	if err == nil {
		return nil
	}
	if errors.Is(context.Cause(octx), errLeaderChanged) {
		return s.withHint(codes.Unavailable, "the leader changed while the request was forwarded to it; outcome unknown")
	}
	st := status.Convert(err)
	if st.Code() == codes.Unavailable && len(st.Details()) == 0 {
		return s.withHint(codes.Unavailable, "forwarding to the leader: "+st.Message())
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && st.Code() == codes.DeadlineExceeded {
		return s.withHint(codes.DeadlineExceeded, "forwarded to the leader: "+st.Message())
	}
	return err
}

// errLeaderChanged cancels a forwarded call whose leader was replaced.
var errLeaderChanged = errors.New("leader changed")

// abandonOnLeaderChange cancels a call forwarded to leader as soon as this
// server follows another leader (or none). A leader that is frozen (a
// stopped process, a paused VM) keeps its connections open and answers
// nothing; without this the call would wait for the caller's whole
// deadline although the others elected a new leader long before.
func (s *Server) abandonOnLeaderChange(ctx context.Context, leader raft.ServerAddress, cancel context.CancelCauseFunc) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(leaderPollInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if addr, _ := s.raft.LeaderWithID(); addr != leader {
					cancel(errLeaderChanged)
					return
				}
			}
		}
	}()
	return func() { close(done) }
}

// leaderPollInterval is how often a forwarded call checks that its leader
// is still the leader: small against an election timeout.
const leaderPollInterval = 20 * time.Millisecond

func methodName(full string) string {
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[i+1:]
	}
	return full
}

func codeOf(err error) string { return status.Code(err).String() }

// bound gives ctx a deadline of at most ApplyTimeout plus a margin, so that no
// request waits for ever on a leader that cannot commit.
func (s *Server) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.cfg.ApplyTimeout+time.Second)
}

// leaderCall runs local on this server if it leads (after its term barrier),
// and forwards the request to the leader otherwise.
func leaderCall[R any, PR interface {
	*R
	proto.Message
}](s *Server, ctx context.Context, method string, req proto.Message, local func(context.Context, *session) (PR, error)) (PR, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if s.raft.State() == raft.Leader {
		ss, err := s.readySession(ctx)
		if err == nil {
			return local(ctx, ss)
		}
		if !errors.Is(err, errNotLeader) {
			return nil, err
		}
	}
	resp := PR(new(R))
	if err := s.forward(ctx, method, req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// leaderHeaderInterceptor sets LeaderHeader on every API response, and on
// health checks, which clients use as a cheap local question "whom do you
// follow?" while an attempt on a silent leader is pending.
func (s *Server) leaderHeaderInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if strings.HasPrefix(info.FullMethod, "/blobgc.v1.BlobGC/") || info.FullMethod == healthpb.Health_Check_FullMethodName {
		if addr, _ := s.raft.LeaderWithID(); addr != "" {
			_ = grpc.SetHeader(ctx, metadata.Pairs(LeaderHeader, string(addr)))
		}
	}
	return resp, err
}
