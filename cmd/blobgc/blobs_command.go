package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
)

// blobsCmd is the `blobs` group: `blobs list [--state S]`.
func blobsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "blobs", Short: "List known blobs"}
	cmd.AddCommand(blobsListCmd())
	return cmd
}

// stateNames are the --state values, by their short names.
var stateNames = func() []string {
	var out []string
	for n := int32(blobgcv1.BlobState_BLOB_STATE_ACTIVE); n <= int32(blobgcv1.BlobState_BLOB_STATE_COLLECTED); n++ {
		out = append(out, strings.ToLower(stateName(blobgcv1.BlobState(n))))
	}
	return out
}()

// parseState reads a --state value: a short name (marked_for_collection,
// also marked-for-collection or marked), any case; "" or "all" is every state.
func parseState(s string) (blobgcv1.BlobState, error) {
	s = strings.ToLower(strings.ReplaceAll(s, "-", "_"))
	switch s {
	case "", "all":
		return blobgcv1.BlobState_BLOB_STATE_UNSPECIFIED, nil
	case "marked":
		return blobgcv1.BlobState_BLOB_STATE_MARKED_FOR_COLLECTION, nil
	}
	if v, ok := blobgcv1.BlobState_value["BLOB_STATE_"+strings.ToUpper(s)]; ok && s != "unspecified" && s != "not_found" {
		return blobgcv1.BlobState(v), nil
	}
	return 0, fmt.Errorf("--state %q: want all or one of %s", s, strings.Join(stateNames, ", "))
}

func blobsListCmd() *cobra.Command {
	var state string
	cmd := clientCmd("list", "List known blobs, all or those in one --state", cobra.NoArgs, func(e *env, _ *cobra.Command, _ []string) error {
		st, err := parseState(state)
		if err != nil {
			return err
		}
		now, err := clusterNow(e)
		if err != nil {
			return err
		}
		var blobs []*blobgcv1.BlobStatus
		for b, err := range e.c.ListBlobs(e.ctx, st, e.read()...) {
			if err != nil {
				return err
			}
			blobs = append(blobs, b)
		}
		if !e.json && len(blobs) == 0 {
			fmt.Fprintln(e.errw, "No blobs found.")
			return nil
		}
		js := make([]any, len(blobs))
		for i, b := range blobs {
			js[i] = toJSON(b)
		}
		return e.emit(map[string]any{"blobs": js, "cluster_time_ns": now}, func(w io.Writer) {
			fmt.Fprintln(w, "HASH\tSTATE\tREGISTERED\tCOORD_PIN\tUNREFERENCED_SINCE\tDANGLING")
			for _, b := range blobs {
				fmt.Fprintf(w, "%x\t%s\t%t\t%t\t%s\t%t\n", b.Hash, stateName(b.State), b.Registered, b.CoordinatorPin,
					clusterAge(b.UnreferencedSinceNs, now), b.Dangling)
			}
		})
	})
	cmd.Flags().StringVar(&state, "state", "all", "only blobs in this state: all, "+strings.Join(stateNames, ", ")+" (or marked)")
	return cmd
}
