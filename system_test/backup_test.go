package systemtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A snapshot saved from a running cluster restores into a new cluster of
// new servers (new data dirs, new addresses) with the same state digest at
// the same index, and the new cluster's time continues from the saved
// cluster time.
func TestSnapshotSaveRestore(t *testing.T) {
	t.Parallel()
	pc := startProcs(t, 3, testTimings)
	c := pc.newClient()
	ctx := ctxT(t, 2*time.Minute)
	if _, err := c.RegisterBlobs(ctx, hashesN(0, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pin(ctx, hashesN(0, 2)); err != nil {
		t.Fatal(err)
	}
	if err := c.Reporter("vm-1").Full(ctx, hashesN(10, 20), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RunCycle(ctx, false); err != nil { // 78 blobs become unreferenced
		t.Fatal(err)
	}
	pc.waitConverged(c)

	file := filepath.Join(t.TempDir(), "backup.snap")
	servers := "--servers=" + strings.Join(pc.addrs(), ",")
	if _, stderr, err := runBlobgc(t, "snapshot", "save", file, servers); err != nil {
		t.Fatalf("snapshot save: %v\n%s", err, stderr)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, mode %v", err, fi.Mode())
	}
	stdout, stderr, err := runBlobgc(t, "snapshot", "inspect", file, "-o", "json")
	if err != nil {
		t.Fatalf("snapshot inspect: %v\n%s", err, stderr)
	}
	var info struct {
		Index         uint64         `json:"index"`
		ClusterTimeNs int64          `json:"cluster_time_ns"`
		ChecksumOK    bool           `json:"checksum_ok"`
		Blobs         map[string]int `json:"blobs"`
		Nodes         []string       `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(stdout), &info); err != nil {
		t.Fatalf("inspect output %q: %v", stdout, err)
	}
	if !info.ChecksumOK || info.Blobs["pinned"] != 2 || info.Blobs["active"] != 20 || info.Blobs["unreferenced"] != 78 ||
		len(info.Nodes) != 1 || info.Nodes[0] != "vm-1" || info.ClusterTimeNs == 0 {
		t.Fatalf("inspect shows %+v", info)
	}
	leader := pc.waitLeader(c)
	want, err := c.DigestOf(ctx, leader)
	if err != nil {
		t.Fatal(err)
	}
	if want.AppliedIndex != info.Index {
		t.Fatalf("saved index %d, but the cluster is at %d with no writes since", info.Index, want.AppliedIndex)
	}
	for i := range pc.procs {
		pc.kill(i)
	}

	// A new cluster of three new servers, each restored from the file.
	nc := newProcs(t, 3, testTimings)
	var peers []string
	for _, p := range nc.procs {
		peers = append(peers, p.id+"="+p.addr)
	}
	for _, p := range nc.procs {
		if _, stderr, err := runBlobgc(t, "snapshot", "restore", file, "--data-dir", p.dir, "--id", p.id, "--peers", strings.Join(peers, ",")); err != nil {
			t.Fatalf("restore %s: %v\n%s", p.id, err, stderr)
		}
	}
	if _, stderr, err := runBlobgc(t, "snapshot", "restore", file, "--data-dir", nc.procs[0].dir, "--id", "s1", "--peers", strings.Join(peers, ",")); err == nil || !strings.Contains(stderr, "already exists") {
		t.Fatalf("a second restore into the same data dir: %v\n%s", err, stderr)
	}
	for i := range nc.procs {
		nc.start(i)
	}
	c2 := nc.newClient()
	nc.waitLeader(c2)
	nc.waitConverged(c2)
	for _, p := range nc.procs {
		got, err := c2.DigestOf(ctx, p.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got.AppliedIndex != want.AppliedIndex || string(got.Digest) != string(want.Digest) {
			t.Fatalf("%s after restore: index %d digest %x, want index %d digest %x", p.id, got.AppliedIndex, got.Digest, want.AppliedIndex, want.Digest)
		}
	}
	// Cluster time goes on from the saved time (a new cluster would start at 0).
	st, err := c2.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ClusterTimeNs != info.ClusterTimeNs {
		t.Fatalf("restored cluster time %d, saved %d", st.ClusterTimeNs, info.ClusterTimeNs)
	}
	if _, err := c2.RegisterBlobs(ctx, hashesN(1000, 1)); err != nil {
		t.Fatal(err)
	}
	if st, err = c2.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	if st.ClusterTimeNs < info.ClusterTimeNs || st.AppliedIndex <= info.Index {
		t.Fatalf("after a write on the restored cluster: cluster time %d (saved %d), applied %d (saved %d)", st.ClusterTimeNs, info.ClusterTimeNs, st.AppliedIndex, info.Index)
	}
}
