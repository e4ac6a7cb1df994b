// Package sweeper deletes eligible blobs from a content-addressed directory
// store, fenced by the cluster so that nothing a VM still uses is deleted.
//
// A sweep is three steps, each through the replicated log:
//
//  1. ListEligible: the blobs the last GC cycles marked for collection, and
//     ListBlobs(DELETING): those an earlier, interrupted sweep claimed but
//     did not confirm.
//  2. Claim: the cluster re-checks each blob at apply time and grants only
//     those that are still marked and that no live report or pin protects.
//     A blob referenced again after it was marked is never granted.
//  3. Delete exactly the granted files, then ConfirmCollected them.
//
// Only a granted blob is ever deleted. If a claim's outcome is unknown (a
// timeout, a lost leader) nothing of it is deleted: claims are idempotent,
// so the next sweep claims the same blobs again and is granted them. A file
// already gone is counted as missing and still confirmed, because the
// content is gone either way. A file that cannot be removed is not
// confirmed, so the blob stays claimed and a later sweep retries it.
//
// The store is laid out by hash: the blob with hex hash "abcdef…" lives at
// DIR/ab/cdef… (the first two hex characters name a directory, the other 62
// the file). Run is what `blobgc sweep --store DIR [--dry-run]` calls:
//
//	cl, err := client.New(servers)
//	...
//	sum, err := sweeper.Run(ctx, cl, sweeper.Dir(dir), sweeper.Options{
//		DryRun:   dryRun,
//		Progress: func(s sweeper.Summary) { fmt.Fprintln(os.Stderr, s) },
//	})
//	// sum.String(): "eligible N, granted N, deleted N, missing N, confirmed N, errors N";
//	// in a dry run sum.WouldClaim lists what a real sweep would claim.
package sweeper
