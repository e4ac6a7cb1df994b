package chaos

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/client"
)

// Hash is a blob hash.
type Hash = client.Hash

// Kind is the kind of a recorded operation.
type Kind int

// Operation kinds.
const (
	OpRegister Kind = iota
	OpPin
	OpUnpin
	OpStatus // a linearizable status read
	OpReport // a VM node's full or delta report (through client.Reporter)
	OpClaim
	OpConfirm
	OpDelete // the sweeper removed files (Hashes) after a granted claim
)

var kindNames = [...]string{"register", "pin", "unpin", "status", "report", "claim", "confirm", "delete"}

func (k Kind) String() string { return kindNames[k] }

// IsWrite reports whether the kind changes cluster state.
func (k Kind) IsWrite() bool { return k != OpStatus && k != OpDelete }

// Outcome is what a client knows about an operation.
type Outcome int

// Outcomes.
const (
	// OK: acknowledged (committed and applied).
	OK Outcome = iota
	// Failed: refused before it could change anything.
	Failed
	// Unknown: it may or may not have been applied (a timeout, a lost
	// leader, an Unavailable after the request was sent).
	Unknown
)

func (o Outcome) String() string { return [...]string{"ok", "failed", "unknown"}[o] }

// Infinity is the return time of an operation whose outcome is unknown: it
// may take effect at any point after its invocation (as etcd's robustness
// tests model it).
const Infinity = time.Duration(math.MaxInt64)

// Classify maps a call's error to an outcome. Errors that say the request
// was refused as such are Failed; everything that can happen after the
// request left (timeouts, Unavailable, cancellation, internal errors) is
// Unknown, because a write may still commit.
func Classify(err error) Outcome {
	if err == nil {
		return OK
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return Unknown
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound, codes.AlreadyExists,
		codes.ResourceExhausted, codes.PermissionDenied, codes.Unauthenticated, codes.OutOfRange:
		return Failed
	}
	return Unknown
}

// Op is one recorded operation. Times are monotonic, measured from the start
// of the history.
type Op struct {
	ID      int
	Client  int // the recording goroutine
	Kind    Kind
	Node    string // OpReport: the VM node
	Hashes  []Hash // the request's hashes (OpReport: none; see Active/Pinned)
	Invoke  time.Duration
	Return  time.Duration // Infinity when Outcome is Unknown
	Outcome Outcome
	Err     string

	// OpReport: the node's whole sets after the report, as sent.
	Active, Pinned []Hash
	// OpStatus: the answer.
	CoordinatorPin bool
	State          blobgcv1.BlobState
	// OpClaim: the granted hashes.
	Granted []Hash
}

// Has reports whether the report op's sets (active or pinned) contain h.
func (o *Op) Has(h Hash) bool {
	return slices.Contains(o.Active, h) || slices.Contains(o.Pinned, h)
}

// History records operations from many goroutines.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewHistory starts an empty history; its clock starts now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the monotonic time since the history started.
func (h *History) Now() time.Duration { return time.Since(h.start) }

// Add records op, classifying err; an Unknown op returns at Infinity.
func (h *History) Add(op Op, err error) Op {
	op.Outcome = Classify(err)
	if err != nil {
		op.Err = err.Error()
	}
	if op.Outcome == Unknown {
		op.Return = Infinity
	}
	h.mu.Lock()
	op.ID = len(h.ops)
	h.ops = append(h.ops, op)
	h.mu.Unlock()
	return op
}

// Ops returns a copy of the recorded operations, in invocation order.
func (h *History) Ops() []Op {
	h.mu.Lock()
	out := slices.Clone(h.ops)
	h.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Op) int { return int64Cmp(int64(a.Invoke), int64(b.Invoke)) })
	return out
}

func int64Cmp(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
