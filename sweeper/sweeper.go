package sweeper

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"path/filepath"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/client"
)

// DefaultBatch is how many blobs one Claim (and one ConfirmCollected) carries
// when Options.Batch is zero.
const DefaultBatch = 1000

// API is the part of *client.Client a sweep uses; *client.Client implements it.
type API interface {
	ListEligible(ctx context.Context, opts ...client.ReadOption) iter.Seq2[client.Hash, error]
	ListBlobs(ctx context.Context, state blobgcv1.BlobState, opts ...client.ReadOption) iter.Seq2[*blobgcv1.BlobStatus, error]
	Claim(ctx context.Context, hs []client.Hash) (granted []client.Hash, appliedIndex uint64, err error)
	ConfirmCollected(ctx context.Context, hs []client.Hash) (*blobgcv1.WriteResponse, error)
}

// Dir is the root of a content-addressed directory store.
type Dir string

// Path returns where the blob h is stored: DIR/ab/cdef….
func (d Dir) Path(h client.Hash) string {
	s := h.String()
	return filepath.Join(string(d), s[:2], s[2:])
}

// Put writes content as the blob h (creating its directory); for tests and
// tools that fill a store.
func (d Dir) Put(h client.Hash, content []byte) error {
	p := d.Path(h)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, content, 0o644)
}

// Has reports whether the blob h has a file in the store.
func (d Dir) Has(h client.Hash) bool {
	_, err := os.Stat(d.Path(h))
	return err == nil
}

// Options tune a sweep.
type Options struct {
	// DryRun lists what would be claimed and changes nothing: no claim, no
	// deletion, no confirmation.
	DryRun bool
	// Batch is the number of blobs per Claim and per ConfirmCollected
	// (default DefaultBatch).
	Batch int
	// Progress, if set, is called after each batch with the running totals.
	Progress func(Summary)
}

// Summary counts what a sweep did.
type Summary struct {
	Eligible  int // blobs listed as eligible (or claimed and not yet confirmed)
	Granted   int // blobs the claims granted
	Deleted   int // files removed
	Missing   int // granted blobs whose file was already gone (confirmed anyway)
	Confirmed int // blobs confirmed collected
	Errors    int // failed claims, removals and confirmations

	// WouldClaim lists, in a dry run, the blobs a real sweep would claim.
	WouldClaim []client.Hash
	// DeletedHashes lists the blobs whose files this sweep removed.
	DeletedHashes []client.Hash
}

func (s Summary) String() string {
	return fmt.Sprintf("eligible %d, granted %d, deleted %d, missing %d, confirmed %d, errors %d",
		s.Eligible, s.Granted, s.Deleted, s.Missing, s.Confirmed, s.Errors)
}

// Run sweeps the store once: it lists the eligible blobs, claims them batch
// by batch, deletes exactly the granted files and confirms them. It returns
// the summary and the errors met (joined); a sweep goes on past a failed
// batch, and whatever it could not finish is picked up by the next sweep.
func Run(ctx context.Context, api API, store Dir, opts Options) (Summary, error) {
	batch := opts.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	var sum Summary
	var eligible []client.Hash
	for h, err := range api.ListEligible(ctx) {
		if err != nil {
			sum.Errors++
			return sum, fmt.Errorf("sweeper: list eligible: %w", err)
		}
		eligible = append(eligible, h)
	}
	// Blobs claimed by a sweep that stopped before confirming are no longer
	// listed as eligible; claiming them again is granted again (claims are
	// idempotent), so this sweep finishes them.
	for b, err := range api.ListBlobs(ctx, blobgcv1.BlobState_BLOB_STATE_DELETING) {
		if err != nil {
			sum.Errors++
			return sum, fmt.Errorf("sweeper: list claimed: %w", err)
		}
		h, err := client.HashFromBytes(b.GetHash())
		if err != nil {
			sum.Errors++
			return sum, fmt.Errorf("sweeper: list claimed: %w", err)
		}
		eligible = append(eligible, h)
	}
	sum.Eligible = len(eligible)
	if opts.DryRun {
		sum.WouldClaim = eligible
		if opts.Progress != nil {
			opts.Progress(sum)
		}
		return sum, nil
	}
	var errs []error
	for len(eligible) > 0 {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		n := min(batch, len(eligible))
		b := eligible[:n]
		eligible = eligible[n:]
		if err := sweepBatch(ctx, api, store, b, &sum); err != nil {
			errs = append(errs, err)
		}
		if opts.Progress != nil {
			opts.Progress(sum)
		}
	}
	return sum, errors.Join(errs...)
}

func sweepBatch(ctx context.Context, api API, store Dir, b []client.Hash, sum *Summary) error {
	granted, _, err := api.Claim(ctx, b)
	sum.Granted += len(granted)
	var errs []error
	if err != nil {
		// Blobs granted by the batches that went through before the error
		// are still ours to delete; the rest stay claimed or marked and
		// the next sweep claims them again (claims are idempotent).
		sum.Errors++
		errs = append(errs, fmt.Errorf("sweeper: claim: %w", err))
	}
	var gone []client.Hash
	for _, h := range granted {
		switch err := os.Remove(store.Path(h)); {
		case err == nil:
			sum.Deleted++
			sum.DeletedHashes = append(sum.DeletedHashes, h)
			gone = append(gone, h)
		case errors.Is(err, fs.ErrNotExist):
			sum.Missing++
			gone = append(gone, h)
		default:
			sum.Errors++
			errs = append(errs, fmt.Errorf("sweeper: delete %s: %w", h, err))
		}
	}
	if len(gone) > 0 {
		if _, err := api.ConfirmCollected(ctx, gone); err != nil {
			sum.Errors++
			errs = append(errs, fmt.Errorf("sweeper: confirm: %w", err))
		} else {
			sum.Confirmed += len(gone)
		}
	}
	return errors.Join(errs...)
}
