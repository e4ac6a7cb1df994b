package fsm

import (
	"bytes"
	"fmt"
	"time"

	"github.com/blobgc/blobgc/fsm/fsmpb"
)

// mk returns the hash whose bytes are all b (the seed tests' make_hash).
func mk(b byte) Hash {
	var h Hash
	for i := range h {
		h[i] = b
	}
	return h
}

// hn returns a hash spread over shards: i's bytes in front, so that
// consecutive i land in different shards.
func hn(i uint64) Hash {
	var h Hash
	x := i*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
	for k := 0; k < 4; k++ {
		x ^= x >> 29
		x *= 0xBF58476D1CE4E5B9
		x ^= x >> 32
		for j := 0; j < 8; j++ {
			h[k*8+j] = byte(x >> (8 * j))
		}
	}
	return h
}

// tb is what the harness needs of testing.TB and *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// harness drives an FSM through encoded log entries at increasing indexes.
type harness struct {
	t   tb
	f   *FSM
	idx uint64
	now int64
	by  string // principal recorded with each command
}

func newHarness(t tb, cfg Config) *harness {
	t.Helper()
	f, err := NewWithConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, f: f}
}

func (h *harness) apply(op any) *Result {
	h.t.Helper()
	h.idx++
	cmd := NewCommand(h.now, h.now+1_000_000, op)
	cmd.Principal = h.by
	r := h.f.ApplyCommand(h.idx, cmd)
	if r.Index != h.idx {
		h.t.Fatalf("result index %d, want %d", r.Index, h.idx)
	}
	return r
}

func (h *harness) ok(op any) *Result {
	h.t.Helper()
	r := h.apply(op)
	if r.Err != nil {
		h.t.Fatalf("%T: unexpected error %v", op, r.Err)
	}
	return r
}

func (h *harness) advance(d time.Duration) { h.now += int64(d) }

func (h *harness) register(hs ...Hash) *Result {
	return h.ok(&fsmpb.RegisterBlobs{Hashes: PackHashes(hs)})
}
func (h *harness) pin(hs ...Hash) *Result   { return h.apply(&fsmpb.Pin{Hashes: PackHashes(hs)}) }
func (h *harness) unpin(hs ...Hash) *Result { return h.ok(&fsmpb.Unpin{Hashes: PackHashes(hs)}) }
func (h *harness) claim(hs ...Hash) []Hash  { return h.ok(&fsmpb.Claim{Hashes: PackHashes(hs)}).Claimed }
func (h *harness) confirm(hs ...Hash) *Result {
	return h.ok(&fsmpb.ConfirmCollected{Hashes: PackHashes(hs)})
}
func (h *harness) full(node string, seq uint64, active, pinned []Hash) *Result {
	return h.apply(&fsmpb.Report{NodeId: node, Kind: fsmpb.ReportKind_REPORT_KIND_FULL, Seq: seq, Active: PackHashes(active), Pinned: PackHashes(pinned)})
}
func (h *harness) delta(node string, seq uint64, addA, remA, addP, remP []Hash) *Result {
	return h.apply(&fsmpb.Report{NodeId: node, Kind: fsmpb.ReportKind_REPORT_KIND_DELTA, Seq: seq,
		Active: PackHashes(addA), RemovedActive: PackHashes(remA), Pinned: PackHashes(addP), RemovedPinned: PackHashes(remP)})
}
func (h *harness) cycle() *CycleResult  { return h.ok(&fsmpb.RunCycle{}).Cycle }
func (h *harness) status(x Hash) Status { return h.f.Blob(x).Status }

func (h *harness) wantStatus(x Hash, want Status) {
	h.t.Helper()
	if got := h.status(x); got != want {
		h.t.Fatalf("status of %s = %v, want %v", x.String()[:8], got, want)
	}
}

func hashesEqual(a, b []Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func short(hs []Hash) string {
	var b bytes.Buffer
	for _, h := range hs {
		fmt.Fprintf(&b, "%x ", h[:2])
	}
	return b.String()
}

// snapBytes persists f into memory.
func snapBytes(t tb, f *FSM) []byte {
	t.Helper()
	sn, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := sn.(*Snap).WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	sn.Release()
	return buf.Bytes()
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func restoreBytes(f *FSM, b []byte) error {
	return f.Restore(nopCloser{bytes.NewReader(b)})
}
