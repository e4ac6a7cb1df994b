package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/blobgc/blobgc/transport/transportpb"
)

// Refusal budgets: a connection whose calls keep being refused (malformed or
// oversized messages, no credentials, a role that does not allow the call,
// a limit reached) costs the server a decode, an authentication and a log
// line per call while it never gets anything done. Each connection has a
// token bucket of refusals: every API call that ends with one of
// refusalCodes takes a token, and while the bucket is empty the
// connection's new calls are refused at the HTTP/2 layer with
// ResourceExhausted, before their messages are read, decoded or logged. A
// well-behaved client is refused rarely and never notices; raft calls from
// peers are never counted.
const (
	DefaultRefusalRate  = 20  // refusals per second a connection earns back
	DefaultRefusalBurst = 100 // refusals a connection may make at once
)

// refusalCodes are the codes that say the caller, not the cluster, is at
// fault.
var refusalCodes = map[codes.Code]bool{
	codes.InvalidArgument:   true,
	codes.Unauthenticated:   true,
	codes.PermissionDenied:  true,
	codes.ResourceExhausted: true,
	codes.OutOfRange:        true,
	codes.Unimplemented:     true,
}

// refusalBudget is one connection's token bucket.
type refusalBudget struct {
	rate, burst float64
	mu          sync.Mutex
	tokens      float64
	last        time.Time
}

// refill adds the tokens earned since the last call; b.mu is held.
func (b *refusalBudget) refill(now time.Time) {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
}

// charge takes one token for a refused call.
func (b *refusalBudget) charge(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	b.tokens--
}

// exhausted says whether the connection has no refusals left.
func (b *refusalBudget) exhausted(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	return b.tokens < 1
}

// refusals tracks the budgets of a server's connections: a stats.Handler
// that charges refused calls, and a tap that refuses the calls of an
// exhausted connection.
type refusals struct {
	rate, burst float64
	throttled   func() // counts a call refused for an exhausted budget
}

type (
	budgetKey struct{} // the connection's *refusalBudget
	raftKey   struct{} // marks a raft call, never charged
)

// serverOptions install the budget on a grpc.Server.
func (r *refusals) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.StatsHandler(r), grpc.InTapHandle(r.tap)}
}

// tap refuses a new call of a connection whose budget is exhausted. It runs
// on the connection's reader, before the call's message is read.
func (r *refusals) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	b, _ := ctx.Value(budgetKey{}).(*refusalBudget)
	if b == nil || isRaftMethod(info.FullMethodName) || !b.exhausted(time.Now()) {
		return ctx, nil
	}
	r.throttled()
	return ctx, status.Error(codes.ResourceExhausted, fmt.Sprintf(
		"too many refused calls on this connection (more than %g at once or %g/s): fix the calls that are refused, then retry",
		r.burst, r.rate))
}

func isRaftMethod(fullMethod string) bool {
	return serviceOf(fullMethod) == transportpb.Raft_ServiceDesc.ServiceName
}

// TagConn gives every connection a full budget.
func (r *refusals) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, budgetKey{}, &refusalBudget{rate: r.rate, burst: r.burst, tokens: r.burst, last: time.Now()})
}

// TagRPC marks raft calls, whose refusals do not count. (Marking them, not
// the API calls, keeps the API's write path free of the extra context.)
func (r *refusals) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if isRaftMethod(info.FullMethodName) {
		return context.WithValue(ctx, raftKey{}, true)
	}
	return ctx
}

// HandleRPC charges an API call that ended refused.
func (r *refusals) HandleRPC(ctx context.Context, s stats.RPCStats) {
	end, ok := s.(*stats.End)
	if !ok || end.Error == nil || ctx.Value(raftKey{}) != nil || !refusalCodes[status.Code(end.Error)] {
		return
	}
	if b, _ := ctx.Value(budgetKey{}).(*refusalBudget); b != nil {
		b.charge(time.Now())
	}
}

func (r *refusals) HandleConn(context.Context, stats.ConnStats) {}
