package chaos

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blobgc/blobgc/fsm"
)

func hh(s string) Hash { return sha256.Sum256([]byte(s)) }

const ms = time.Millisecond

func report(node string, inv, ret time.Duration, out Outcome, active ...Hash) Op {
	if out == Unknown {
		ret = Infinity
	}
	return Op{Kind: OpReport, Node: node, Invoke: inv, Return: ret, Outcome: out, Active: active}
}

func op(k Kind, inv, ret time.Duration, out Outcome, hs ...Hash) Op {
	if out == Unknown {
		ret = Infinity
	}
	return Op{Kind: k, Invoke: inv, Return: ret, Outcome: out, Hashes: hs}
}

func claim(inv, ret time.Duration, granted ...Hash) Op {
	return Op{Kind: OpClaim, Invoke: inv, Return: ret, Outcome: OK, Hashes: granted, Granted: granted}
}

func number(ops []Op) []Op {
	for i := range ops {
		ops[i].ID = i
	}
	return ops
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Outcome
	}{
		{nil, OK},
		{status.Error(codes.FailedPrecondition, "deleting"), Failed},
		{status.Error(codes.InvalidArgument, "bad"), Failed},
		{status.Error(codes.Unavailable, "no leader"), Unknown},
		{status.Error(codes.DeadlineExceeded, "slow"), Unknown},
		{fmt.Errorf("wrapped: %w", errors.Join(errors.New("x"), contextDeadline())), Unknown},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	h := NewHistory()
	o := h.Add(Op{Kind: OpPin, Return: 5 * ms}, status.Error(codes.Unavailable, "x"))
	if o.Return != Infinity || o.Outcome != Unknown {
		t.Fatalf("unknown op recorded as %+v", o)
	}
}

func TestCheckClaims(t *testing.T) {
	x, y := hh("x"), hh("y")
	for _, c := range []struct {
		name string
		ops  []Op
		want int
	}{
		{"acked report protects", []Op{report("n", 0, 10*ms, OK, x), claim(20*ms, 30*ms, x)}, 1},
		{"report still in flight when claimed", []Op{report("n", 0, 25*ms, OK, x), claim(20*ms, 30*ms, x)}, 0},
		{"dropped before the claim", []Op{report("n", 0, 10*ms, OK, x), report("n", 11*ms, 15*ms, OK, y), claim(20*ms, 30*ms, x)}, 0},
		{"drop of unknown outcome may have applied", []Op{report("n", 0, 10*ms, OK, x), report("n", 11*ms, 0, Unknown, y), claim(20*ms, 30*ms, x)}, 0},
		{"drop invoked after the claim returned", []Op{report("n", 0, 10*ms, OK, x), claim(20*ms, 30*ms, x), report("n", 31*ms, 35*ms, OK, y)}, 1},
		{"failed report protects nothing", []Op{report("n", 0, 10*ms, Failed, x), claim(20*ms, 30*ms, x)}, 0},
		{"re-referenced after a drop", []Op{report("n", 0, 10*ms, OK, y), report("n", 11*ms, 12*ms, OK, x), claim(20*ms, 30*ms, x)}, 1},
		{"acked pin protects", []Op{op(OpPin, 0, 10*ms, OK, x), claim(20*ms, 30*ms, x)}, 1},
		{"pin undone by an unpin", []Op{op(OpPin, 0, 10*ms, OK, x), op(OpUnpin, 12*ms, 0, Unknown, x), claim(20*ms, 30*ms, x)}, 0},
		{"another blob's pin", []Op{op(OpPin, 0, 10*ms, OK, y), claim(20*ms, 30*ms, x)}, 0},
	} {
		if got := CheckClaims(number(c.ops)); len(got) != c.want {
			t.Errorf("%s: %d violations %v, want %d", c.name, len(got), got, c.want)
		}
	}
}

