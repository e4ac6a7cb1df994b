package sweeper_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/sweeper"
)

func TestMain(m *testing.M) {
	// raft leaves a waiter on a future queued at shutdown (see cluster tests).
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction(clustertest.UnansweredFutureWaiter))
}

func hashN(n int) client.Hash {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	return sha256.Sum256(b[:])
}

type env struct {
	t     testing.TB
	c     *clustertest.Cluster
	cl    *client.Client
	store sweeper.Dir
	ctx   context.Context
}

// start runs a 3-server cluster with a 1 ms grace period and no scheduled
// cycles (the test runs them), a client, and an empty store.
func start(t *testing.T) *env { return startB(t) }

func startB(t testing.TB) *env {
	gc := fsm.DefaultConfig()
	gc.GracePeriod = time.Millisecond
	gc.StaleThreshold = time.Hour
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(i int, cfg *cluster.Config) { cfg.GC = &gc }})
	var addrs []string
	for _, s := range c.Servers {
		addrs = append(addrs, s.Addr())
	}
	cl, err := client.New(addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	e := &env{t: t, c: c, cl: cl, store: sweeper.Dir(t.TempDir()), ctx: ctx}
	// The configured GC settings are proposed by the first leader; wait for them.
	clustertest.Eventually(t, 20*time.Second, "GC config applied", func() bool {
		cfg, err := cl.GetConfig(ctx)
		return err == nil && cfg.GetGracePeriodNs() == int64(time.Millisecond)
	})
	return e
}

// put stores and registers blobs n..n+k-1.
func (e *env) put(from, k int) []client.Hash {
	var hs []client.Hash
	for i := from; i < from+k; i++ {
		h := hashN(i)
		if err := e.store.Put(h, []byte{byte(i)}); err != nil {
			e.t.Fatal(err)
		}
		hs = append(hs, h)
	}
	if _, err := e.cl.RegisterBlobs(e.ctx, hs); err != nil {
		e.t.Fatal(err)
	}
	return hs
}

func (e *env) state(h client.Hash) blobgcv1.BlobState {
	st, err := e.cl.Status(e.ctx, h)
	if err != nil {
		e.t.Fatal(err)
	}
	return st.GetState()
}

// markAll runs cycles until every hash in hs is marked.
func (e *env) markAll(hs []client.Hash) {
	clustertest.Eventually(e.t, 20*time.Second, "blobs marked", func() bool {
		if _, err := e.cl.RunCycle(e.ctx, false); err != nil {
			e.t.Fatal(err)
		}
		want := map[client.Hash]bool{}
		for _, h := range hs {
			want[h] = true
		}
		n := 0
		for h, err := range e.cl.ListEligible(e.ctx) {
			if err != nil {
				e.t.Fatal(err)
			}
			if want[h] {
				n++
			}
		}
		return n == len(hs)
	})
}

func sorted(hs []client.Hash) []client.Hash {
	out := slices.Clone(hs)
	slices.SortFunc(out, func(a, b client.Hash) int { return a.Compare(b) })
	return out
}

