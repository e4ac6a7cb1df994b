package systemtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/client"
)

// Two of three servers are lost for good: the survivor, started once with
// --recover-from-peers naming only itself, becomes a one-server cluster with
// every acknowledged write and takes writes again. While a quorum of the old
// configuration still answers, the same start is refused.
func TestRecoverFromLostQuorum(t *testing.T) {
	t.Parallel()
	pc := startProcs(t, 3, testTimings)
	c := pc.newClient()
	ctx := ctxT(t, 2*time.Minute)
	if _, err := c.RegisterBlobs(ctx, hashesN(0, 50)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pin(ctx, hashesN(0, 5)); err != nil {
		t.Fatal(err)
	}
	pc.waitConverged(c)

	s1 := pc.procs[0]
	peersFile := filepath.Join(t.TempDir(), "peers.json")
	if err := os.WriteFile(peersFile, []byte(fmt.Sprintf(`[{"id": %q, "address": %q}]`, s1.id, s1.addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	normal := s1.args
	recoverArgs := append(append([]string(nil), normal...), "--recover-from-peers", peersFile, "--recover-probe-timeout=3s")

	// s2 and s3 still answer: refused, and nothing changes.
	pc.kill(0)
	s1.args = recoverArgs
	pc.start(0)
	select {
	case <-s1.done:
	case <-time.After(time.Minute):
		t.Fatalf("%s started with --recover-from-peers while a quorum answers", s1.id)
	}
	pc.mu.Lock()
	exitErr := s1.err
	pc.mu.Unlock()
	s1.cmd = nil
	logPath := filepath.Join(s1.dir, "..", s1.id+".log")
	log, _ := os.ReadFile(logPath)
	if exitErr == nil || !bytes.Contains(log, []byte("refusing to recover")) {
		t.Fatalf("recovery with a reachable quorum: exit %v, log:\n%s", exitErr, log)
	}
	s1.args = normal
	pc.start(0)
	pc.waitLeader(c)
	pc.waitConverged(c)

	// Lose s2 and s3 for good, then recover s1.
	pc.kill(1)
	pc.kill(2)
	pc.kill(0)
	s1.args = recoverArgs
	pc.start(0)
	one := pc.newClient(s1.addr)
	if _, err := one.RegisterBlobs(ctx, hashesN(50, 10)); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	if _, err := one.Pin(ctx, hashesN(50, 1)); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	for i := 0; i < 60; i++ {
		st, err := one.Status(ctx, hashN(i))
		if err != nil {
			t.Fatal(err)
		}
		want := blobgcv1.BlobState_BLOB_STATE_ACTIVE
		if i < 5 || i == 50 {
			want = blobgcv1.BlobState_BLOB_STATE_PINNED
		}
		if st.State != want {
			t.Fatalf("blob %d after recovery: %v, want %v", i, st.State, want)
		}
	}
	m, err := one.Members(ctx)
	if err != nil || len(m.Members) != 1 || m.Members[0].Id != s1.id {
		t.Fatalf("members after recovery: %v %v", m, err)
	}
	log, _ = os.ReadFile(logPath)
	if !bytes.Contains(log, []byte("RECOVERED")) || !strings.Contains(string(log), `unreachable="s2,s3"`) && !strings.Contains(string(log), `unreachable="s3,s2"`) {
		t.Fatalf("no loud log line saying what the recovery did:\n%s", log)
	}

	// Restarting with the flag still set does nothing more.
	if err := pc.terminate(0); err != nil {
		t.Fatalf("exit: %v", err)
	}
	pc.start(0)
	if _, err := one.RegisterBlobs(ctx, []client.Hash{hashN(100)}); err != nil {
		t.Fatalf("write after a second start with the recovery flag: %v", err)
	}
}
