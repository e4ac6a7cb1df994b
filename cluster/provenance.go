package cluster

import (
	"context"

	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/fsm"
)

type scheduledKey struct{}

// scheduled marks ctx as the leader's own scheduled work.
func scheduled(ctx context.Context) context.Context {
	return context.WithValue(ctx, scheduledKey{}, true)
}

// principalOf is the principal a proposal records in provenance: the
// authenticated caller ("<role>:<name>"), "scheduler" for the leader's
// scheduled cycles, or empty when the server runs without authentication.
func principalOf(ctx context.Context) string {
	if p, ok := auth.FromContext(ctx); ok {
		return p.String()
	}
	if ctx.Value(scheduledKey{}) != nil {
		return fsm.SchedulerPrincipal
	}
	return ""
}
