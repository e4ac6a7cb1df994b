package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// nodesGroup is `nodes` (the list) with its subcommands.
func nodesGroup() *cobra.Command {
	cmd := nodesCmd()
	cmd.AddCommand(nodesDeregisterCmd(), nodesPruneCmd())
	return cmd
}

// nodesDeregisterCmd forgets VM nodes for good: their reports stop
// protecting blobs, whatever the stale policy (with stale-policy=hold this
// is how a retired node's blobs are released).
func nodesDeregisterCmd() *cobra.Command {
	return clientCmd("deregister ID...", "Forget VM nodes: their reports stop protecting blobs (exit status 3 if none was registered)", cobra.MinimumNArgs(1), func(e *env, _ *cobra.Command, args []string) error {
		// A node's own credential may deregister it but not list the
		// nodes: then the request goes out unchecked.
		nodes, err := e.c.Nodes(e.ctx)
		checked := status.Code(err) != codes.PermissionDenied
		if err != nil && checked {
			return err
		}
		known := make([]string, len(nodes))
		for i, n := range nodes {
			known[i] = n.Id
		}
		var done, unknown []string
		var index uint64
		for _, id := range args {
			if checked && !slices.Contains(known, id) {
				unknown = append(unknown, id)
				continue
			}
			resp, err := e.c.DeregisterNode(e.ctx, id)
			if err != nil {
				return err
			}
			done, index = append(done, id), resp.AppliedIndex
		}
		res := map[string]any{"deregistered": orEmpty(done), "not_registered": orEmpty(unknown), "applied_index": index}
		if err := e.emit(res, func(w io.Writer) {
			for _, id := range done {
				fmt.Fprintf(w, "Deregistered %s\n", id)
			}
		}); err != nil {
			return err
		}
		if len(unknown) == 0 {
			return nil
		}
		msg := fmt.Sprintf("not registered: %s (registered: %s)", strings.Join(unknown, ", "), listOrDash(known))
		if len(done) == 0 {
			return noEffect("%s", msg)
		}
		fmt.Fprintln(e.errw, msg)
		return nil
	})
}

// nodesPruneCmd deregisters every node whose report is stale.
func nodesPruneCmd() *cobra.Command {
	return clientCmd("prune", "Deregister every VM node whose last report is older than the stale threshold", cobra.NoArgs, func(e *env, _ *cobra.Command, _ []string) error {
		resp, err := e.c.PruneStaleNodes(e.ctx)
		if err != nil {
			return err
		}
		if !e.json && len(resp.Pruned) == 0 {
			fmt.Fprintln(e.errw, "No stale nodes: nothing pruned.")
		}
		return e.emit(map[string]any{"pruned": orEmpty(resp.Pruned), "applied_index": resp.AppliedIndex}, func(w io.Writer) {
			for _, id := range resp.Pruned {
				fmt.Fprintf(w, "Pruned %s\n", id)
			}
		})
	})
}

// orEmpty makes a nil list print as [] in JSON.
func orEmpty(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}
