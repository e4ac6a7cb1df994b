package client

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
)

func reports(f *fakeServer) []*blobgcv1.ReportRequest {
	var out []*blobgcv1.ReportRequest
	for _, r := range f.requests() {
		if rr, ok := r.(*blobgcv1.ReportRequest); ok {
			out = append(out, rr)
		}
	}
	return out
}

// The request shapes a Reporter sends; the semantics against a real cluster
// are tested in cluster_test.go.
func TestReporterChunksLargeFullReport(t *testing.T) {
	f := startFake(t)
	c := newTestClient(t, []string{f.addr})
	r := c.Reporter("vm-1")
	active, pinned := hashesN(0, 2*FullChunk+10), hashesN(1_000_000, 7)
	if err := r.Full(context.Background(), active, pinned); err != nil {
		t.Fatal(err)
	}
	reqs := reports(f)
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 chunks", len(reqs))
	}
	var na, np int
	for i, q := range reqs {
		if q.Kind != blobgcv1.ReportKind_REPORT_KIND_FULL_CHUNK || q.Chunk.GetIndex() != uint32(i) ||
			q.Chunk.GetReportId() != reqs[0].Chunk.GetReportId() || q.Chunk.GetReportId() == 0 ||
			q.Chunk.GetLast() != (i == 2) || q.Seq != 1 || q.NodeId != "vm-1" {
			t.Fatalf("chunk %d: %v", i, q)
		}
		if n := len(q.Active) + len(q.Pinned); n > FullChunk {
			t.Fatalf("chunk %d holds %d hashes, over %d", i, n, FullChunk)
		}
		na += len(q.Active)
		np += len(q.Pinned)
	}
	if na != len(active) || np != len(pinned) {
		t.Fatalf("chunks carry %d active and %d pinned, want %d and %d", na, np, len(active), len(pinned))
	}
	if r.Seq() != 1 {
		t.Fatalf("Seq() = %d, want 1", r.Seq())
	}
	// A second full report uses a new report id.
	if err := r.Full(context.Background(), active, nil); err != nil {
		t.Fatal(err)
	}
	if reqs2 := reports(f); reqs2[3].Chunk.GetReportId() == reqs[0].Chunk.GetReportId() || reqs2[3].Seq != 2 {
		t.Fatalf("second report: %v", reqs2[3])
	}
}

func TestReporterFallsBackToFull(t *testing.T) {
	f := startFake(t)
	f.answer = func(_ string, _ int, m proto.Message) error {
		if q := m.(*blobgcv1.ReportRequest); q.Kind == blobgcv1.ReportKind_REPORT_KIND_DELTA && q.Seq == 3 {
			st, _ := status.New(codes.FailedPrecondition, "gap").WithDetails(&blobgcv1.FullReportRequired{ExpectedSeq: 2, GotSeq: 3})
			return st.Err()
		}
		return nil
	}
	c := newTestClient(t, []string{f.addr})
	r := c.Reporter("vm-1")
	ctx := context.Background()
	// A delta before any full report is sent as a full report.
	if err := r.Delta(ctx, hashesN(0, 2), nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Delta(ctx, hashesN(2, 1), hashesN(0, 1), hashesN(10, 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Delta(ctx, hashesN(3, 1), nil, nil, hashesN(10, 1)); err != nil {
		t.Fatal(err)
	}
	reqs := reports(f)
	kinds := []blobgcv1.ReportKind{blobgcv1.ReportKind_REPORT_KIND_FULL, blobgcv1.ReportKind_REPORT_KIND_DELTA,
		blobgcv1.ReportKind_REPORT_KIND_DELTA, blobgcv1.ReportKind_REPORT_KIND_FULL}
	seqs := []uint64{1, 2, 3, 3}
	if len(reqs) != len(kinds) {
		t.Fatalf("%d requests: %v", len(reqs), reqs)
	}
	for i := range reqs {
		if reqs[i].Kind != kinds[i] || reqs[i].Seq != seqs[i] {
			t.Fatalf("request %d: kind %v seq %d, want %v seq %d", i, reqs[i].Kind, reqs[i].Seq, kinds[i], seqs[i])
		}
	}
	last := reqs[3]
	got, _ := fromBytes(last.Active)
	slices.SortFunc(got, Hash.Compare) // a report's lists are sets
	want := []Hash{hashN(1), hashN(2), hashN(3)}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || len(last.Pinned) != 0 {
		t.Fatalf("fallback full report: active %v pinned %d, want %v and none", got, len(last.Pinned), want)
	}
	if r.Seq() != 3 {
		t.Fatalf("Seq() = %d, want 3", r.Seq())
	}
}

// After a delta whose outcome is unknown, the next report is a full one.
func TestReporterResyncsAfterUnknownOutcome(t *testing.T) {
	f := startFake(t)
	var fail atomic.Bool
	fail.Store(true)
	f.answer = func(_ string, _ int, m proto.Message) error {
		if q := m.(*blobgcv1.ReportRequest); q.Kind == blobgcv1.ReportKind_REPORT_KIND_DELTA && fail.Load() {
			return status.Error(codes.Unavailable, "leadership lost, outcome unknown")
		}
		return nil
	}
	c := newTestClient(t, []string{f.addr}, WithRetryTimeout(50*time.Millisecond))
	r := c.Reporter("vm-1")
	ctx := context.Background()
	if err := r.Full(ctx, hashesN(0, 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Delta(ctx, hashesN(1, 1), nil, nil, nil); status.Code(err) != codes.Unavailable {
		t.Fatalf("delta err = %v, want Unavailable", err)
	}
	fail.Store(false)
	if err := r.Delta(ctx, hashesN(2, 1), nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	reqs := reports(f)
	last := reqs[len(reqs)-1]
	if last.Kind != blobgcv1.ReportKind_REPORT_KIND_FULL || len(last.Active) != 3 || last.Seq != 2 {
		t.Fatalf("after an unknown outcome: %v, want a full report of 3 hashes with seq 2", last)
	}
}

// A chunked report that the cluster refuses midway (another report of the
// node came between the chunks) is sent again with a new report id.
func TestReporterResendsInterruptedChunks(t *testing.T) {
	f := startFake(t)
	var refused atomic.Bool
	f.answer = func(_ string, _ int, m proto.Message) error {
		if q, ok := m.(*blobgcv1.ReportRequest); ok && q.Chunk.GetIndex() == 1 && refused.CompareAndSwap(false, true) {
			return status.Error(codes.FailedPrecondition, "chunk 1 of report: earlier chunks are missing")
		}
		return nil
	}
	c := newTestClient(t, []string{f.addr}, WithChunkSize(10))
	r := c.Reporter("vm-1")
	if err := r.Full(context.Background(), hashesN(0, 25), nil); err != nil {
		t.Fatal(err)
	}
	reqs := reports(f)
	if len(reqs) != 5 {
		t.Fatalf("%d report requests, want 2 + 3", len(reqs))
	}
	first, second := reqs[0].Chunk.GetReportId(), reqs[2].Chunk.GetReportId()
	if first == second || reqs[1].Chunk.GetReportId() != first || reqs[4].Chunk.GetReportId() != second ||
		reqs[2].Chunk.GetIndex() != 0 || !reqs[4].Chunk.GetLast() {
		t.Fatalf("resend: %v", reqs)
	}
	if f.count("ListNodes") != 1 || r.Seq() != 1 {
		t.Fatalf("ListNodes calls %d, seq %d", f.count("ListNodes"), r.Seq())
	}
}
