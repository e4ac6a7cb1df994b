package chaos

import (
	"context"
	"crypto/sha256"
	"fmt"
	"iter"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/sweeper"
)

// Workload drives a cluster the way its users do and records every
// operation: VM nodes sending full and delta reports with churn (and node
// pins), operators registering, pinning, unpinning and reading statuses,
// and a sweeper deleting from a real on-disk store.
type Workload struct {
	Client *client.Client
	Store  sweeper.Dir
	H      *History

	Nodes     int           // simulated VM nodes (default 4)
	Operators int           // operator goroutines (default 2)
	OpTimeout time.Duration // per operation (default 3s)
	Seed      uint64
	// UnsafeSweep makes the sweeper delete what is listed as eligible
	// without claiming it first: the race Harbor, Quay and Nix had. It
	// exists to show that the checkers catch it.
	UnsafeSweep bool

	mu         sync.Mutex
	registered []Hash // registered (or attempted), in order
	next       int
	lin        []Hash // hashes the linearizability check watches
	clientID   int
}

func (w *Workload) defaults() {
	if w.Nodes == 0 {
		w.Nodes = 4
	}
	if w.Operators == 0 {
		w.Operators = 2
	}
	if w.OpTimeout == 0 {
		w.OpTimeout = 3 * time.Second
	}
}

func (w *Workload) newHash() Hash {
	w.mu.Lock()
	n := w.next
	w.next++
	w.mu.Unlock()
	return sha256.Sum256([]byte(fmt.Sprintf("chaos-%d-%d", w.Seed, n)))
}

// Blobs returns every hash the workload has created.
func (w *Workload) Blobs() []Hash {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append(append([]Hash(nil), w.registered...), w.lin...)
}

// Stored returns the hashes whose content the workload put in the store.
func (w *Workload) Stored() []Hash {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Hash(nil), w.registered...)
}

// Gone returns the stored hashes whose content is no longer in the store:
// what the sweeper deleted.
func (w *Workload) Gone() []Hash {
	var gone []Hash
	for _, b := range w.Stored() {
		if !w.Store.Has(b) {
			gone = append(gone, b)
		}
	}
	return gone
}

func (w *Workload) newClientID() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.clientID++
	return w.clientID
}

