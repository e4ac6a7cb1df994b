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

	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testnet"
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
// extra are more server flags.
func usedDataDir(t *testing.T, snapshot bool, extra ...string) string {
	t.Helper()
	if snapshot {
		extra = append(extra, "--snapshot-threshold=4", "--snapshot-interval=100ms", "--trailing-logs=2")
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
	addr := testnet.Addr(t)
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
	t.Parallel()
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
	t.Parallel()
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

// copyDir copies the regular files of the tree at from to a new directory.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// A damaged write-ahead log (its metadata empty or truncated, its segments
// deleted, its first record overwritten) stops the server with a one-line
// error that names it, never a stack dump or a silent start without a log;
// with --discard-damaged-state the server moves it aside and starts empty.
func TestDamagedWALRefusesToStart(t *testing.T) {
	t.Parallel()
	dir := usedDataDir(t, false, "--log-store=wal")
	meta := filepath.Join("wal", "wal-meta.db")
	segments, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if err != nil || len(segments) == 0 {
		t.Fatalf("no WAL segments in %s (%v)", dir, err)
	}
	fi, err := os.Stat(filepath.Join(dir, meta))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file, want string
		damage           func(d string) error
	}{
		{"empty metadata", meta, "is empty", func(d string) error { return os.Truncate(filepath.Join(d, meta), 0) }},
		{"truncated metadata", meta, "truncated", func(d string) error { return os.Truncate(filepath.Join(d, meta), fi.Size()/3) }},
		{"segments deleted", "wal", "holds no raft log", func(d string) error {
			for _, s := range segments {
				if err := os.Remove(filepath.Join(d, "wal", filepath.Base(s))); err != nil {
					return err
				}
			}
			return nil
		}},
		{"first record overwritten", "wal", "holds no raft log", func(d string) error {
			f, err := os.OpenFile(filepath.Join(d, "wal", filepath.Base(segments[0])), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(bytes.Repeat([]byte{0xFF}, 64), 100)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := copyDir(t, dir)
			if err := tc.damage(d); err != nil {
				t.Fatal(err)
			}
			expectRefusal(t, d, tc.file, tc.want)
		})
	}

	t.Run("discarded", func(t *testing.T) {
		d := copyDir(t, dir)
		for _, s := range segments {
			if err := os.Remove(filepath.Join(d, "wal", filepath.Base(s))); err != nil {
				t.Fatal(err)
			}
		}
		addr := testnet.Addr(t)
		var stderr clustertest.SyncBuffer
		cmd := exec.Command(blobgcBin, "server", "--insecure", "--id", "s1", "--data-dir", d, "--listen", addr, "--peers", "s1="+addr, "--discard-damaged-state")
		cmd.Stderr = &stderr
		orphanProof(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		eventually(t, time.Minute, "the damaged WAL moved aside", func() bool {
			moved, _ := filepath.Glob(filepath.Join(d, "wal.damaged-*"))
			return len(moved) == 1 && strings.Contains(stderr.String(), "DISCARDED")
		})
	})
}
