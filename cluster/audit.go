package cluster

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/fsm/fsmpb"
)

// auditWrite writes the audit line of a command this leader proposed to the
// log: who, through which method, what (counts and ids, never hash lists),
// and the result. Commands the server proposes on its own (scheduled cycles,
// the configured GC settings) name the server.
func (s *Server) auditWrite(ctx context.Context, op any, res *fsm.Result, err error) {
	kv := append(s.auditWho(ctx), opSummary(op)...)
	switch {
	case err != nil:
		kv = append(kv, "result", status.Code(err).String(), "error", status.Convert(err).Message())
	case res.Err != nil:
		kv = append(kv, "result", "refused", "error", res.Err.Error(), "index", res.Index)
	default:
		kv = append(kv, "result", "ok", "index", res.Index)
		kv = append(kv, resultSummary(op, res)...)
	}
	s.audit.Info("write", kv...)
}

// auditMembership writes the audit line of a membership change.
func (s *Server) auditMembership(ctx context.Context, what []any, err error) {
	kv := append(s.auditWho(ctx), what...)
	if err != nil {
		kv = append(kv, "result", status.Code(err).String(), "error", status.Convert(err).Message())
	} else {
		kv = append(kv, "result", "ok")
	}
	s.audit.Info("membership", kv...)
}

func (s *Server) auditWho(ctx context.Context) []any {
	who := auth.Principal{Role: auth.RoleServer, Name: s.cfg.ID}.String()
	if p, ok := auth.FromContext(ctx); ok {
		who = p.String()
	}
	method, ok := grpc.Method(ctx)
	if !ok {
		method = "internal"
	}
	return []any{"principal", who, "method", method}
}

func hashCount(packed []byte) int { return len(packed) / fsm.HashSize }

// opSummary describes a command in a few fields.
func opSummary(op any) []any {
	switch o := op.(type) {
	case *fsmpb.RegisterBlobs:
		return []any{"op", "register", "hashes", hashCount(o.Hashes)}
	case *fsmpb.Pin:
		return []any{"op", "pin", "hashes", hashCount(o.Hashes)}
	case *fsmpb.Unpin:
		return []any{"op", "unpin", "hashes", hashCount(o.Hashes)}
	case *fsmpb.Claim:
		return []any{"op", "claim", "hashes", hashCount(o.Hashes)}
	case *fsmpb.ConfirmCollected:
		return []any{"op", "confirm_collected", "hashes", hashCount(o.Hashes)}
	case *fsmpb.Report:
		return []any{"op", "report", "node", o.NodeId, "kind", o.Kind.String(), "seq", o.Seq,
			"active", hashCount(o.Active), "pinned", hashCount(o.Pinned),
			"removed", hashCount(o.RemovedActive) + hashCount(o.RemovedPinned),
			"chunk", o.ChunkIndex, "last_chunk", o.LastChunk}
	case *fsmpb.DeregisterNode:
		return []any{"op", "deregister_node", "node", o.NodeId}
	case *fsmpb.RunCycle:
		return []any{"op", "run_cycle"}
	case *fsmpb.PruneStaleNodes:
		return []any{"op", "prune_stale_nodes"}
	case *fsmpb.SetConfig:
		return []any{"op", "set_config", "config", prototext.MarshalOptions{}.Format(o)}
	}
	return []any{"op", "unknown"}
}

// resultSummary adds what an applied command did.
func resultSummary(op any, res *fsm.Result) []any {
	switch op.(type) {
	case *fsmpb.Claim:
		return []any{"granted", len(res.Claimed)}
	case *fsmpb.RunCycle:
		if res.Cycle != nil {
			return []any{"newly_marked", len(res.Cycle.NewlyMarked), "eligible", len(res.Cycle.Eligible), "skipped", res.Cycle.Skipped}
		}
	case *fsmpb.PruneStaleNodes:
		return []any{"pruned", res.Pruned}
	case *fsmpb.Report:
		return []any{"duplicate", res.Duplicate}
	}
	return []any{"changed", res.Changed}
}
