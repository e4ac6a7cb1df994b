package cluster

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/fsm/fsmpb"
)

// api implements the BlobGC service. Every handler validates its input first,
// then serves on the leader or forwards there.
type api struct {
	pb.UnimplementedBlobGCServer
	s *Server
}

// propose stamps op with the session's cluster clock, applies it and waits
// for the result. A domain error comes back in Result.Err.
func (s *Server) propose(ctx context.Context, ss *session, op any) (res *fsm.Result, err error) {
	timeout := s.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < timeout {
			timeout = d
		}
	}
	if timeout <= 0 {
		return nil, ctxError(ctx, "proposing")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Stamping and enqueueing happen under one lock, so the log holds the
	// leader's stamps in order: each entry's cluster and wall time belong
	// to the same instant, and no entry carries a stamp older than the one
	// before it. The lock covers only the hand-over to raft's buffered
	// apply channel (BatchApplyCh), never the wait for commit, so
	// concurrent proposals queue up there and the leader loop writes them
	// to the log together: one fsync for the group.
	s.proposeMu.Lock()
	now, wall := ss.now()
	// A session's clock is only valid in its own term: a stamp from an
	// earlier term would count the election gap as elapsed cluster time.
	if s.raft.CurrentTerm() != ss.term {
		s.proposeMu.Unlock()
		return nil, s.withHint(codes.Unavailable, "leadership changed; the write was not applied")
	}
	cmd := fsm.NewCommand(now, wall, op)
	cmd.Principal = principalOf(ctx)
	data, err := fsm.Encode(cmd)
	if err != nil {
		s.proposeMu.Unlock()
		return nil, domainError(err)
	}
	f := s.raft.Apply(data, timeout)
	s.proposeMu.Unlock()
	defer func() { s.auditWrite(ctx, op, res, err) }()
	if err := waitApplied(ctx, ss, f); err != nil {
		if ctx.Err() != nil {
			return nil, status.Errorf(status.Code(ctxError(ctx, "")), "%s before the write was applied; outcome unknown", ctx.Err())
		}
		return nil, s.applyError(err)
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok || res == nil {
		return nil, status.Errorf(codes.Internal, "state machine returned %T", f.Response())
	}
	return res, nil
}

// apply is propose with the domain error mapped to a gRPC status.
func (s *Server) apply(ctx context.Context, ss *session, op any) (*fsm.Result, error) {
	res, err := s.propose(ctx, ss, op)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, domainError(res.Err)
	}
	return res, nil
}

// runCycle applies a RunCycle and records its metrics. requestID (may be
// empty) deduplicates retries of one call.
func (s *Server) runCycle(ctx context.Context, ss *session, requestID string) (*fsm.Result, error) {
	start := time.Now()
	res, err := s.apply(ctx, ss, &fsmpb.RunCycle{RequestId: requestID})
	s.metrics.cycleDuration.Observe(time.Since(start).Seconds())
	switch {
	case err == nil && res.Duplicate:
		return res, nil // a retry answered from the first run: counted then
	case err != nil:
		s.metrics.cycles.WithLabelValues("error").Inc()
	case res.Cycle != nil && res.Cycle.Skipped != "":
		s.metrics.cycles.WithLabelValues("skipped").Inc()
	default:
		s.metrics.cycles.WithLabelValues("ok").Inc()
	}
	if err == nil && res.Cycle != nil {
		s.metrics.newlyMarked.Add(float64(len(res.Cycle.NewlyMarked)))
	}
	return res, err
}

// linearize makes a read on the leader linearizable: the commit index taken
// now, leadership confirmed by a quorum afterwards in the same term (in a
// VerifyLeader round shared with concurrent reads), and the FSM caught up
// to that index.
func (s *Server) linearize(ctx context.Context, ss *session) error {
	idx := s.raft.CommitIndex()
	if err := s.leaderCheck.confirm(ctx); err != nil {
		if ctx.Err() != nil {
			return ctxError(ctx, "confirming leadership")
		}
		return s.withHint(codes.Unavailable, "leadership not confirmed: "+err.Error())
	}
	select {
	case <-ss.done:
		return s.withHint(codes.Unavailable, "leadership lost during the read")
	default:
	}
	if s.raft.CurrentTerm() != ss.term {
		return s.withHint(codes.Unavailable, "term changed during the read")
	}
	if err := s.repl.waitApplied(ctx, idx); err != nil {
		return ctxError(ctx, "waiting for the state machine to apply the commit index")
	}
	return nil
}