func TestSweepDeletesExactlyTheUnreferenced(t *testing.T) {
	e := start(t)
	hs := e.put(0, 6)
	// hs[0], hs[1] referenced by a VM, hs[2] node-pinned, hs[3] coordinator-pinned.
	rep := e.cl.Reporter("vm1")
	if err := rep.Full(e.ctx, hs[:2], hs[2:3]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cl.Pin(e.ctx, hs[3:4]); err != nil {
		t.Fatal(err)
	}
	garbage := hs[4:]
	e.markAll(garbage)

	var progress []sweeper.Summary
	sum, err := sweeper.Run(e.ctx, e.cl, e.store, sweeper.Options{Batch: 1, Progress: func(s sweeper.Summary) { progress = append(progress, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Eligible != 2 || sum.Granted != 2 || sum.Deleted != 2 || sum.Missing != 0 || sum.Confirmed != 2 || sum.Errors != 0 {
		t.Fatalf("summary %v", sum)
	}
	if !slices.Equal(sorted(sum.DeletedHashes), sorted(garbage)) {
		t.Fatalf("deleted %v, want %v", sum.DeletedHashes, garbage)
	}
	if len(progress) != 2 || progress[1].Deleted != 2 {
		t.Fatalf("progress %v", progress)
	}
	for _, h := range garbage {
		if e.store.Has(h) {
			t.Errorf("%s still stored", h)
		}
		if s := e.state(h); s != blobgcv1.BlobState_BLOB_STATE_COLLECTED {
			t.Errorf("%s is %v, want COLLECTED", h, s)
		}
	}
	for _, h := range hs[:4] {
		if !e.store.Has(h) {
			t.Errorf("protected %s was deleted", h)
		}
	}
	// A second sweep finds nothing to do.
	sum, err = sweeper.Run(e.ctx, e.cl, e.store, sweeper.Options{})
	if err != nil || sum.Eligible != 0 || sum.Deleted != 0 {
		t.Fatalf("second sweep: %v %v", sum, err)
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	e := start(t)
	hs := e.put(100, 3)
	if err := e.cl.Reporter("vm1").Full(e.ctx, hs[:1], nil); err != nil {
		t.Fatal(err)
	}
	e.markAll(hs[1:])
	sum, err := sweeper.Run(e.ctx, e.cl, e.store, sweeper.Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sorted(sum.WouldClaim), sorted(hs[1:])) || sum.Granted != 0 || sum.Deleted != 0 || sum.Confirmed != 0 {
		t.Fatalf("dry run summary %v would claim %v", sum, sum.WouldClaim)
	}
	for _, h := range hs {
		if !e.store.Has(h) {
			t.Errorf("dry run deleted %s", h)
		}
	}
	for _, h := range hs[1:] {
		if s := e.state(h); s != blobgcv1.BlobState_BLOB_STATE_MARKED_FOR_COLLECTION {
			t.Errorf("dry run moved %s to %v", h, s)
		}
	}
}

// A blob referenced again after it was marked must not be granted, even
// though it is still listed as eligible until the next cycle.
func TestReReferencedBlobIsNotDeleted(t *testing.T) {
	e := start(t)
	hs := e.put(200, 3)
	if err := e.cl.Reporter("vm1").Full(e.ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	e.markAll(hs)
	if err := e.cl.Reporter("vm2").Full(e.ctx, hs[:1], nil); err != nil {
		t.Fatal(err)
	}
	// A pin of a marked blob is allowed and protects it at once.
	if _, err := e.cl.Pin(e.ctx, hs[1:2]); err != nil {
		t.Fatal(err)
	}
	sum, err := sweeper.Run(e.ctx, e.cl, e.store, sweeper.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Eligible != 2 || sum.Granted != 1 || sum.Deleted != 1 {
		t.Fatalf("summary %v", sum)
	}
	if !e.store.Has(hs[0]) || !e.store.Has(hs[1]) || e.store.Has(hs[2]) {
		t.Fatalf("store after sweep: %v %v %v", e.store.Has(hs[0]), e.store.Has(hs[1]), e.store.Has(hs[2]))
	}
}

func TestMissingFileIsConfirmed(t *testing.T) {
	e := start(t)
	hs := e.put(300, 2)
	if err := e.cl.Reporter("vm1").Full(e.ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	e.markAll(hs)
	if err := os.Remove(e.store.Path(hs[0])); err != nil {
		t.Fatal(err)
	}
	sum, err := sweeper.Run(e.ctx, e.cl, e.store, sweeper.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Granted != 2 || sum.Deleted != 1 || sum.Missing != 1 || sum.Confirmed != 2 {
		t.Fatalf("summary %v", sum)
	}
	for _, h := range hs {
		if s := e.state(h); s != blobgcv1.BlobState_BLOB_STATE_COLLECTED {
			t.Errorf("%s is %v, want COLLECTED", h, s)
		}
	}
}

// A file that cannot be removed is not confirmed: the blob stays claimed and
// the next sweep finishes it.
func TestUndeletableFileStaysClaimed(t *testing.T) {
	e := start(t)
	hs := e.put(400, 1)
	if err := e.cl.Reporter("vm1").Full(e.ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	e.markAll(hs)
	p := e.store.Path(hs[0])
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(p+"/x", 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := sweeper.Run(e.ctx, e.cl, e.store, sweeper.Options{})
	if err == nil || sum.Errors != 1 || sum.Confirmed != 0 || sum.Granted != 1 {
		t.Fatalf("summary %v err %v", sum, err)
	}
	if s := e.state(hs[0]); s != blobgcv1.BlobState_BLOB_STATE_DELETING {
		t.Fatalf("state %v, want DELETING", s)
	}
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Put(hs[0], []byte("x")); err != nil {
		t.Fatal(err)
	}
	sum, err = sweeper.Run(e.ctx, e.cl, e.store, sweeper.Options{})
	if err != nil || sum.Granted != 1 || sum.Deleted != 1 || sum.Confirmed != 1 {
		t.Fatalf("retry summary %v err %v", sum, err)
	}
	if s := e.state(hs[0]); s != blobgcv1.BlobState_BLOB_STATE_COLLECTED {
		t.Fatalf("state %v, want COLLECTED", s)
	}
}
