package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testnet"
)

// In dev, a server whose data dir is damaged is reported, and the other two
// (a majority) run on.
func TestDevRunsOnWithoutADamagedServer(t *testing.T) {
	port := testnet.Consecutive(t, 3)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "s2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "s2", "raft.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, stop := startCmd(t, "dev", "--port", fmt.Sprint(port), "--metrics-port", "0", "--data-dir", dir,
		"--heartbeat-timeout", "100ms", "--election-timeout", "100ms", "--leader-lease-timeout", "50ms")
	clustertest.Eventually(t, 30*time.Second, "dev to print its banner", func() bool {
		return strings.Contains(out.String(), "Ctrl-C stops the cluster")
	})
	if e := errOut.String(); !strings.Contains(e, "server s2 cannot start") || !strings.Contains(e, filepath.Join(dir, "s2", "raft.db")) || strings.Contains(e, "goroutine") {
		t.Fatalf("stderr does not report the damaged server:\n%s", e)
	}
	srv := fmt.Sprintf("--servers=127.0.0.1:%d,127.0.0.1:%d", port, port+2)
	mustRun(t, "", "register", hashHex(1), srv, "--timeout=1m")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