// read serves a read: locally for a stale read, otherwise linearizably on
// the leader (forwarded there from a follower).
func read[R any, PR interface {
	*R
	proto.Message
}](s *Server, ctx context.Context, method string, req proto.Message, c pb.Consistency, local func() (PR, error)) (PR, error) {
	if err := checkConsistency(c); err != nil {
		return nil, err
	}
	if c == pb.Consistency_CONSISTENCY_STALE {
		return local()
	}
	return leaderCall[R, PR](s, ctx, method, req, func(ctx context.Context, ss *session) (PR, error) {
		if err := s.linearize(ctx, ss); err != nil {
			return nil, err
		}
		return local()
	})
}

// ---- writes ----

// hashesWrite validates a batch and applies op on the leader. If noop is
// set and says that the batch would change nothing, the answer comes from
// the leader's state without a log entry (see answeredIfNoop).
func (a *api) hashesWrite(ctx context.Context, method string, req *pb.HashesRequest, op func(packed []byte) any, noop func(packed []byte) bool) (*pb.WriteResponse, error) {
	packed, err := packHashes("hashes", req.Hashes, false, a.s.cfg.Limits.MaxBatch)
	if err != nil {
		return nil, err
	}
	return leaderCall[pb.WriteResponse](a.s, ctx, method, req, func(ctx context.Context, ss *session) (*pb.WriteResponse, error) {
		if noop != nil {
			if ok, err := a.s.answeredIfNoop(ctx, ss, func() bool { return noop(packed) }); err != nil {
				return nil, err
			} else if ok {
				return &pb.WriteResponse{AppliedIndex: a.s.repl.Index()}, nil
			}
		}
		res, err := a.s.apply(ctx, ss, op(packed))
		if err != nil {
			return nil, err
		}
		return &pb.WriteResponse{AppliedIndex: res.Index, Changed: int64(res.Changed)}, nil
	})
}

// answeredIfNoop decides whether a write that would change nothing can be
// answered from the leader's state instead of the log. noop is asked on the
// local state first (a write that changes something goes to the log without
// delay), then again after a linearizable read, so that the answer reflects
// every write acknowledged before this one began: the write takes effect at
// that read, as a delta duplicate does.
func (s *Server) answeredIfNoop(ctx context.Context, ss *session, noop func() bool) (bool, error) {
	if !noop() {
		return false, nil
	}
	if err := s.linearize(ctx, ss); err != nil {
		return false, err
	}
	return noop(), nil
}

func (a *api) RegisterBlobs(ctx context.Context, req *pb.HashesRequest) (*pb.WriteResponse, error) {
	return a.hashesWrite(ctx, pb.BlobGC_RegisterBlobs_FullMethodName, req, func(p []byte) any { return &fsmpb.RegisterBlobs{Hashes: p} }, nil)
}

func (a *api) Pin(ctx context.Context, req *pb.HashesRequest) (*pb.WriteResponse, error) {
	return a.hashesWrite(ctx, pb.BlobGC_Pin_FullMethodName, req, func(p []byte) any { return &fsmpb.Pin{Hashes: p} }, nil)
}

func (a *api) Unpin(ctx context.Context, req *pb.HashesRequest) (*pb.WriteResponse, error) {
	return a.hashesWrite(ctx, pb.BlobGC_Unpin_FullMethodName, req, func(p []byte) any { return &fsmpb.Unpin{Hashes: p} }, nil)
}

// ConfirmCollected of hashes none of which is DELETING changes nothing and
// is answered without a log entry.
func (a *api) ConfirmCollected(ctx context.Context, req *pb.HashesRequest) (*pb.WriteResponse, error) {
	return a.hashesWrite(ctx, pb.BlobGC_ConfirmCollected_FullMethodName, req, func(p []byte) any { return &fsmpb.ConfirmCollected{Hashes: p} }, a.s.fsm.ConfirmIsNoop)
}

