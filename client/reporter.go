package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
)

// Reporter reports one VM node's active and pinned blob sets. It keeps the
// sets and the delta sequence number, so a node only says what changed; it is
// safe for concurrent use (calls are serialised).
type Reporter struct {
	c    *Client
	node string

	mu       sync.Mutex
	active   map[Hash]struct{}
	pinned   map[Hash]struct{}
	seq      uint64
	needFull bool // the cluster may not hold our sets: the next report is full
}

// Reporter returns a reporter for the VM node nodeID. Its first report is a
// full one (a Delta before any Full sends the sets it was given as a full
// report).
func (c *Client) Reporter(nodeID string) *Reporter {
	return &Reporter{c: c, node: nodeID, active: map[Hash]struct{}{}, pinned: map[Hash]struct{}{}, needFull: true}
}

// NodeID returns the node the reporter reports for.
func (r *Reporter) NodeID() string { return r.node }

// Seq returns the sequence number of the last report the cluster accepted.
func (r *Reporter) Seq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// Sets returns the node's current active and pinned sets, sorted.
func (r *Reporter) Sets() (active, pinned []Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sortedSet(r.active), sortedSet(r.pinned)
}

func sortedSet(m map[Hash]struct{}) []Hash {
	out := members(m)
	slices.SortFunc(out, func(a, b Hash) int { return a.Compare(b) })
	return out
}

// members lists m in no particular order.
func members(m map[Hash]struct{}) []Hash {
	out := make([]Hash, 0, len(m))
	for h := range m {
		out = append(out, h)
	}
	return out
}

func toSet(hs []Hash) map[Hash]struct{} {
	m := make(map[Hash]struct{}, len(hs))
	for _, h := range hs {
		m[h] = struct{}{}
	}
	return m
}

// Full replaces the node's sets with active and pinned and reports them.
func (r *Reporter) Full(ctx context.Context, active, pinned []Hash) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active, r.pinned = toSet(active), toSet(pinned)
	return r.sendFull(ctx)
}

// Delta changes the node's sets (additions first, then removals) and reports
// the change. If the cluster cannot apply it (a sequence gap, a node it does
// not know, or an earlier report whose outcome is unknown) the reporter
// sends a full report of the sets instead. A change too large for one
// request is sent as a full report too, so no cycle sees half of it.
func (r *Reporter) Delta(ctx context.Context, addActive, removeActive, addPinned, removePinned []Hash) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Removals first, then additions, as the state machine applies them: a
	// hash both removed and added stays in the set.
	for _, h := range removeActive {
		delete(r.active, h)
	}
	for _, h := range removePinned {
		delete(r.pinned, h)
	}
	for _, h := range addActive {
		r.active[h] = struct{}{}
	}
	for _, h := range addPinned {
		r.pinned[h] = struct{}{}
	}
	n := len(addActive) + len(removeActive) + len(addPinned) + len(removePinned)
	if r.needFull || n > r.c.cfg.chunk {
		return r.sendFull(ctx)
	}
	if n == 0 {
		return nil
	}
	req := &blobgcv1.ReportRequest{
		NodeId: r.node, Kind: blobgcv1.ReportKind_REPORT_KIND_DELTA, Seq: r.seq + 1,
		Active: toBytes(addActive), RemovedActive: toBytes(removeActive),
		Pinned: toBytes(addPinned), RemovedPinned: toBytes(removePinned),
	}
	_, err := r.c.Report(ctx, req)
	if err == nil {
		r.seq++
		return nil
	}
	if _, ok := FullReportRequired(err); ok {
		r.c.log.Debug("delta refused, sending a full report", "node", r.node, "error", err)
		return r.sendFull(ctx)
	}
	// The delta may or may not have been applied: only a full report puts
	// the cluster and us in step again.
	r.needFull = true
	return err
}

// sendFull reports r's sets as a full report, chunked when large. r.mu is held.
func (r *Reporter) sendFull(ctx context.Context) error {
	r.needFull = true
	seq := r.seq + 1
	err := r.fullAt(ctx, seq)
	if status.Code(err) == codes.FailedPrecondition {
		// Either the cluster holds a newer sequence number for this node
		// (the node restarted and lost its counter), or another report of
		// the node came between our chunks. Continue after the cluster's
		// number and send the report once more, with a new report id.
		nodes, lerr := r.c.Nodes(ctx)
		if lerr != nil {
			return err
		}
		for _, n := range nodes {
			if n.GetId() == r.node && n.GetSeq() >= seq {
				seq = n.GetSeq() + 1
			}
		}
		err = r.fullAt(ctx, seq)
	}
	if err != nil {
		return err
	}
	r.seq, r.needFull = seq, false
	return nil
}

func (r *Reporter) fullAt(ctx context.Context, seq uint64) error {
	// Unsorted: the cluster takes a report's lists as sets, and sorting
	// was a tenth of a reporting client's CPU.
	active, pinned := members(r.active), members(r.pinned)
	size := r.c.cfg.chunk
	if len(active)+len(pinned) <= size {
		_, err := r.c.Report(ctx, &blobgcv1.ReportRequest{
			NodeId: r.node, Kind: blobgcv1.ReportKind_REPORT_KIND_FULL, Seq: seq,
			Active: toBytes(active), Pinned: toBytes(pinned),
		})
		return err
	}
	// One report id for all chunks; the cluster stages them and swaps the
	// sets in with the last. Nonzero: zero means "not chunked".
	id := rand.Uint64() | 1
	for i := uint32(0); len(active)+len(pinned) > 0; i++ {
		na := min(len(active), size)
		np := min(len(pinned), size-na)
		req := &blobgcv1.ReportRequest{
			NodeId: r.node, Kind: blobgcv1.ReportKind_REPORT_KIND_FULL_CHUNK, Seq: seq,
			Active: toBytes(active[:na]), Pinned: toBytes(pinned[:np]),
			Chunk: &blobgcv1.Chunk{ReportId: id, Index: i, Last: na == len(active) && np == len(pinned)},
		}
		active, pinned = active[na:], pinned[np:]
		if _, err := r.c.Report(ctx, req); err != nil {
			return fmt.Errorf("chunk %d of full report %d: %w", i, id, err)
		}
	}
	return nil
}