func TestCheckSweeper(t *testing.T) {
	x, y := hh("x"), hh("y")
	ops := number([]Op{claim(0, 10*ms, x), op(OpDelete, 0, 12*ms, OK, x)})
	if vs := CheckSweeper(ops, []Hash{x}); len(vs) != 0 {
		t.Fatalf("granted and deleted: %v", vs)
	}
	if vs := CheckSweeper(ops, []Hash{x, y}); len(vs) != 1 {
		t.Fatalf("y gone without a claim: %v", vs)
	}
	ops = number([]Op{report("n", 0, 5*ms, OK, x), claim(6*ms, 10*ms, x), op(OpDelete, 6*ms, 12*ms, OK, x)})
	vs := CheckSweeper(ops, []Hash{x})
	if len(vs) != 1 || vs[0].Invariant != 6 {
		t.Fatalf("deleted a referenced blob: %v", vs)
	}
}

type fakeEnd map[Hash]fsm.BlobInfo

func (f fakeEnd) Blob(h Hash) fsm.BlobInfo { return f[h] }

func TestCheckNoLostWrites(t *testing.T) {
	x, y := hh("x"), hh("y")
	known := fsm.BlobInfo{Status: fsm.StatusActive}
	pinned := fsm.BlobInfo{Status: fsm.StatusPinned, CoordinatorPin: true}
	for _, c := range []struct {
		name string
		ops  []Op
		end  fakeEnd
		want int
	}{
		{"register kept", []Op{op(OpRegister, 0, 1*ms, OK, x)}, fakeEnd{x: known}, 0},
		{"register lost", []Op{op(OpRegister, 0, 1*ms, OK, x)}, fakeEnd{}, 1},
		{"unknown register may be lost", []Op{op(OpRegister, 0, 0, Unknown, x)}, fakeEnd{}, 0},
		{"pin lost", []Op{op(OpPin, 0, 1*ms, OK, x)}, fakeEnd{x: known}, 1},
		{"pin kept", []Op{op(OpPin, 0, 1*ms, OK, x)}, fakeEnd{x: pinned}, 0},
		{"pin then unknown unpin", []Op{op(OpPin, 0, 1*ms, OK, x), op(OpUnpin, 2*ms, 0, Unknown, x)}, fakeEnd{x: known}, 0},
		{"unpin lost", []Op{op(OpPin, 0, 1*ms, OK, x), op(OpUnpin, 2*ms, 3*ms, OK, x)}, fakeEnd{x: pinned}, 1},
		{"concurrent pin may win", []Op{op(OpPin, 0, 5*ms, OK, x), op(OpUnpin, 2*ms, 3*ms, OK, x)}, fakeEnd{x: pinned}, 0},
		{"last report kept", []Op{report("n", 0, 1*ms, OK, y), report("n", 2*ms, 3*ms, OK, x)},
			fakeEnd{x: {ReferencedBy: []string{"n"}}}, 0},
		{"last report lost", []Op{report("n", 0, 1*ms, OK, y), report("n", 2*ms, 3*ms, OK, x)},
			fakeEnd{y: {ReferencedBy: []string{"n"}}}, 2},
		{"last report unknown", []Op{report("n", 0, 1*ms, OK, y), report("n", 2*ms, 0, Unknown, x)},
			fakeEnd{y: {ReferencedBy: []string{"n"}}}, 0},
	} {
		if got := CheckNoLostWrites(number(c.ops), c.end); len(got) != c.want {
			t.Errorf("%s: %d violations %v, want %d", c.name, len(got), got, c.want)
		}
	}
}

func read(inv, ret time.Duration, pinned bool, h Hash) Op {
	o := op(OpStatus, inv, ret, OK, h)
	o.CoordinatorPin = pinned
	return o
}