// Claim of hashes none of which is MARKED and claimable changes nothing and
// is answered without a log entry (granting those already DELETING, as a
// repeated claim does).
func (a *api) Claim(ctx context.Context, req *pb.HashesRequest) (*pb.ClaimResponse, error) {
	packed, err := packHashes("hashes", req.Hashes, false, a.s.cfg.Limits.MaxBatch)
	if err != nil {
		return nil, err
	}
	return leaderCall[pb.ClaimResponse](a.s, ctx, pb.BlobGC_Claim_FullMethodName, req, func(ctx context.Context, ss *session) (*pb.ClaimResponse, error) {
		var granted []fsm.Hash
		noop := func() (ok bool) { granted, ok = a.s.fsm.ClaimIsNoop(packed); return ok }
		if ok, err := a.s.answeredIfNoop(ctx, ss, noop); err != nil {
			return nil, err
		} else if ok {
			return &pb.ClaimResponse{Granted: hashesToWire(granted), AppliedIndex: a.s.repl.Index()}, nil
		}
		res, err := a.s.apply(ctx, ss, &fsmpb.Claim{Hashes: packed})
		if err != nil {
			return nil, err
		}
		return &pb.ClaimResponse{Granted: hashesToWire(res.Claimed), AppliedIndex: res.Index}, nil
	})
}

func (a *api) Report(ctx context.Context, req *pb.ReportRequest) (*pb.ReportResponse, error) {
	rep, err := reportCommand(req, a.s.cfg.Limits.MaxBatch)
	if err != nil {
		return nil, err
	}
	if err := a.s.mayActAsNode(ctx, pb.BlobGC_Report_FullMethodName, req.NodeId); err != nil {
		return nil, err
	}
	return leaderCall[pb.ReportResponse](a.s, ctx, pb.BlobGC_Report_FullMethodName, req, func(ctx context.Context, ss *session) (*pb.ReportResponse, error) {
		done := a.s.reports.begin(req.NodeId)
		defer done()
		if err := a.s.fsm.AdmitsNode(req.NodeId); err != nil {
			return nil, domainError(err) // no log entry for a node that cannot be admitted
		}
		if req.Kind == pb.ReportKind_REPORT_KIND_DELTA {
			if resp, err, answered := a.s.precheckDelta(req); answered {
				return resp, err
			}
		}
		res, err := a.s.propose(ctx, ss, rep)
		if err != nil {
			return nil, err
		}
		if res.Err != nil {
			if res.Err.Code == fsm.CodeFailedPrecondition && req.Kind == pb.ReportKind_REPORT_KIND_DELTA {
				return nil, a.s.fullReportRequired(req, res.Err)
			}
			return nil, domainError(res.Err)
		}
		a.s.metrics.reports.WithLabelValues(strings.ToLower(strings.TrimPrefix(req.Kind.String(), "REPORT_KIND_"))).Inc()
		return &pb.ReportResponse{AppliedIndex: res.Index, Seq: req.Seq, Duplicate: res.Duplicate}, nil
	})
}

// inflight counts the reports being proposed per node on this leader.
type inflight struct {
	mu sync.Mutex
	n  map[string]int
}

// begin registers a report of node and returns its end function.
func (f *inflight) begin(node string) func() {
	f.mu.Lock()
	if f.n == nil {
		f.n = map[string]int{}
	}
	f.n[node]++
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		if f.n[node]--; f.n[node] == 0 {
			delete(f.n, node)
		}
		f.mu.Unlock()
	}
}

func (f *inflight) only(node string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[node] == 1
}

// precheckDelta answers a delta report that the state machine would refuse
// (sequence gap, no full report yet) or ignore (duplicate) without writing it
// to the log. It only decides when this is the node's one report in flight on
// the leader: then the leader's applied state holds the node's latest seq.
// Otherwise the state machine decides at apply time.
func (s *Server) precheckDelta(req *pb.ReportRequest) (*pb.ReportResponse, error, bool) {
	if !s.reports.only(req.NodeId) {
		return nil, nil, false
	}
	seq, ok := s.fsm.NodeSeq(req.NodeId)
	switch {
	case !ok:
		return nil, s.fullReportRequired(req, &fsm.Error{Code: fsm.CodeFailedPrecondition,
			Message: fmt.Sprintf("delta seq %d from node %q which has no report: send a full report", req.Seq, req.NodeId)}), true
	case req.Seq <= seq:
		return &pb.ReportResponse{AppliedIndex: s.fsm.AppliedIndex(), Seq: req.Seq, Duplicate: true}, nil, true
	case req.Seq != seq+1:
		return nil, s.fullReportRequired(req, &fsm.Error{Code: fsm.CodeFailedPrecondition,
			Message: fmt.Sprintf("delta seq %d from node %q after seq %d: gap, send a full report", req.Seq, req.NodeId, seq)}), true
	}
	return nil, nil, false
}

