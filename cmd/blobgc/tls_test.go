package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testnet"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// A server started with certificates from `blobgc tls init` serves only TLS
// clients; the client commands' TLS flags reach it.
func TestTLSFlags(t *testing.T) {
	dir, otherDir := t.TempDir(), t.TempDir()
	mustRun(t, "", "tls", "init", "--dir", dir, "--servers", "s1", "--clients", "admin:alice")
	mustRun(t, "", "tls", "init", "--dir", otherDir)
	addr := fmt.Sprintf("127.0.0.1:%d", testnet.Port(t))
	_, _, stop := startCmd(t, "server", "--id", "s1", "--data-dir", t.TempDir(), "--listen", addr, "--peers", "s1="+addr,
		"--tls-cert", filepath.Join(dir, "server-s1.pem"), "--tls-key", filepath.Join(dir, "server-s1-key.pem"), "--tls-ca", filepath.Join(dir, "ca.pem"),
		"--heartbeat-timeout", "100ms", "--election-timeout", "100ms", "--leader-lease-timeout", "50ms", "--log-level", "error")
	srv := "--servers=" + addr
	tlsArgs := []string{"--tls-ca", filepath.Join(dir, "ca.pem"), "--tls-cert", filepath.Join(dir, "admin-alice.pem"), "--tls-key", filepath.Join(dir, "admin-alice-key.pem")}
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
	if _, err := run(t, "", "stats", srv, "--tls-ca", filepath.Join(otherDir, "ca.pem"), "--timeout", "300ms"); err == nil {
		t.Fatal("a client trusting another CA succeeded")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// tls init makes certificates with the blobgc identities, keeps what
// exists (a second run adds a VM node's credential under the same CA), and
// refuses bad names.
func TestTLSInit(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "", "tls", "init", "--dir", dir, "--servers", "s1,s2", "--hosts", "localhost,127.0.0.1,blobgc1", "--clients", "admin:alice", "--trust-domain", "prod")
	caBefore := readFile(t, filepath.Join(dir, "ca.pem"))
	s1Before := readFile(t, filepath.Join(dir, "server-s1.pem"))
	out := mustRun(t, "", "tls", "init", "--dir", dir, "--servers", "s1", "--clients", "node:vm-7", "--trust-domain", "prod")
	if !strings.Contains(out, "kept") || readFile(t, filepath.Join(dir, "ca.pem")) != caBefore || readFile(t, filepath.Join(dir, "server-s1.pem")) != s1Before {
		t.Fatalf("a second run replaced existing files:\n%s", out)
	}
	ca := parseCert(t, filepath.Join(dir, "ca.pem"))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for file, want := range map[string]auth.Identity{
		"server-s1.pem":   auth.ServerIdentity("prod", "s1"),
		"server-s2.pem":   auth.ServerIdentity("prod", "s2"),
		"admin-alice.pem": auth.ClientIdentity("prod", auth.RoleAdmin, "alice"),
		"node-vm-7.pem":   auth.ClientIdentity("prod", auth.RoleNode, "vm-7"),
	} {
		cert := parseCert(t, filepath.Join(dir, file))
		usage := x509.ExtKeyUsageClientAuth
		if want.IsServer() {
			usage = x509.ExtKeyUsageServerAuth
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("%s: %v", file, err)
		}
		if got, err := auth.FromCertificate(cert, "prod"); err != nil || got != want {
			t.Errorf("%s names %v (%v), want %v", file, got, err, want)
		}
		if want.IsServer() && (cert.VerifyHostname("blobgc1") != nil || cert.VerifyHostname("127.0.0.1") != nil || cert.VerifyHostname(want.ServerID) != nil) {
			t.Errorf("%s: not valid for blobgc1, 127.0.0.1 and its id: %v %v", file, cert.DNSNames, cert.IPAddresses)
		}
		if !want.IsServer() && len(cert.ExtKeyUsage) != 1 {
			t.Errorf("%s: a client certificate can serve: %v", file, cert.ExtKeyUsage)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca-key.pem: %v %v, want mode 0600", fi.Mode(), err)
	}
	for _, bad := range [][]string{
		{"tls", "init"},
		{"tls", "init", "--dir", dir, "--servers", "s 1"},
		{"tls", "init", "--dir", dir, "--clients", "root:alice"},
		{"tls", "init", "--dir", dir, "--clients", "alice"},
		{"tls", "init", "--dir", dir, "--clients", "node:vm\x1b"},
	} {
		if _, err := run(t, "", bad...); err == nil {
			t.Errorf("blobgc %q succeeded", bad)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func parseCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(readFile(t, path)))
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
