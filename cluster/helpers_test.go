package cluster_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// hashN returns a deterministic test hash.
func hashN(n int) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h := sha256.Sum256(b[:])
	return h[:]
}

func hashes(from, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = hashN(from + i)
	}
	return out
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// result pairs a call's value and error: try(call()).must(t).
type result[T any] struct {
	v   T
	err error
}

func try[T any](v T, err error) result[T] { return result[T]{v, err} }

func (r result[T]) must(t testing.TB) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

// state reads a blob's state from s: stale reads answer from s itself.
func state(t testing.TB, c *clustertest.Cluster, s *cluster.Server, h []byte, cons pb.Consistency) pb.BlobState {
	t.Helper()
	st := try(c.Client(s).GetStatus(ctxT(t, testtiming.Hang()), &pb.GetStatusRequest{Hash: h, Consistency: cons})).must(t)
	return st.State
}

// retryWrite repeats a write until it succeeds, for steps that run across a
// leader change (writes are idempotent).
func retryWrite(t testing.TB, timeout time.Duration, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), testtiming.Scaled(3*time.Second))
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			t.Fatalf("write: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("write did not succeed within %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// untilOneLeader runs scenario on a fresh cluster, and again (at most three
// runs in all) when it returns false because raft elected another leader
// during the run: its assertions assume one leader throughout, which a
// loaded machine does not guarantee. On the last run last is true and the
// scenario asserts whatever happened.
func untilOneLeader(t *testing.T, scenario func(last bool) bool) {
	t.Helper()
	for run := 1; !scenario(run == 3); run++ {
		t.Logf("leadership changed during run %d; again on a new cluster", run)
	}
}

// stillLeads reports whether s leads in the given term.
func stillLeads(s *cluster.Server, term uint64) bool {
	return s.IsLeader() && s.Raft().CurrentTerm() == term
}

func codeOf(err error) string { return status.Code(err).String() }

func defaultGC() fsm.Config { return fsm.DefaultConfig() }

func raftAddr(s *cluster.Server) raft.ServerAddress { return raft.ServerAddress(s.Addr()) }