// fullReportRequired builds the FailedPrecondition of a delta with a
// sequence gap, with the sequence the cluster expected.
func (s *Server) fullReportRequired(req *pb.ReportRequest, e *fsm.Error) error {
	var expected uint64
	if seq, ok := s.fsm.NodeSeq(req.NodeId); ok {
		expected = seq + 1
	}
	st, err := status.New(codes.FailedPrecondition, e.Message).WithDetails(&pb.FullReportRequired{ExpectedSeq: expected, GotSeq: req.Seq})
	if err != nil {
		return status.Error(codes.FailedPrecondition, e.Message)
	}
	return st.Err()
}

func (a *api) DeregisterNode(ctx context.Context, req *pb.DeregisterNodeRequest) (*pb.WriteResponse, error) {
	if err := validateNodeID(req.NodeId); err != nil {
		return nil, err
	}
	if err := a.s.mayActAsNode(ctx, pb.BlobGC_DeregisterNode_FullMethodName, req.NodeId); err != nil {
		return nil, err
	}
	return leaderCall[pb.WriteResponse](a.s, ctx, pb.BlobGC_DeregisterNode_FullMethodName, req, func(ctx context.Context, ss *session) (*pb.WriteResponse, error) {
		res, err := a.s.apply(ctx, ss, &fsmpb.DeregisterNode{NodeId: req.NodeId})
		if err != nil {
			return nil, err
		}
		return &pb.WriteResponse{AppliedIndex: res.Index, Changed: int64(res.Changed)}, nil
	})
}

func (a *api) RunCycle(ctx context.Context, req *pb.RunCycleRequest) (*pb.CycleResult, error) {
	if err := fsm.ValidateRequestID("request_id", req.RequestId); err != nil {
		return nil, domainError(err)
	}
	return leaderCall[pb.CycleResult](a.s, ctx, pb.BlobGC_RunCycle_FullMethodName, req, func(ctx context.Context, ss *session) (*pb.CycleResult, error) {
		if req.DryRun {
			if err := a.s.linearize(ctx, ss); err != nil {
				return nil, err
			}
			now, _ := ss.now()
			return cycleResult(a.s.fsm.DryRunCycle(now), true, a.s.repl.Index()), nil
		}
		var idle *fsm.CycleResult
		noop := func() (ok bool) {
			now, _ := ss.now()
			idle, ok = a.s.fsm.IdleCycle(now)
			return ok
		}
		if ok, err := a.s.answeredIfNoop(ctx, ss, noop); err != nil {
			return nil, err
		} else if ok {
			a.s.repl.noteCycleResult(idle)
			return cycleResult(idle, false, a.s.repl.Index()), nil
		}
		res, err := a.s.runCycle(ctx, ss, req.RequestId)
		if err != nil {
			return nil, err
		}
		if res.Cycle == nil {
			return nil, status.Error(codes.Internal, "cycle applied without a result")
		}
		out := cycleResult(res.Cycle, false, res.Index)
		out.Duplicate = res.Duplicate
		return out, nil
	})
}

func (a *api) PruneStaleNodes(ctx context.Context, req *pb.PruneStaleNodesRequest) (*pb.PruneStaleNodesResponse, error) {
	return leaderCall[pb.PruneStaleNodesResponse](a.s, ctx, pb.BlobGC_PruneStaleNodes_FullMethodName, req, func(ctx context.Context, ss *session) (*pb.PruneStaleNodesResponse, error) {
		res, err := a.s.apply(ctx, ss, &fsmpb.PruneStaleNodes{})
		if err != nil {
			return nil, err
		}
		return &pb.PruneStaleNodesResponse{Pruned: res.Pruned, AppliedIndex: res.Index}, nil
	})
}

