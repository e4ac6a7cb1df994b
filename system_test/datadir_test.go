package systemtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runBlobgc runs the blobgc binary to completion (at most a minute) and
// returns its exit error and stderr.
func runBlobgc(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, blobgcBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	orphanProof(cmd)
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("blobgc %s did not finish within a minute; stderr:\n%s", strings.Join(args, " "), errb.String())
	}
	return out.String(), errb.String(), err
}

// usedDataDir runs a one-server cluster with some writes (and, if
// snapshot, at least one raft snapshot), stops it and returns its data dir.
func usedDataDir(t *testing.T, snapshot bool) string {
	t.Helper()
	var extra []string
	if snapshot {
		extra = []string{"--snapshot-threshold=4", "--snapshot-interval=100ms", "--trailing-logs=2"}
	}
	pc := startProcs(t, 1, testTimings, extra...)
	c := pc.newClient()
	ctx := ctxT(t, time.Minute)
	for i := 0; i < 20; i++ {
		if _, err := c.RegisterBlobs(ctx, hashesN(i*10, 10)); err != nil {
			t.Fatal(err)
		}
	}
	dir := pc.procs[0].dir
	if snapshot {
		eventually(t, time.Minute, "a raft snapshot", func() bool {
			es, _ := os.ReadDir(filepath.Join(dir, "snapshots"))
			return len(es) > 0
		})
	}
	if err := pc.terminate(0); err != nil {
		t.Fatalf("server exit: %v", err)
	}
	return dir
}

// expectRefusal starts a one-server cluster on dir and expects it to refuse
// with a one-line error naming wantFile.
func expectRefusal(t *testing.T, dir, wantFile, wantText string) {
	t.Helper()
	addr := freeAddr(t)
	_, stderr, err := runBlobgc(t, "server", "--insecure", "--id", "s1", "--data-dir", dir, "--listen", addr, "--peers", "s1="+addr)
	if err == nil {
		t.Fatalf("server started on a damaged data dir; stderr:\n%s", stderr)
	}
	if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
		t.Fatalf("stack dump instead of an error:\n%s", stderr)
	}
	// The --insecure warning is logged at every start; the refusal itself
	// must be one line.
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !strings.Contains(l, "running without TLS (--insecure)") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("want a one-line error, got %d lines:\n%s", len(lines), stderr)
	}
	for _, want := range []string{filepath.Join(dir, wantFile), wantText, "--discard-damaged-state"} {
		if !strings.Contains(lines[0], want) {
			t.Fatalf("error does not mention %q:\n%s", want, stderr)
		}
	}
}

// A damaged raft.db (truncated, zero-length, corrupted) and a raft.db
// missing beside snapshots each stop the server with a one-line error that
// names the file and what to do, never a stack dump or a new bootstrap.
func TestDamagedDataDirRefusesToStart(t *testing.T) {
	dir := usedDataDir(t, false)
	db := filepath.Join(dir, "raft.db")
	orig, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	if len(orig) < 4*page {
		t.Fatalf("raft.db is only %d bytes", len(orig))
	}
	corrupt := append([]byte(nil), orig...)
	// Scribble over the header of every page after the two meta pages.
	for off := 2 * page; off < len(corrupt); off += page {
		copy(corrupt[off:], bytes.Repeat([]byte{0xA5}, 16))
	}
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"truncated", "truncated", orig[:len(orig)/2]},
		{"zero-length", "empty", nil},
		{"corrupted", "corrupt", corrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if err := os.WriteFile(filepath.Join(d, "raft.db"), tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			expectRefusal(t, d, "raft.db", tc.want)
		})
	}

	t.Run("snapshots without a log", func(t *testing.T) {
		d := usedDataDir(t, true)
		if err := os.Remove(filepath.Join(d, "raft.db")); err != nil {
			t.Fatal(err)
		}
		expectRefusal(t, d, "raft.db", "snapshot")
	})
}

// --discard-damaged-state moves the damaged state aside and starts.
func TestDiscardDamagedState(t *testing.T) {
	pc := startProcs(t, 1, testTimings, "--discard-damaged-state")
	c := pc.newClient()
	if _, err := c.RegisterBlobs(ctxT(t, time.Minute), hashesN(0, 1)); err != nil {
		t.Fatal(err)
	}
	pc.kill(0)
	d := pc.procs[0].dir
	if err := os.Truncate(filepath.Join(d, "raft.db"), 0); err != nil {
		t.Fatal(err)
	}
	pc.start(0)
	if _, err := c.RegisterBlobs(ctxT(t, time.Minute), hashesN(1, 1)); err != nil {
		t.Fatal(err)
	}
	moved, _ := filepath.Glob(filepath.Join(d, "raft.db.damaged-*"))
	if len(moved) != 1 {
		t.Fatalf("want the empty raft.db moved aside, found %v", moved)
	}
	log, _ := os.ReadFile(filepath.Join(d, "..", "s1.log"))
	if !bytes.Contains(log, []byte("DISCARDED")) {
		t.Fatalf("no loud log line about the discarded state:\n%s", log)
	}
}
