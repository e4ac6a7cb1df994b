package cluster

import (
	"encoding/hex"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/fsm/fsmpb"
)

// packHashes validates a batch of at most max wire hashes and packs them for
// a command.
func packHashes(field string, hs [][]byte, allowEmpty bool, max int) ([]byte, error) {
	if len(hs) == 0 && !allowEmpty {
		return nil, invalidf("%s: empty batch; send at least one hash", field)
	}
	if len(hs) > max {
		return nil, status.Errorf(codes.ResourceExhausted, "%s: %d hashes, at most %d per request", field, len(hs), max)
	}
	out := make([]byte, 0, len(hs)*fsm.HashSize)
	for i, h := range hs {
		if len(h) != fsm.HashSize {
			return nil, invalidf("%s: hash %d: want %d bytes, got %d", field, i, fsm.HashSize, len(h))
		}
		out = append(out, h...)
	}
	return out, nil
}

func parseHash(field string, b []byte) (fsm.Hash, error) {
	if len(b) != fsm.HashSize {
		return fsm.Hash{}, invalidf("%s: want %d bytes, got %d", field, fsm.HashSize, len(b))
	}
	return fsm.Hash(b), nil
}

// validateNodeID checks the length of a node id; reports also need
// fsm.ValidateReportNodeID, while DeregisterNode accepts any id a state may
// still hold from before ids were restricted.
func validateNodeID(id string) error {
	switch {
	case id == "":
		return invalidf("node_id: required")
	case len(id) > fsm.MaxNodeIDLen:
		return invalidf("node_id: %d bytes, at most %d", len(id), fsm.MaxNodeIDLen)
	}
	return nil
}

func checkConsistency(c pb.Consistency) error {
	switch c {
	case pb.Consistency_CONSISTENCY_LINEARIZABLE, pb.Consistency_CONSISTENCY_STALE:
		return nil
	}
	return invalidf("consistency: unknown value %d", int32(c))
}

// pageSize validates a requested page size (0 = default).
func pageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, invalidf("page_size: %d is negative", n)
	case n == 0:
		return DefaultPageSize, nil
	case n > MaxPageSize:
		return MaxPageSize, nil
	}
	return int(n), nil
}

// hashToken decodes a page token holding the last hash of the previous page.
func hashToken(tok string) (h fsm.Hash, ok bool, err error) {
	if tok == "" {
		return h, false, nil
	}
	b, err := hex.DecodeString(tok)
	if err != nil || len(b) != fsm.HashSize {
		return h, false, invalidf("page_token: %q is not a token returned by this API", tok)
	}
	return fsm.Hash(b), true, nil
}

// nodeToken decodes a page token holding the last node id of the previous
// page (hex, so that any id makes a printable token).
func nodeToken(tok string) (string, error) {
	b, err := hex.DecodeString(tok)
	if err != nil || len(b) > fsm.MaxNodeIDLen {
		return "", invalidf("page_token: %q is not a token returned by this API", tok)
	}
	return string(b), nil
}

func seqToken(tok string) (uint64, error) {
	if tok == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(tok, 10, 64)
	if err != nil {
		return 0, invalidf("page_token: %q is not a token returned by this API", tok)
	}
	return v, nil
}

var statusToState = map[fsm.Status]pb.BlobState{
	fsm.StatusNotFound:     pb.BlobState_BLOB_STATE_NOT_FOUND,
	fsm.StatusActive:       pb.BlobState_BLOB_STATE_ACTIVE,
	fsm.StatusPinned:       pb.BlobState_BLOB_STATE_PINNED,
	fsm.StatusUnreferenced: pb.BlobState_BLOB_STATE_UNREFERENCED,
	fsm.StatusMarked:       pb.BlobState_BLOB_STATE_MARKED_FOR_COLLECTION,
	fsm.StatusDeleting:     pb.BlobState_BLOB_STATE_DELETING,
	fsm.StatusCollected:    pb.BlobState_BLOB_STATE_COLLECTED,
}