func (a *api) SetConfig(ctx context.Context, req *pb.SetConfigRequest) (*pb.Config, error) {
	sc, any, err := setConfigCommand(req)
	if err != nil {
		return nil, err
	}
	if !any {
		return nil, invalidf("set at least one field")
	}
	// Checked against the current config here for a clear early answer; the
	// state machine checks again against the config at its point of the log.
	if err := a.s.fsm.Config().Merge(sc).Validate(); err != nil {
		return nil, domainError(err)
	}
	return leaderCall[pb.Config](a.s, ctx, pb.BlobGC_SetConfig_FullMethodName, req, func(ctx context.Context, ss *session) (*pb.Config, error) {
		if _, err := a.s.apply(ctx, ss, sc); err != nil {
			return nil, err
		}
		return configToWire(a.s.fsm.Config()), nil
	})
}

// ---- reads ----

func (a *api) GetStatus(ctx context.Context, req *pb.GetStatusRequest) (*pb.BlobStatus, error) {
	h, err := parseHash("hash", req.Hash)
	if err != nil {
		return nil, err
	}
	return read[pb.BlobStatus](a.s, ctx, pb.BlobGC_GetStatus_FullMethodName, req, req.Consistency, func() (*pb.BlobStatus, error) {
		return blobStatus(a.s.fsm.Blob(h)), nil
	})
}

func (a *api) ListBlobs(ctx context.Context, req *pb.ListBlobsRequest) (*pb.ListBlobsResponse, error) {
	st, err := stateFilter(req.State)
	if err != nil {
		return nil, err
	}
	limit, err := pageSize(req.PageSize)
	if err != nil {
		return nil, err
	}
	after, skip, err := hashToken(req.PageToken)
	if err != nil {
		return nil, err
	}
	return read[pb.ListBlobsResponse](a.s, ctx, pb.BlobGC_ListBlobs_FullMethodName, req, req.Consistency, heavy(a.s.heavy, limit > DefaultPageSize, "ListBlobs", func() (*pb.ListBlobsResponse, error) {
		blobs, more := listAfter(a.s.fsm, st, after, skip, limit)
		out := &pb.ListBlobsResponse{Blobs: make([]*pb.BlobStatus, len(blobs))}
		for i, b := range blobs {
			out.Blobs[i] = blobStatus(b)
		}
		if more && len(blobs) > 0 {
			out.NextPageToken = blobs[len(blobs)-1].Hash.String()
		}
		return out, nil
	}))
}

// listAfter pages through ListBlobs strictly after a token's hash (the fsm
// treats the zero hash as "from the start", so the token's own hash is
// skipped here).
func listAfter(f *fsm.FSM, st fsm.Status, after fsm.Hash, skip bool, limit int) ([]fsm.BlobInfo, bool) {
	if !skip {
		return f.ListBlobs(st, after, limit)
	}
	blobs, more := f.ListBlobs(st, after, limit+1)
	if len(blobs) > 0 && blobs[0].Hash == after {
		blobs = blobs[1:]
	}
	if len(blobs) > limit {
		blobs, more = blobs[:limit], true
	}
	return blobs, more
}

func (a *api) ListEligible(ctx context.Context, req *pb.ListEligibleRequest) (*pb.ListEligibleResponse, error) {
	limit, err := pageSize(req.PageSize)
	if err != nil {
		return nil, err
	}
	after, skip, err := hashToken(req.PageToken)
	if err != nil {
		return nil, err
	}
	return read[pb.ListEligibleResponse](a.s, ctx, pb.BlobGC_ListEligible_FullMethodName, req, req.Consistency, heavy(a.s.heavy, limit > DefaultPageSize, "ListEligible", func() (*pb.ListEligibleResponse, error) {
		blobs, more := listAfter(a.s.fsm, fsm.StatusMarked, after, skip, limit)
		out := &pb.ListEligibleResponse{Hashes: make([][]byte, len(blobs))}
		for i := range blobs {
			out.Hashes[i] = blobs[i].Hash[:]
		}
		if more && len(blobs) > 0 {
			out.NextPageToken = blobs[len(blobs)-1].Hash.String()
		}
		return out, nil
	}))
}

func (a *api) GetStats(ctx context.Context, req *pb.GetStatsRequest) (*pb.Stats, error) {
	return read[pb.Stats](a.s, ctx, pb.BlobGC_GetStats_FullMethodName, req, req.Consistency, func() (*pb.Stats, error) {
		c := a.s.fsm.Counts()
		lc := a.s.repl.LastCycle()
		return &pb.Stats{
			Active: int64(c.Active), Pinned: int64(c.Pinned), Unreferenced: int64(c.Unreferenced),
			Marked: int64(c.Marked), Deleting: int64(c.Deleting), Collected: int64(c.Collected),
			Known: int64(c.Known), DanglingRefs: int64(c.DanglingRefs),
			NodesReporting: int64(c.NodesReporting), NodesStale: int64(c.NodesStale),
			ClusterTimeNs: a.s.fsm.ClusterTime(), AppliedIndex: a.s.fsm.AppliedIndex(),
			LastCycleNs: lc.time, LastCycleNewlyMarked: int64(lc.newlyMarked), LastCycleEligible: int64(lc.eligible), LastCycleSkipped: lc.skipped,
		}, nil
	})
}