// pick returns up to k distinct registered hashes whose content is still in
// the store (a VM only uses what it could fetch).
func (w *Workload) pick(r *rand.Rand, k int) []Hash {
	w.mu.Lock()
	reg := append([]Hash(nil), w.registered...)
	w.mu.Unlock()
	var out []Hash
	seen := map[Hash]bool{}
	for tries := 0; len(out) < k && tries < 4*k && len(reg) > 0; tries++ {
		h := reg[r.IntN(len(reg))]
		if !seen[h] && w.Store.Has(h) {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

func (w *Workload) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, w.OpTimeout)
}

// register stores k new blobs and registers them.
func (w *Workload) register(ctx context.Context, cid, k int) (Op, error) {
	hs := make([]Hash, k)
	for i := range hs {
		hs[i] = w.newHash()
		if err := w.Store.Put(hs[i], hs[i][:]); err != nil {
			return Op{}, err
		}
	}
	w.mu.Lock()
	w.registered = append(w.registered, hs...)
	w.mu.Unlock()
	cctx, cancel := w.ctx(ctx)
	defer cancel()
	inv := w.H.Now()
	_, err := w.Client.RegisterBlobs(cctx, hs)
	return w.H.Add(Op{Client: cid, Kind: OpRegister, Hashes: hs, Invoke: inv, Return: w.H.Now()}, err), nil
}

// Setup registers initial blobs and the hashes the linearizability check
// watches, and has a "holder" node reference those permanently so they are
// never collected. It retries until each step is acknowledged.
func (w *Workload) Setup(ctx context.Context, initial, lin int) error {
	w.defaults()
	cid := w.newClientID()
	for {
		op, err := w.register(ctx, cid, initial)
		if err != nil {
			return err
		}
		if op.Outcome == OK {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	w.mu.Lock()
	for range lin {
		w.lin = append(w.lin, sha256.Sum256([]byte(fmt.Sprintf("chaos-lin-%d-%d", w.Seed, len(w.lin)))))
	}
	lins := append([]Hash(nil), w.lin...)
	w.mu.Unlock()
	holder := w.Client.Reporter("holder")
	for {
		cctx, cancel := w.ctx(ctx)
		inv := w.H.Now()
		_, err := w.Client.RegisterBlobs(cctx, lins)
		op := w.H.Add(Op{Client: cid, Kind: OpRegister, Hashes: lins, Invoke: inv, Return: w.H.Now()}, err)
		if op.Outcome == OK {
			inv = w.H.Now()
			err = holder.Full(cctx, lins, nil)
			a, p := holder.Sets()
			op = w.H.Add(Op{Client: cid, Kind: OpReport, Node: "holder", Invoke: inv, Return: w.H.Now(), Active: a, Pinned: p}, err)
		}
		cancel()
		if op.Outcome == OK {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Run runs the VM nodes, operators and the sweeper until ctx ends.
func (w *Workload) Run(ctx context.Context) {
	w.defaults()
	var wg sync.WaitGroup
	for i := range w.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.vm(ctx, fmt.Sprintf("vm%d", i+1), rand.New(rand.NewPCG(w.Seed, uint64(i))))
		}()
	}
	for i := range w.Operators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.operator(ctx, rand.New(rand.NewPCG(w.Seed, uint64(100+i))))
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.sweep(ctx)
	}()
	wg.Wait()
}

func pause(ctx context.Context, r *rand.Rand, lo, hi time.Duration) bool {
	t := time.NewTimer(lo + time.Duration(r.Int64N(int64(hi-lo))))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (w *Workload) vm(ctx context.Context, node string, r *rand.Rand) {
	cid := w.newClientID()
	rep := w.Client.Reporter(node)
	full := true
	for ctx.Err() == nil {
		cctx, cancel := w.ctx(ctx)
		inv := w.H.Now()
		var err error
		switch {
		case full || r.IntN(10) == 0:
			err = rep.Full(cctx, w.pick(r, 8+r.IntN(8)), w.pick(r, r.IntN(2)))
			full = false
		default:
			active, pinned := rep.Sets()
			var rmA, rmP []Hash
			for range 1 + r.IntN(2) {
				if len(active) > 0 {
					rmA = append(rmA, active[r.IntN(len(active))])
				}
			}
			if len(pinned) > 0 && r.IntN(4) == 0 {
				rmP = append(rmP, pinned[r.IntN(len(pinned))])
			}
			var addP []Hash
			if r.IntN(4) == 0 {
				addP = w.pick(r, 1)
			}
			// A hash may be both removed and added in one delta (it stays):
			// TestRegression_ReporterDeltaAddAndRemoveSameHash.
			err = rep.Delta(cctx, w.pick(r, 1+r.IntN(2)), rmA, addP, rmP)
		}
		a, p := rep.Sets()
		w.H.Add(Op{Client: cid, Kind: OpReport, Node: node, Invoke: inv, Return: w.H.Now(), Active: a, Pinned: p}, err)
		cancel()
		if !pause(ctx, r, 20*time.Millisecond, 80*time.Millisecond) {
			return
		}
	}
}

func (w *Workload) operator(ctx context.Context, r *rand.Rand) {
	cid := w.newClientID()
	for ctx.Err() == nil {
		var h Hash
		w.mu.Lock()
		if r.IntN(10) < 7 || len(w.registered) == 0 {
			h = w.lin[r.IntN(len(w.lin))]
		} else {
			h = w.registered[r.IntN(len(w.registered))]
		}
		w.mu.Unlock()
		cctx, cancel := w.ctx(ctx)
		inv := w.H.Now()
		switch n := r.IntN(20); {
		case n < 3:
			if _, err := w.register(ctx, cid, 1+r.IntN(3)); err != nil {
				cancel()
				return
			}
		case n < 7:
			_, err := w.Client.Pin(cctx, []Hash{h})
			w.H.Add(Op{Client: cid, Kind: OpPin, Hashes: []Hash{h}, Invoke: inv, Return: w.H.Now()}, err)
		case n < 11:
			_, err := w.Client.Unpin(cctx, []Hash{h})
			w.H.Add(Op{Client: cid, Kind: OpUnpin, Hashes: []Hash{h}, Invoke: inv, Return: w.H.Now()}, err)
		default:
			st, err := w.Client.Status(cctx, h)
			pinned, state := statusOf(st)
			w.H.Add(Op{Client: cid, Kind: OpStatus, Hashes: []Hash{h}, Invoke: inv, Return: w.H.Now(), CoordinatorPin: pinned, State: state}, err)
		}
		cancel()
		if !pause(ctx, r, 10*time.Millisecond, 50*time.Millisecond) {
			return
		}
	}
}

// recorder is the sweeper's view of the client, recording claims and
// confirmations.
type recorder struct {
	w   *Workload
	cid int
}

func (rc recorder) ListEligible(ctx context.Context, opts ...client.ReadOption) iter.Seq2[Hash, error] {
	return rc.w.Client.ListEligible(ctx, opts...)
}

func (rc recorder) ListBlobs(ctx context.Context, state blobgcv1.BlobState, opts ...client.ReadOption) iter.Seq2[*blobgcv1.BlobStatus, error] {
	return rc.w.Client.ListBlobs(ctx, state, opts...)
}

func (rc recorder) Claim(ctx context.Context, hs []Hash) ([]Hash, uint64, error) {
	inv := rc.w.H.Now()
	granted, idx, err := rc.w.Client.Claim(ctx, hs)
	op := Op{Client: rc.cid, Kind: OpClaim, Hashes: hs, Granted: granted, Invoke: inv, Return: rc.w.H.Now()}
	if err != nil && len(granted) > 0 {
		// Some batches were granted before the error: those are ours.
		rc.w.H.Add(op, nil)
		op.Granted = nil
	}
	rc.w.H.Add(op, err)
	return granted, idx, err
}

func (rc recorder) ConfirmCollected(ctx context.Context, hs []Hash) (*blobgcv1.WriteResponse, error) {
	inv := rc.w.H.Now()
	resp, err := rc.w.Client.ConfirmCollected(ctx, hs)
	rc.w.H.Add(Op{Client: rc.cid, Kind: OpConfirm, Hashes: hs, Invoke: inv, Return: rc.w.H.Now()}, err)
	return resp, err
}

func (w *Workload) sweep(ctx context.Context) {
	rc := recorder{w: w, cid: w.newClientID()}
	r := rand.New(rand.NewPCG(w.Seed, 999))
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 4*w.OpTimeout)
		inv := w.H.Now()
		if w.UnsafeSweep {
			w.unsafeSweep(cctx, rc.cid, inv)
			cancel()
			if !pause(ctx, r, 100*time.Millisecond, 300*time.Millisecond) {
				return
			}
			continue
		}
		sum, _ := sweeper.Run(cctx, rc, w.Store, sweeper.Options{Batch: 16})
		cancel()
		if len(sum.DeletedHashes) > 0 {
			w.H.Add(Op{Client: rc.cid, Kind: OpDelete, Hashes: sum.DeletedHashes, Invoke: inv, Return: w.H.Now()}, nil)
		}
		if !pause(ctx, r, 100*time.Millisecond, 300*time.Millisecond) {
			return
		}
	}
}

func (w *Workload) unsafeSweep(ctx context.Context, cid int, inv time.Duration) {
	var deleted []Hash
	for h, err := range w.Client.ListEligible(ctx) {
		if err != nil {
			break
		}
		if os.Remove(w.Store.Path(h)) == nil {
			deleted = append(deleted, h)
		}
	}
	if len(deleted) > 0 {
		w.H.Add(Op{Client: cid, Kind: OpDelete, Hashes: deleted, Invoke: inv, Return: w.H.Now()}, nil)
	}
}