// stateFilter converts a ListBlobs state filter; UNSPECIFIED means any.
func stateFilter(s pb.BlobState) (fsm.Status, error) {
	if s == pb.BlobState_BLOB_STATE_UNSPECIFIED {
		return fsm.StatusNotFound, nil
	}
	if s == pb.BlobState_BLOB_STATE_NOT_FOUND {
		return 0, invalidf("state: NOT_FOUND blobs are not stored and cannot be listed")
	}
	for st, ps := range statusToState {
		if ps == s {
			return st, nil
		}
	}
	return 0, invalidf("state: unknown value %d", int32(s))
}

func blobStatus(b fsm.BlobInfo) *pb.BlobStatus {
	return &pb.BlobStatus{
		Hash:                b.Hash[:],
		State:               statusToState[b.Status],
		UnreferencedSinceNs: b.Since,
		CoordinatorPin:      b.CoordinatorPin,
		ReferencedBy:        b.ReferencedBy,
		PinnedBy:            b.PinnedBy,
		Dangling:            b.Dangling,
		Registered:          b.Registered,
		CoordinatorPinnedBy: b.CoordinatorPinnedBy,
		ClaimedBy:           b.ClaimedBy,
		ClaimedAtNs:         b.ClaimedAt,
		ConfirmedBy:         b.ConfirmedBy,
		ConfirmedAtNs:       b.ConfirmedAt,
	}
}