func (a *api) ListNodes(ctx context.Context, req *pb.ListNodesRequest) (*pb.ListNodesResponse, error) {
	limit, err := pageSize(req.PageSize)
	if err != nil {
		return nil, err
	}
	after, err := nodeToken(req.PageToken)
	if err != nil {
		return nil, err
	}
	return read[pb.ListNodesResponse](a.s, ctx, pb.BlobGC_ListNodes_FullMethodName, req, req.Consistency, heavy(a.s.heavy, limit > DefaultPageSize, "ListNodes", func() (*pb.ListNodesResponse, error) {
		nodes, more := a.s.fsm.NodesPage(after, limit)
		out := &pb.ListNodesResponse{Nodes: make([]*pb.NodeInfo, len(nodes))}
		for i, n := range nodes {
			out.Nodes[i] = &pb.NodeInfo{Id: n.ID, LastReportNs: n.LastReport, LastReportWallNs: n.LastWall,
				Seq: n.Seq, Active: int64(n.Active), Pinned: int64(n.Pinned), Stale: n.Stale}
		}
		if more && len(nodes) > 0 {
			out.NextPageToken = hex.EncodeToString([]byte(nodes[len(nodes)-1].ID))
		}
		return out, nil
	}))
}

func (a *api) History(ctx context.Context, req *pb.HistoryRequest) (*pb.HistoryResponse, error) {
	limit, err := pageSize(req.PageSize)
	if err != nil {
		return nil, err
	}
	after, err := seqToken(req.PageToken)
	if err != nil {
		return nil, err
	}
	return read[pb.HistoryResponse](a.s, ctx, pb.BlobGC_History_FullMethodName, req, req.Consistency, heavy(a.s.heavy, limit > DefaultPageSize, "History", func() (*pb.HistoryResponse, error) {
		events, more := a.s.fsm.History(after, limit)
		out := &pb.HistoryResponse{Events: make([]*pb.HistoryEvent, len(events))}
		for i, e := range events {
			out.Events[i] = &pb.HistoryEvent{Seq: e.Seq, TimeNs: e.Time, WallTimeNs: e.WallTime,
				NewlyMarked: hashesToWire(e.NewlyMarked), EligibleCount: int64(e.EligibleCount),
				Preserved: int64(e.Preserved), NodesReporting: int64(e.NodesReporting), Skipped: e.Skipped, RunBy: e.RunBy}
		}
		if more && len(events) > 0 {
			out.NextPageToken = strconv.FormatUint(events[len(events)-1].Seq, 10)
		}
		return out, nil
	}))
}

func (a *api) GetConfig(ctx context.Context, req *pb.GetConfigRequest) (*pb.Config, error) {
	return read[pb.Config](a.s, ctx, pb.BlobGC_GetConfig_FullMethodName, req, req.Consistency, func() (*pb.Config, error) {
		return configToWire(a.s.fsm.Config()), nil
	})
}

func (a *api) Digest(ctx context.Context, req *pb.DigestRequest) (*pb.DigestResponse, error) {
	return heavy(a.s.heavy, true, "Digest", func() (*pb.DigestResponse, error) {
		idx, d := a.s.fsm.Digest()
		return &pb.DigestResponse{ServerId: a.s.cfg.ID, AppliedIndex: idx, Digest: d[:]}, nil
	})()
}

// ---- cluster operations ----

func (a *api) Members(ctx context.Context, req *pb.MembersRequest) (*pb.MembersResponse, error) {
	if hasMD(ctx, MemberSelfKey) {
		return &pb.MembersResponse{Members: []*pb.Member{a.s.selfMember(nil)}, Term: a.s.raft.CurrentTerm()}, nil
	}
	return leaderCall[pb.MembersResponse](a.s, ctx, pb.BlobGC_Members_FullMethodName, req, func(ctx context.Context, ss *session) (*pb.MembersResponse, error) {
		return a.s.members(ctx)
	})
}

