package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/fsm"
)

// errNotLeader is internal: the request must go to the leader.
var errNotLeader = errors.New("not the leader")

func invalidf(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// withHint returns a status error carrying this server's view of the leader,
// so a client can retry there directly.
func (s *Server) withHint(code codes.Code, msg string) error {
	id, addr := s.Leader()
	if addr != "" {
		msg = fmt.Sprintf("%s (leader: %s at %s)", msg, id, addr)
	} else {
		msg += " (no leader known)"
	}
	st, err := status.New(code, msg).WithDetails(&blobgcv1.LeaderHint{LeaderId: id, LeaderAddress: addr})
	if err != nil {
		return status.Error(code, msg)
	}
	return st.Err()
}

// ctxError turns an ended context into DeadlineExceeded or Canceled.
func ctxError(ctx context.Context, what string) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return status.Errorf(codes.Canceled, "canceled while %s", what)
	}
	return status.Errorf(codes.DeadlineExceeded, "deadline exceeded while %s", what)
}

// applyError maps an error from raft.Apply's future. Everything after the
// entry was handed to raft has an unknown outcome: it may still commit.
func (s *Server) applyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return s.withHint(codes.Unavailable, "not the leader; the write was not applied")
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return s.withHint(codes.Unavailable, "raft did not accept the write in time; it was not applied")
	case errors.Is(err, raft.ErrLeadershipLost):
		return s.withHint(codes.Unavailable, "leadership lost while the write was in flight; outcome unknown")
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return s.withHint(codes.Unavailable, "leadership transfer in progress; the write was not applied")
	case errors.Is(err, raft.ErrRaftShutdown):
		return s.withHint(codes.Unavailable, "server shutting down; outcome unknown")
	default:
		return s.withHint(codes.Unavailable, "raft: "+err.Error()+"; outcome unknown")
	}
}

// domainError maps an fsm error (validation or Result.Err) to a gRPC status.
func domainError(err error) error {
	var fe *fsm.Error
	if !errors.As(err, &fe) {
		return status.Error(codes.Internal, err.Error())
	}
	code := codes.Internal
	switch fe.Code {
	case fsm.CodeInvalidArgument:
		code = codes.InvalidArgument
	case fsm.CodeFailedPrecondition:
		code = codes.FailedPrecondition
	case fsm.CodeResourceExhausted:
		code = codes.ResourceExhausted
	case fsm.CodeNotFound:
		code = codes.NotFound
	}
	return status.Error(code, fe.Message)
}

// waitApplied waits for a proposal's future like waitFuture, and also gives
// up as soon as the session ends: raft never answers a future still queued
// in its apply channel when it shuts down, and a proposal in flight when
// leadership is lost may or may not commit. Either way the caller learns at
// once that the outcome is unknown, instead of after the apply timeout.
func waitApplied(ctx context.Context, ss *session, f raft.Future) error {
	return waitFutureUntil(ctx, ss.done, f)
}

// waitFuture waits for f, or until ctx ends (the operation then continues in
// raft and its outcome is unknown).
func waitFuture(ctx context.Context, f raft.Future) error {
	return waitFutureUntil(ctx, nil, f)
}

// waitFutureUntil waits for f until ctx ends or stop is closed (a nil stop
// never is); after stop, an answer that arrived meanwhile still holds.
func waitFutureUntil(ctx context.Context, stop <-chan struct{}, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		select {
		case err := <-done:
			return err
		default:
			return raft.ErrLeadershipLost
		}
	}
}