func TestCheckLinearizable(t *testing.T) {
	x, y := hh("x"), hh("y")
	for _, c := range []struct {
		name string
		ops  []Op
		ok   bool
	}{
		{"sequential", []Op{op(OpPin, 0, 1*ms, OK, x), read(2*ms, 3*ms, true, x), op(OpUnpin, 4*ms, 5*ms, OK, x), read(6*ms, 7*ms, false, x)}, true},
		{"stale read", []Op{op(OpPin, 0, 1*ms, OK, x), read(2*ms, 3*ms, false, x)}, false},
		{"read of a refused pin", []Op{op(OpPin, 0, 1*ms, Failed, x), read(2*ms, 3*ms, false, x)}, true},
		{"unknown pin may apply late", []Op{op(OpPin, 0, 0, Unknown, x), read(2*ms, 3*ms, false, x), read(4*ms, 5*ms, true, x)}, true},
		{"unknown pin cannot un-apply", []Op{op(OpPin, 0, 0, Unknown, x), read(2*ms, 3*ms, true, x), read(4*ms, 5*ms, false, x)}, false},
		{"per hash", []Op{op(OpPin, 0, 1*ms, OK, x), read(2*ms, 3*ms, false, y)}, true},
		{"concurrent read sees either", []Op{op(OpPin, 0, 10*ms, OK, x), read(1*ms, 2*ms, false, x), read(3*ms, 4*ms, true, x)}, true},
	} {
		vs := CheckLinearizable(number(c.ops), 10*time.Second)
		if (len(vs) == 0) != c.ok {
			t.Errorf("%s: violations %v, want ok=%v", c.name, vs, c.ok)
		}
	}
}

func TestCheckDigests(t *testing.T) {
	a, b := [32]byte{1}, [32]byte{2}
	if vs := CheckDigests([]uint64{5, 5, 5}, [][32]byte{a, a, a}); len(vs) != 0 {
		t.Fatal(vs)
	}
	if vs := CheckDigests([]uint64{5, 5, 5}, [][32]byte{a, b, a}); len(vs) != 1 {
		t.Fatal("different digests not reported")
	}
	if vs := CheckDigests([]uint64{5, 6}, [][32]byte{a, a}); len(vs) != 1 {
		t.Fatal("different indexes not reported")
	}
}

func TestCheckGraceHistory(t *testing.T) {
	x := hh("x")
	s := int64(time.Second)
	events := []fsm.HistoryEvent{
		{Seq: 1, Time: 9 * s, NewlyMarked: []Hash{hh("other")}},
		{Seq: 2, Time: 11 * s, NewlyMarked: []Hash{x}},
	}
	mark := []MarkRecord{{Hash: x, Since: 10 * s, By: 12 * s}}
	if n, vs := CheckGraceHistory(mark, events, time.Second); n != 1 || len(vs) != 0 {
		t.Fatalf("a mark one grace later: %d %v", n, vs)
	}
	if n, vs := CheckGraceHistory(mark, events, 2*time.Second); n != 1 || len(vs) != 1 {
		t.Fatalf("a mark one second into a two-second grace: %d %v", n, vs)
	}
}

func TestCheckClockRate(t *testing.T) {
	s := int64(time.Second)
	events := []fsm.HistoryEvent{{Seq: 1, Time: 10 * s, WallTime: 100 * s}, {Seq: 2, Time: 11 * s, WallTime: 105 * s}}
	if vs := CheckClockRate(events, 0); len(vs) != 0 {
		t.Fatalf("cluster time behind wall time (an election in between): %v", vs)
	}
	events[1].WallTime = 100*s + s/2
	if vs := CheckClockRate(events, 10*time.Millisecond); len(vs) != 1 {
		t.Fatalf("cluster time ahead of wall time: %v", vs)
	}
}

func TestMaxWriteGap(t *testing.T) {
	ops := []Op{
		op(OpPin, 0, 100*ms, OK), op(OpStatus, 0, 500*ms, OK), op(OpPin, 0, 0, Unknown),
		op(OpUnpin, 0, 400*ms, OK), op(OpRegister, 0, 450*ms, Failed),
	}
	if g := MaxWriteGap(ops, 0, time.Second); g != 600*ms {
		t.Fatalf("gap %v, want 600ms (from the last acked write to the end)", g)
	}
}

func contextDeadline() error { return context.DeadlineExceeded }