// selfMember describes this server as it sees itself.
func (s *Server) selfMember(srv *raft.Server) *pb.Member {
	st := s.raft.State()
	m := &pb.Member{
		Id:           s.cfg.ID,
		Address:      s.addr,
		State:        strings.ToLower(st.String()),
		Voter:        true,
		CommitIndex:  s.raft.CommitIndex(),
		AppliedIndex: s.repl.Index(),
		Leader:       st == raft.Leader,
	}
	switch lc := s.raft.LastContact(); {
	case st == raft.Leader:
		m.LastContactMs = 0
	case lc.IsZero():
		m.LastContactMs = -1
	default:
		m.LastContactMs = time.Since(lc).Milliseconds()
	}
	if srv != nil {
		m.Voter = srv.Suffrage == raft.Voter
	}
	return m
}

// members lists the raft configuration, asking each member about itself
// (state, last contact with the leader, indexes) in parallel.
func (s *Server) members(ctx context.Context) (*pb.MembersResponse, error) {
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "raft configuration: %v", err)
	}
	servers := cf.Configuration().Servers
	if s.IsLeader() && !s.leaseHolds(ctx) {
		return nil, s.withHint(codes.Unavailable, "leadership not confirmed by a quorum")
	}
	leaderID, leaderAddr := s.Leader()
	out := &pb.MembersResponse{Members: make([]*pb.Member, len(servers)), LeaderId: leaderID, LeaderAddress: leaderAddr, Term: s.raft.CurrentTerm()}
	terms := make([]uint64, len(servers))
	var wg sync.WaitGroup
	for i := range servers {
		srv := servers[i]
		if string(srv.ID) == s.cfg.ID {
			out.Members[i] = s.selfMember(&srv)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &pb.Member{Id: string(srv.ID), Address: string(srv.Address), State: "unknown",
				Voter: srv.Suffrage == raft.Voter, LastContactMs: -1, Leader: string(srv.ID) == leaderID}
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if cc, err := s.conns.get(string(srv.Address)); err == nil {
				resp, err := pb.NewBlobGCClient(cc).Members(metadata.AppendToOutgoingContext(cctx, append(identityMD(ctx), MemberSelfKey, "1")...), &pb.MembersRequest{})
				if err == nil && len(resp.Members) == 1 && resp.Members[0].Id == m.Id {
					r := resp.Members[0]
					m.State, m.LastContactMs, m.CommitIndex, m.AppliedIndex = r.State, r.LastContactMs, r.CommitIndex, r.AppliedIndex
					terms[i] = resp.Term
				}
			}
			out.Members[i] = m
		}()
	}
	wg.Wait()
	// Never two leaders as current: a member of a newer term means this view
	// is outdated; one of an older term that still names itself leader has
	// not heard of this term yet.
	for i, m := range out.Members {
		switch {
		case terms[i] > out.Term:
			return nil, s.withHint(codes.Unavailable, fmt.Sprintf("member %s is in a newer term (%d > %d); retry", m.Id, terms[i], out.Term))
		case terms[i] != 0 && terms[i] < out.Term && m.State == "leader":
			m.State = "stale-leader"
		}
	}
	return out, nil
}

func (s *Server) configServer(id string) (raft.Server, bool, error) {
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return raft.Server{}, false, status.Errorf(codes.Unavailable, "raft configuration: %v", err)
	}
	for _, srv := range cf.Configuration().Servers {
		if string(srv.ID) == id {
			return srv, true, nil
		}
	}
	return raft.Server{}, false, nil
}

