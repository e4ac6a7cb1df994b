package transport

import (
	"context"
	"strings"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// targetIDKey is the metadata key naming the raft server a call is meant for.
const targetIDKey = "raft-target-id"

// wrongServerPrefix starts the message of a call refused by a server that is
// not the one it was meant for.
const wrongServerPrefix = "transport: wrong server:"

func withTarget(ctx context.Context, id raft.ServerID) context.Context {
	if id == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, targetIDKey, string(id))
}

// checkTarget refuses a call meant for another server. Calls that name no
// target (older peers, tools) and transports without a LocalID pass.
func (t *Transport) checkTarget(ctx context.Context) error {
	if t.cfg.LocalID == "" {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	want := md.Get(targetIDKey)
	if len(want) == 0 || want[0] == string(t.cfg.LocalID) {
		return nil
	}
	return status.Errorf(codes.FailedPrecondition, "%s this is %q at %s, not %q", wrongServerPrefix, t.cfg.LocalID, t.cfg.LocalAddr, want[0])
}

// isWrongServer reports a call refused by the wrong server, or a handshake
// with a peer whose certificate names another server (Config.VerifyServer).
func isWrongServer(err error) bool {
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch s.Code() {
	case codes.FailedPrecondition:
		return strings.HasPrefix(s.Message(), wrongServerPrefix)
	case codes.Unavailable:
		return strings.Contains(s.Message(), wrongServerPrefix)
	}
	return false
}
