package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testnet"
	"github.com/blobgc/blobgc/internal/testpki"
)

// `blobgc token add` makes tokens that a server with --token-file accepts
// for their role; the client flags and BLOBGC_TOKEN send them; a token
// removed from the file is refused after SIGHUP.
func TestTokenCommandAndSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certs := testpki.WriteFiles(t, dir)
	tokens := filepath.Join(dir, "tokens")
	operator := strings.TrimSpace(mustRun(t, "", "token", "add", "--file", tokens, "--principal", "ops", "--role", "operator"))
	reader := strings.TrimSpace(mustRun(t, "", "token", "add", "--file", tokens, "--principal", "dash", "--role", "reader"))
	if _, err := run(t, "", "token", "add", "--file", tokens, "--principal", "x", "--role", "root"); err == nil {
		t.Fatal("token add with an unknown role succeeded")
	}
	data, _ := os.ReadFile(tokens)
	if strings.Contains(string(data), operator) || strings.Count(string(data), "sha256:") != 2 {
		t.Fatalf("token file: %q", data)
	}

	addr := fmt.Sprintf("127.0.0.1:%d", testnet.Port(t))
	_, errOut, stop := startCmd(t, "server", "--id", "s1", "--data-dir", t.TempDir(), "--listen", addr, "--peers", "s1="+addr,
		"--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey, "--tls-ca", certs.CA, "--token-file", tokens,
		"--heartbeat-timeout", "100ms", "--election-timeout", "100ms", "--leader-lease-timeout", "50ms", "--log-level", "info")
	srv := []string{"--servers=" + addr, "--tls-ca", certs.CA, "--timeout", "2s"}
	clustertest.Eventually(t, 30*time.Second, "the operator token to register", func() bool {
		_, err := run(t, "", append([]string{"register", hashHex(1), "--token", operator}, srv...)...)
		return err == nil
	})
	tokenFile := filepath.Join(dir, "reader-token")
	os.WriteFile(tokenFile, []byte(reader+"\n"), 0o600)
	if _, err := run(t, "", append([]string{"register", hashHex(2), "--token-file", tokenFile}, srv...)...); err == nil || !strings.Contains(errorText(err), "PermissionDenied") {
		t.Fatalf("reader register: %v, want PermissionDenied", err)
	}
	t.Setenv("BLOBGC_TOKEN", reader)
	mustRun(t, "", append([]string{"status", hashHex(1)}, srv...)...)
	if _, err := run(t, "", "stats", "--servers="+addr, "--token", reader); err == nil || !strings.Contains(err.Error(), "without TLS") {
		t.Fatalf("a token without TLS: %v, want refused", err)
	}

	// Revoke the reader's token.
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	os.WriteFile(tokens, []byte(lines[0]+"\n"), 0o600)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 30*time.Second, "the revoked token to be refused", func() bool {
		_, err := run(t, "", append([]string{"status", hashHex(1)}, srv...)...)
		return err != nil && strings.Contains(errorText(err), "Unauthenticated")
	})
	if !strings.Contains(errOut.String(), "token file reloaded") || !strings.Contains(errOut.String(), "removed=1") {
		t.Fatalf("no reload log line:\n%s", errOut.String())
	}
	if strings.Contains(errOut.String(), reader) || strings.Contains(errOut.String(), operator) {
		t.Fatal("a token appears in the server's log")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