func (a *api) AddServer(ctx context.Context, req *pb.AddServerRequest) (*pb.MembersResponse, error) {
	if err := ValidateServerID(req.Id); err != nil {
		return nil, invalidf("id: %v", err)
	}
	if err := ValidateServerAddress(req.Address); err != nil {
		return nil, invalidf("address: %v", err)
	}
	if err := a.s.mayAddServer(ctx, req.Id); err != nil {
		return nil, err
	}
	return leaderCall[pb.MembersResponse](a.s, ctx, pb.BlobGC_AddServer_FullMethodName, req, func(ctx context.Context, ss *session) (*pb.MembersResponse, error) {
		var f raft.IndexFuture
		if req.NonVoter {
			f = a.s.raft.AddNonvoter(raft.ServerID(req.Id), raft.ServerAddress(req.Address), 0, a.s.cfg.ApplyTimeout)
		} else {
			f = a.s.raft.AddVoter(raft.ServerID(req.Id), raft.ServerAddress(req.Address), 0, a.s.cfg.ApplyTimeout)
		}
		err := waitFuture(ctx, f)
		if err != nil {
			err = a.s.membershipError(ctx, "add server", err)
		}
		a.s.auditMembership(ctx, []any{"op", "add_server", "id", req.Id, "address", req.Address, "voter", !req.NonVoter}, err)
		if err != nil {
			return nil, err
		}
		a.s.log.Info("server added", "id", req.Id, "address", req.Address, "voter", !req.NonVoter)
		return a.s.members(ctx)
	})
}

func (a *api) RemoveServer(ctx context.Context, req *pb.RemoveServerRequest) (*pb.MembersResponse, error) {
	if req.Id == "" {
		return nil, invalidf("id: required")
	}
	return leaderCall[pb.MembersResponse](a.s, ctx, pb.BlobGC_RemoveServer_FullMethodName, req, func(ctx context.Context, ss *session) (*pb.MembersResponse, error) {
		if _, ok, err := a.s.configServer(req.Id); err != nil {
			return nil, err
		} else if !ok {
			return nil, status.Errorf(codes.NotFound, "server %q is not a member", req.Id)
		}
		err := waitFuture(ctx, a.s.raft.RemoveServer(raft.ServerID(req.Id), 0, a.s.cfg.ApplyTimeout))
		if err != nil {
			err = a.s.membershipError(ctx, "remove server", err)
		}
		a.s.auditMembership(ctx, []any{"op", "remove_server", "id", req.Id}, err)
		if err != nil {
			return nil, err
		}
		a.s.log.Info("server removed", "id", req.Id)
		return a.s.members(ctx)
	})
}

func (s *Server) membershipError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return ctxError(ctx, what+"; outcome unknown")
	}
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return s.applyError(err)
	}
	if strings.Contains(err.Error(), "configuration changed") || strings.Contains(err.Error(), "in progress") {
		return status.Errorf(codes.Aborted, "%s: %v; retry", what, err)
	}
	return status.Errorf(codes.FailedPrecondition, "%s: %v", what, err)
}

func (a *api) TransferLeadership(ctx context.Context, req *pb.TransferLeadershipRequest) (*pb.TransferLeadershipResponse, error) {
	return leaderCall[pb.TransferLeadershipResponse](a.s, ctx, pb.BlobGC_TransferLeadership_FullMethodName, req, func(ctx context.Context, ss *session) (*pb.TransferLeadershipResponse, error) {
		var f raft.Future
		if req.TargetId != "" {
			if req.TargetId == a.s.cfg.ID {
				return &pb.TransferLeadershipResponse{LeaderId: a.s.cfg.ID, LeaderAddress: a.s.addr}, nil
			}
			srv, ok, err := a.s.configServer(req.TargetId)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, status.Errorf(codes.NotFound, "target_id: server %q is not a member", req.TargetId)
			}
			if srv.Suffrage != raft.Voter {
				return nil, invalidf("target_id: server %q is not a voter", req.TargetId)
			}
			f = a.s.raft.LeadershipTransferToServer(srv.ID, srv.Address)
		} else {
			f = a.s.raft.LeadershipTransfer()
		}
		err := waitFuture(ctx, f)
		switch {
		case err != nil && ctx.Err() != nil:
			err = ctxError(ctx, "transferring leadership")
		case err != nil:
			err = status.Errorf(codes.FailedPrecondition, "leadership transfer: %v", err)
		}
		a.s.auditMembership(ctx, []any{"op", "transfer_leadership", "target", req.TargetId}, err)
		if err != nil {
			return nil, err
		}
		// Wait until this server knows the new leader.
		for {
			id, addr := a.s.Leader()
			if id != "" && id != a.s.cfg.ID && (req.TargetId == "" || id == req.TargetId) {
				return &pb.TransferLeadershipResponse{LeaderId: id, LeaderAddress: addr}, nil
			}
			select {
			case <-ctx.Done():
				return nil, ctxError(ctx, fmt.Sprintf("waiting for the new leader (transfer started, now %q)", id))
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
}
