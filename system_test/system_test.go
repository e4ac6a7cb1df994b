package systemtest

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/client"
)

func hashN(n int) client.Hash {
	var h client.Hash
	binary.BigEndian.PutUint64(h[:8], uint64(n)+1)
	h[31] = 0x5a
	return h
}

func hashesN(from, n int) []client.Hash {
	out := make([]client.Hash, n)
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

// Writes sent to followers apply everywhere; SIGKILL of the leader elects a
// new one and writes continue; the killed server catches up after a restart.
func TestFailoverAndFollowerWrites(t *testing.T) {
	t.Parallel()
	pc := startProcs(t, 3, testTimings)
	all := pc.newClient()
	leader := pc.waitLeader(all)
	var fols []string
	for _, a := range pc.addrs() {
		if a != leader {
			fols = append(fols, a)
		}
	}
	ctx := ctxT(t, 60*time.Second)

	// A client that knows only the followers.
	fc := pc.newClient(fols...)
	if _, err := fc.RegisterBlobs(ctx, hashesN(0, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.Pin(ctx, hashesN(0, 2)); err != nil {
		t.Fatal(err)
	}
	if err := fc.Reporter("vm-1").Full(ctx, hashesN(2, 3), nil); err != nil {
		t.Fatal(err)
	}
	pc.waitConverged(all)
	for _, a := range pc.addrs() {
		one := pc.newClient(a)
		st, err := one.Status(ctx, hashN(0), client.Stale())
		if err != nil || st.State != blobgcv1.BlobState_BLOB_STATE_PINNED {
			t.Fatalf("stale read from %s: %v %v", a, st, err)
		}
	}

	// SIGKILL the leader.
	li := pc.index(leader)
	pc.kill(li)
	for i := 10; i < 20; i++ {
		if _, err := all.Pin(ctx, hashesN(i, 1)); err != nil {
			t.Fatalf("pin %d after the leader was killed: %v", i, err)
		}
	}
	newLeader := pc.waitLeader(all)
	if newLeader == leader {
		t.Fatalf("leader still %s after SIGKILL", leader)
	}
	stats, err := all.Stats(ctx)
	if err != nil || stats.Known != 20 || stats.Pinned != 12 {
		t.Fatalf("stats after failover: %v %v", stats, err)
	}

	// The killed server comes back and catches up.
	pc.start(li)
	pc.waitConverged(all)
	st, err := pc.newClient(leader).Status(ctx, hashN(19), client.Stale())
	if err != nil || st.State != blobgcv1.BlobState_BLOB_STATE_PINNED {
		t.Fatalf("restarted server's view of hash 19: %v %v", st, err)
	}
}

// Every acknowledged write survives SIGKILL of every server and a restart;
// SIGTERM shuts a server down cleanly.
func TestRestartAllKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	pc := startProcs(t, 3, testTimings)
	c := pc.newClient()
	pc.waitLeader(c)
	ctx := ctxT(t, 90*time.Second)

	var acked []client.Hash
	for i := 0; i < 20; i++ {
		hs := hashesN(i*50, 50)
		if _, err := c.RegisterBlobs(ctx, hs); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, hs...)
	}
	if _, err := c.Pin(ctx, acked[:7]); err != nil {
		t.Fatal(err)
	}
	r := c.Reporter("vm-1")
	if err := r.Full(ctx, acked[100:300], acked[300:310]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetConfig(ctx, &blobgcv1.SetConfigRequest{GracePeriodNs: ptr(int64(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	before, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// A graceful stop of one server (exit status 0), SIGKILL of the others.
	leader := pc.waitLeader(c)
	if err := pc.terminate(pc.index(leader)); err != nil {
		t.Fatalf("SIGTERM: exit %v, want a clean exit", err)
	}
	for i := range pc.procs {
		pc.kill(i)
	}
	for i := range pc.procs {
		pc.start(i)
	}
	pc.waitLeader(c)
	after, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Known != before.Known || after.Pinned != before.Pinned || after.NodesReporting != 1 || after.AppliedIndex < before.AppliedIndex {
		t.Fatalf("after restart %v, before %v", after, before)
	}
	for i, h := range acked {
		st, err := c.Status(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Registered {
			t.Fatalf("acknowledged hash %d lost: %v", i, st)
		}
		if i < 7 && !st.CoordinatorPin {
			t.Fatalf("acknowledged pin %d lost: %v", i, st)
		}
	}
	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Active != 200 || nodes[0].Pinned != 10 || nodes[0].Seq != r.Seq() {
		t.Fatalf("nodes after restart: %v %v", nodes, err)
	}
	cfg, err := c.GetConfig(ctx)
	if err != nil || cfg.GracePeriodNs != int64(time.Hour) {
		t.Fatalf("config after restart: %v %v", cfg, err)
	}
	// A delta continues the kept sequence.
	if err := r.Delta(ctx, acked[310:311], nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if r.Seq() != 2 {
		t.Fatalf("reporter seq %d, want 2 (a delta, not a fallback)", r.Seq())
	}
	pc.waitConverged(c)
}

func ptr[T any](v T) *T { return &v }

// Bad input over the wire gets the right code and changes nothing.
func TestBadInputOverTheWire(t *testing.T) {
	t.Parallel()
	pc := startProcs(t, 3, testTimings)
	c := pc.newClient()
	leader := pc.waitLeader(c)
	ctx := ctxT(t, 60*time.Second)
	if _, err := c.RegisterBlobs(ctx, hashesN(0, 3)); err != nil {
		t.Fatal(err)
	}
	if err := c.Reporter("vm-1").Full(ctx, hashesN(0, 1), nil); err != nil {
		t.Fatal(err)
	}
	pc.waitConverged(c)
	digest := func() string {
		d, err := c.DigestOf(ctx, leader)
		if err != nil {
			t.Fatal(err)
		}
		return string(d.Digest)
	}
	before := digest()

	// A raw connection to a follower: the client library would refuse some
	// of these before sending.
	var fol string
	for _, a := range pc.addrs() {
		if a != leader {
			fol = a
		}
	}
	cc, err := grpc.NewClient("passthrough:///"+fol, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	api := blobgcv1.NewBlobGCClient(cc)
	h := hashN(0)
	big := make([][]byte, client.MaxBatch+1)
	for i := range big {
		hh := hashN(1000 + i)
		big[i] = hh[:]
	}
	check := func(name string, err error, want codes.Code) {
		t.Helper()
		if status.Code(err) != want {
			t.Errorf("%s: %v, want %v", name, err, want)
		} else if msg := status.Convert(err).Message(); len(msg) < 10 {
			t.Errorf("%s: message %q says too little", name, msg)
		}
	}
	_, err = api.Pin(ctx, &blobgcv1.HashesRequest{Hashes: [][]byte{h[:31]}})
	check("short hash", err, codes.InvalidArgument)
	_, err = api.RegisterBlobs(ctx, &blobgcv1.HashesRequest{Hashes: [][]byte{append(h[:], 0)}})
	check("long hash", err, codes.InvalidArgument)
	_, err = api.Pin(ctx, &blobgcv1.HashesRequest{})
	check("empty batch", err, codes.InvalidArgument)
	_, err = api.RegisterBlobs(ctx, &blobgcv1.HashesRequest{Hashes: big})
	check("oversized batch", err, codes.ResourceExhausted)
	_, err = api.Report(ctx, &blobgcv1.ReportRequest{NodeId: "vm-1", Kind: blobgcv1.ReportKind_REPORT_KIND_FULL, Seq: 5, Active: big})
	check("oversized report", err, codes.ResourceExhausted)
	_, err = api.Report(ctx, &blobgcv1.ReportRequest{NodeId: "vm-1", Kind: blobgcv1.ReportKind_REPORT_KIND_DELTA, Seq: 9, Active: [][]byte{h[:]}})
	check("delta with a gap", err, codes.FailedPrecondition)
	if frr, ok := client.FullReportRequired(err); !ok || frr.ExpectedSeq != 2 || frr.GotSeq != 9 {
		t.Errorf("gap detail: %v %v", frr, ok)
	}
	_, err = api.Report(ctx, &blobgcv1.ReportRequest{NodeId: "vm-1", Kind: blobgcv1.ReportKind(42), Seq: 2})
	check("unknown report kind", err, codes.InvalidArgument)
	_, err = api.ListBlobs(ctx, &blobgcv1.ListBlobsRequest{State: blobgcv1.BlobState(99)})
	check("unknown blob state", err, codes.InvalidArgument)
	_, err = api.SetConfig(ctx, &blobgcv1.SetConfigRequest{GracePeriodNs: ptr(int64(-1))})
	check("negative grace period", err, codes.InvalidArgument)
	_, err = api.SetConfig(ctx, &blobgcv1.SetConfigRequest{MaxEligibleFraction: ptr(1.5)})
	check("fraction over 1", err, codes.InvalidArgument)
	sp := blobgcv1.StalePolicy(7)
	_, err = api.SetConfig(ctx, &blobgcv1.SetConfigRequest{StalePolicy: &sp})
	check("unknown stale policy", err, codes.InvalidArgument)
	_, err = api.GetStatus(ctx, &blobgcv1.GetStatusRequest{Hash: h[:5]})
	check("status of a short hash", err, codes.InvalidArgument)

	if after := digest(); after != before {
		t.Fatal("bad input changed the state digest")
	}
}