func hashesToWire(hs []fsm.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

func cycleResult(c *fsm.CycleResult, dryRun bool, index uint64) *pb.CycleResult {
	return &pb.CycleResult{
		TimeNs:            c.Time,
		Eligible:          hashesToWire(c.Eligible),
		NewlyMarked:       hashesToWire(c.NewlyMarked),
		ActiveCount:       int64(c.ActiveCount),
		PinnedCount:       int64(c.PinnedCount),
		UnreferencedCount: int64(c.UnreferencedCount),
		StaleNodes:        c.StaleNodes,
		NodesReporting:    int64(c.NodesReporting),
		Skipped:           c.Skipped,
		DryRun:            dryRun,
		AppliedIndex:      index,
	}
}

func configToWire(c fsm.Config) *pb.Config {
	pol := pb.StalePolicy_STALE_POLICY_DROP
	if c.StalePolicy == fsm.StaleHold {
		pol = pb.StalePolicy_STALE_POLICY_HOLD
	}
	return &pb.Config{
		GracePeriodNs:          int64(c.GracePeriod),
		StaleThresholdNs:       int64(c.StaleThreshold),
		MinNodesReporting:      int64(c.MinNodesReporting),
		HistoryLimit:           int64(c.HistoryLimit),
		StalePolicy:            pol,
		MaxEligibleFraction:    c.MaxEligibleFraction,
		TombstoneLimit:         int64(c.TombstoneLimit),
		MaxNodes:               int64(c.MaxNodes),
		MaxStagedHashesPerNode: int64(c.MaxStagedHashesPerNode),
		MaxStagedHashes:        int64(c.MaxStagedHashesTotal),
		SetBy:                  c.SetBy,
	}
}

// setConfigCommand converts a SetConfig request; it reports whether any field
// is set.
func setConfigCommand(r *pb.SetConfigRequest) (*fsmpb.SetConfig, bool, error) {
	sc := &fsmpb.SetConfig{
		GracePeriodNs:          r.GracePeriodNs,
		StaleThresholdNs:       r.StaleThresholdNs,
		MinNodesReporting:      r.MinNodesReporting,
		HistoryLimit:           r.HistoryLimit,
		TombstoneLimit:         r.TombstoneLimit,
		MaxEligibleFraction:    r.MaxEligibleFraction,
		MaxNodes:               r.MaxNodes,
		MaxStagedHashesPerNode: r.MaxStagedHashesPerNode,
		MaxStagedHashes:        r.MaxStagedHashes,
	}
	any := r.GracePeriodNs != nil || r.StaleThresholdNs != nil || r.MinNodesReporting != nil ||
		r.HistoryLimit != nil || r.TombstoneLimit != nil || r.MaxEligibleFraction != nil ||
		r.MaxNodes != nil || r.MaxStagedHashesPerNode != nil || r.MaxStagedHashes != nil
	if r.StalePolicy != nil {
		switch *r.StalePolicy {
		case pb.StalePolicy_STALE_POLICY_UNSPECIFIED:
		case pb.StalePolicy_STALE_POLICY_DROP:
			sc.StalePolicy, any = fsmpb.StalePolicy_STALE_POLICY_DROP, true
		case pb.StalePolicy_STALE_POLICY_HOLD:
			sc.StalePolicy, any = fsmpb.StalePolicy_STALE_POLICY_HOLD, true
		default:
			return nil, false, invalidf("stale_policy: unknown value %d (want STALE_POLICY_DROP or STALE_POLICY_HOLD)", int32(*r.StalePolicy))
		}
	}
	return sc, any, nil
}

// reportCommand validates a Report request of at most maxBatch hashes and
// converts it.
func reportCommand(r *pb.ReportRequest, maxBatch int) (*fsmpb.Report, error) {
	if err := validateNodeID(r.NodeId); err != nil {
		return nil, err
	}
	if err := fsm.ValidateReportNodeID("node_id", r.NodeId); err != nil {
		return nil, domainError(err)
	}
	if r.Seq > fsm.MaxSeq {
		return nil, invalidf("seq: %d is above %d (2^64 - 2^32); sequence numbers start low and count up", r.Seq, uint64(fsm.MaxSeq))
	}
	n := len(r.Active) + len(r.Pinned) + len(r.RemovedActive) + len(r.RemovedPinned)
	if n > maxBatch {
		return nil, status.Errorf(codes.ResourceExhausted,
			"report: %d hashes, at most %d per request; split a full report into FULL_CHUNK requests", n, maxBatch)
	}
	out := &fsmpb.Report{NodeId: r.NodeId, Seq: r.Seq}
	switch r.Kind {
	case pb.ReportKind_REPORT_KIND_FULL:
		out.Kind = fsmpb.ReportKind_REPORT_KIND_FULL
	case pb.ReportKind_REPORT_KIND_DELTA:
		out.Kind = fsmpb.ReportKind_REPORT_KIND_DELTA
	case pb.ReportKind_REPORT_KIND_FULL_CHUNK:
		out.Kind = fsmpb.ReportKind_REPORT_KIND_CHUNK
		if r.Chunk == nil {
			return nil, invalidf("chunk: required for REPORT_KIND_FULL_CHUNK")
		}
		out.ReportId, out.ChunkIndex, out.LastChunk = r.Chunk.ReportId, r.Chunk.Index, r.Chunk.Last
	case pb.ReportKind_REPORT_KIND_UNSPECIFIED:
		return nil, invalidf("kind: required (REPORT_KIND_FULL, REPORT_KIND_DELTA or REPORT_KIND_FULL_CHUNK)")
	default:
		return nil, invalidf("kind: unknown value %d", int32(r.Kind))
	}
	if r.Kind != pb.ReportKind_REPORT_KIND_FULL_CHUNK && r.Chunk != nil {
		return nil, invalidf("chunk: only for REPORT_KIND_FULL_CHUNK")
	}
	if r.Kind != pb.ReportKind_REPORT_KIND_DELTA && (len(r.RemovedActive) > 0 || len(r.RemovedPinned) > 0) {
		return nil, invalidf("removed_active/removed_pinned: only for REPORT_KIND_DELTA")
	}
	var err error
	if out.Active, err = packHashes("active", r.Active, true, maxBatch); err != nil {
		return nil, err
	}
	if out.Pinned, err = packHashes("pinned", r.Pinned, true, maxBatch); err != nil {
		return nil, err
	}
	if out.RemovedActive, err = packHashes("removed_active", r.RemovedActive, true, maxBatch); err != nil {
		return nil, err
	}
	if out.RemovedPinned, err = packHashes("removed_pinned", r.RemovedPinned, true, maxBatch); err != nil {
		return nil, err
	}
	return out, nil
}
