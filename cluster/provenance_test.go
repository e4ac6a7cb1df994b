package cluster

import (
	"context"
	"testing"

	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/fsm"
)

func TestPrincipalOf(t *testing.T) {
	ctx := context.Background()
	p := auth.Principal{Name: "olga", Role: auth.RoleOperator}
	for _, c := range []struct {
		ctx  context.Context
		want string
	}{
		{ctx, ""},
		{scheduled(ctx), fsm.SchedulerPrincipal},
		{auth.NewContext(ctx, p), "operator:olga"},
		// A caller's principal wins over the scheduler mark.
		{auth.NewContext(scheduled(ctx), p), "operator:olga"},
	} {
		if got := principalOf(c.ctx); got != c.want {
			t.Errorf("principalOf = %q, want %q", got, c.want)
		}
	}
}
