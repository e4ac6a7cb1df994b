package main

import (
	"fmt"
	"strings"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/client"
)

// maxExplained bounds how many blobs a "why nothing changed" note looks up
// and names.
const maxExplained = 10

// maxChecked bounds how many blobs `confirm` looks up one by one to tell a
// repeated confirmation from a wrong one.
const maxChecked = 1000

// whyNot says, from a blob's status, why a claim or a confirmation did not
// take: "H is ACTIVE, referenced by vm-1".
func whyNot(st *blobgcv1.BlobStatus, now int64) string {
	h := fmt.Sprintf("%x", st.Hash)
	switch st.State {
	case blobgcv1.BlobState_BLOB_STATE_NOT_FOUND:
		return h + " is not known to the cluster"
	case blobgcv1.BlobState_BLOB_STATE_ACTIVE:
		return h + " is ACTIVE, referenced by " + listOrDash(st.ReferencedBy)
	case blobgcv1.BlobState_BLOB_STATE_PINNED:
		var by []string
		if st.CoordinatorPin {
			by = append(by, "the coordinator")
		}
		return h + " is PINNED by " + strings.Join(append(by, st.PinnedBy...), ", ")
	case blobgcv1.BlobState_BLOB_STATE_UNREFERENCED:
		return h + " is UNREFERENCED since " + clusterAge(st.UnreferencedSinceNs, now) + ", within the grace period"
	case blobgcv1.BlobState_BLOB_STATE_MARKED_FOR_COLLECTION:
		return h + " is MARKED_FOR_COLLECTION, not claimed"
	case blobgcv1.BlobState_BLOB_STATE_DELETING:
		return h + " is DELETING: claimed already"
	case blobgcv1.BlobState_BLOB_STATE_COLLECTED:
		return h + " is COLLECTED already"
	}
	return h + " is " + stateName(st.State)
}

// explain looks up the first maxExplained of hs and returns why each is not
// where the command wanted it, skipping those for which ok is true.
func explain(e *env, hs []client.Hash, ok func(*blobgcv1.BlobStatus) bool) ([]string, error) {
	now, err := clusterNow(e)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, h := range hs[:min(len(hs), maxExplained)] {
		st, err := e.c.Status(e.ctx, h)
		if err != nil {
			return nil, err
		}
		if !ok(st) {
			out = append(out, whyNot(st, now))
		}
	}
	if len(hs) > maxExplained {
		out = append(out, fmt.Sprintf("(%d more not shown)", len(hs)-maxExplained))
	}
	return out, nil
}

// unclaimed returns hs without the granted ones.
func unclaimed(hs, granted []client.Hash) []client.Hash {
	got := make(map[client.Hash]bool, len(granted))
	for _, g := range granted {
		got[g] = true
	}
	var out []client.Hash
	for _, h := range hs {
		if !got[h] {
			out = append(out, h)
		}
	}
	return out
}

// claimNote says why hashes were not granted; a claim granted nothing is
// an error with exit status 3, a partial one a note on stderr.
func claimNote(e *env, hs, granted []client.Hash) error {
	rest := unclaimed(hs, granted)
	if len(rest) == 0 {
		return nil
	}
	why, err := explain(e, rest, func(*blobgcv1.BlobStatus) bool { return false })
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("%d of %d granted: %s", len(granted), len(hs), strings.Join(why, "; "))
	if len(granted) == 0 {
		return noEffect("%s", msg)
	}
	fmt.Fprintln(e.errw, msg)
	return nil
}

// confirmNote checks, when a confirmation changed fewer blobs than given,
// that every one is COLLECTED (a repeated confirmation is fine) and fails
// with exit status 3 naming those that are not.
func confirmNote(e *env, hs []client.Hash, resp *blobgcv1.WriteResponse) error {
	if resp.Changed >= int64(len(hs)) {
		return nil
	}
	if len(hs) > maxChecked {
		fmt.Fprintf(e.errw, "%d of %d changed: the others were collected already or not claimed\n", resp.Changed, len(hs))
		return nil
	}
	collected := func(st *blobgcv1.BlobStatus) bool {
		return st.State == blobgcv1.BlobState_BLOB_STATE_COLLECTED
	}
	var notCollected []client.Hash
	for _, h := range hs {
		st, err := e.c.Status(e.ctx, h)
		if err != nil {
			return err
		}
		if !collected(st) {
			notCollected = append(notCollected, h)
		}
	}
	if len(notCollected) == 0 {
		return nil
	}
	why, err := explain(e, notCollected, collected)
	if err != nil {
		return err
	}
	return noEffect("%d of %d not confirmed (confirm only blobs a claim granted): %s", len(notCollected), len(hs), strings.Join(why, "; "))
}
