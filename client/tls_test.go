package client

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testpki"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// startTLSCluster starts 3 servers with certificates naming their server
// identities, and tokenFile as their token file if not empty.
func startTLSCluster(t *testing.T, certs testpki.Files, tokenFile string) *clustertest.Cluster {
	return clustertest.Start(t, clustertest.Options{N: 3, Configure: func(_ int, c *cluster.Config) {
		cert, key := certs.ServerFiles(t, c.ID)
		c.TLS = cluster.TLSFiles{CertFile: cert, KeyFile: key, CAFile: certs.CA}
		c.TokenFile = tokenFile
	}})
}

func TestClusterTLS(t *testing.T) {
	certs := testpki.WriteFiles(t, t.TempDir())
	tc := startTLSCluster(t, certs, "")
	_, fol := followers(t, tc)
	ctx, cancel := context.WithTimeout(context.Background(), testtiming.Hang())
	defer cancel()

	// With a client certificate naming an admin.
	c := newTestClient(t, fol, WithTLS(certs.CA, certs.ClientCert, certs.ClientKey))
	if _, err := c.RegisterBlobs(ctx, hashesN(0, 1)); err != nil {
		t.Fatal(err)
	}
	// Without one, the cluster does not know who calls.
	c = newTestClient(t, fol, WithTLS(certs.CA, "", ""))
	if _, err := c.RegisterBlobs(ctx, hashesN(0, 1)); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "sent no credentials") {
		t.Fatalf("without a certificate: %v, want Unauthenticated explained", err)
	}
	// A client that does not trust the servers' CA, or speaks plaintext,
	// gets nowhere.
	for name, opts := range map[string][]Option{
		"wrong CA":  {WithTLS(certs.OtherCA, "", "")},
		"plaintext": nil,
	} {
		c := newTestClient(t, fol, append(opts, WithRetryTimeout(300*time.Millisecond))...)
		if _, err := c.Stats(context.Background()); status.Code(err) != codes.Unavailable {
			t.Fatalf("%s: err = %v, want Unavailable", name, err)
		}
	}
	if _, err := New(fol, WithTLS(certs.CA, certs.ClientCert, "/nonexistent")); err == nil {
		t.Fatal("New with a missing client key succeeded")
	}
}

// A bearer token authenticates a client over TLS; it is never sent in
// plaintext unless allowed; a refused token is explained.
func TestClientToken(t *testing.T) {
	dir := t.TempDir()
	certs := testpki.WriteFiles(t, dir)
	tokens := filepath.Join(dir, "tokens")
	if err := auth.AppendToken(tokens, "sweeper-secret", auth.Principal{Name: "sweeper-1", Role: auth.RoleSweeper}); err != nil {
		t.Fatal(err)
	}
	tc := startTLSCluster(t, certs, tokens)
	_, fol := followers(t, tc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tokenFile := filepath.Join(dir, "my-token")
	os.WriteFile(tokenFile, []byte("sweeper-secret\n"), 0o600)
	c := newTestClient(t, fol, WithTLS(certs.CA, "", ""), WithTokenFile(tokenFile))
	if _, _, err := c.Claim(ctx, hashesN(0, 1)); err != nil {
		t.Fatalf("sweeper claim: %v", err)
	}
	if _, err := c.RegisterBlobs(ctx, hashesN(0, 1)); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "operator or admin") {
		t.Fatalf("sweeper register: %v, want PermissionDenied naming the roles", err)
	}
	c = newTestClient(t, fol, WithTLS(certs.CA, "", ""), WithToken("not-it"))
	if _, err := c.Stats(ctx); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "did not accept this client's bearer token") {
		t.Fatalf("wrong token: %v, want Unauthenticated explained", err)
	}
	if _, err := New(fol, WithToken("sweeper-secret")); err == nil || !strings.Contains(err.Error(), "without TLS") {
		t.Fatalf("a token without TLS: %v, want refused", err)
	}
	// A cluster run without TLS (--insecure) with a token file: the token
	// goes in plaintext only when allowed.
	plain := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(_ int, c *cluster.Config) { c.TokenFile = tokens }})
	_, plainFol := followers(t, plain)
	c = newTestClient(t, plainFol, WithToken("sweeper-secret"), AllowTokenWithoutTLS())
	if _, _, err := c.Claim(ctx, hashesN(0, 1)); err != nil {
		t.Fatalf("sweeper claim without TLS, allowed: %v", err)
	}
	if _, err := New(fol, WithTLS(certs.CA, "", ""), WithTokenFile(filepath.Join(dir, "none"))); err == nil {
		t.Fatal("a missing token file was accepted")
	}
}
