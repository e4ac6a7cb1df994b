package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testpki"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// A server started with the TLS flags serves only TLS clients; the client
// commands' TLS flags reach it.
func TestTLSFlags(t *testing.T) {
	certs := testpki.WriteFiles(t, t.TempDir())
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, _, stop := startCmd(t, "server", "--id", "s1", "--data-dir", t.TempDir(), "--listen", addr, "--peers", "s1="+addr,
		"--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey, "--tls-ca", certs.CA,
		"--heartbeat-timeout", "100ms", "--election-timeout", "100ms", "--leader-lease-timeout", "50ms", "--log-level", "error")
	srv := "--servers=" + addr
	tlsArgs := []string{"--tls-ca", certs.CA, "--tls-cert", certs.ClientCert, "--tls-key", certs.ClientKey}
	clustertest.Eventually(t, testtiming.Hang(), "the TLS server to accept a write", func() bool {
		_, err := run(t, "", append([]string{"register", hashHex(1), srv, "--timeout", "500ms"}, tlsArgs...)...)
		return err == nil
	})
	out := mustRun(t, "", append([]string{"status", hashHex(1), srv}, tlsArgs...)...)
	if !strings.Contains(out, "ACTIVE") {
		t.Fatalf("status over TLS: %q", out)
	}
	if _, err := run(t, "", "stats", srv, "--timeout", "300ms"); err == nil || !strings.Contains(errorText(err), "Unavailable") {
		t.Fatalf("plaintext client: %v, want Unavailable", err)
	}
	if _, err := run(t, "", "stats", srv, "--tls-ca", certs.OtherCA, "--timeout", "300ms"); err == nil {
		t.Fatal("a client trusting another CA succeeded")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
