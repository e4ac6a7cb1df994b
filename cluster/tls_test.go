package cluster_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testpki"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// startTLS starts a cluster of n servers, each with its own server
// certificate from one CA.
func startTLS(t *testing.T, n int) (*clustertest.Cluster, testpki.Files) {
	t.Helper()
	files := testpki.WriteFiles(t, t.TempDir())
	c := clustertest.Start(t, clustertest.Options{N: n, Configure: func(_ int, cfg *cluster.Config) {
		cfg.TLS = serverTLS(t, files, cfg.ID)
	}})
	return c, files
}

func serverTLS(t *testing.T, files testpki.Files, id string) cluster.TLSFiles {
	cert, key := files.ServerFiles(t, id)
	return cluster.TLSFiles{CertFile: cert, KeyFile: key, CAFile: files.CA}
}

// tlsConn connects to s over TLS with the given client certificates (none:
// an anonymous client).
func tlsConn(t *testing.T, files testpki.Files, s *cluster.Server, certs ...tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+s.Addr(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: files.Pool, Certificates: certs, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// tlsClient is an API client of s with the given certificates, or, with
// none, the admin client certificate of files.
func tlsClient(t *testing.T, files testpki.Files, s *cluster.Server, certs ...tls.Certificate) pb.BlobGCClient {
	if len(certs) == 0 {
		admin, err := tls.LoadX509KeyPair(files.ClientCert, files.ClientKey)
		if err != nil {
			t.Fatal(err)
		}
		certs = []tls.Certificate{admin}
	}
	return pb.NewBlobGCClient(tlsConn(t, files, s, certs...))
}

// A TLS cluster of servers with their own identities elects, replicates
// over mTLS, serves API clients with a client certificate, forwards over
// TLS, and admits a server that joins with its own certificate.
func TestTLSCluster(t *testing.T) {
	c, files := startTLS(t, 3)
	ctx := ctxT(t, testtiming.Hang())
	f := c.Followers()[0]
	cl := tlsClient(t, files, f)
	try(cl.Pin(ctx, &pb.HashesRequest{Hashes: hashes(0, 3)})).must(t)
	if st := try(cl.GetStatus(ctx, &pb.GetStatusRequest{Hash: hashN(1)})).must(t); st.State != pb.BlobState_BLOB_STATE_PINNED {
		t.Fatalf("state %v", st.State)
	}
	c.WaitConverged()
	// A plaintext client cannot talk to a TLS server.
	sctx := ctxT(t, time.Second)
	if _, err := c.RawClient(f).GetStats(sctx, &pb.GetStatsRequest{}); err == nil {
		t.Fatal("plaintext client served by a TLS server")
	}

	cfg := clustertest.TestConfig("s4", t.TempDir())
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Join = []string{f.Addr()}
	cfg.TLS = serverTLS(t, files, "s4")
	s4 := c.Add(cfg)
	c.Eventually(time.Minute, "s4 in the configuration", func() bool {
		m, err := tlsClient(t, files, s4).Members(ctx, &pb.MembersRequest{})
		return err == nil && len(m.Members) == 4
	})
	retryWrite(t, time.Minute, func(ctx2 context.Context) error {
		_, err := cl.Pin(ctx2, &pb.HashesRequest{Hashes: hashes(10, 2)})
		return err
	})
	c.WaitConverged()
}

// Reload makes running servers use new certificate and CA files: after a
// rotation to a new CA, clients trusting only the new CA are served, and
// broken files leave the certificates in use.
func TestTLSReload(t *testing.T) {
	c, _ := startTLS(t, 3)
	ctx := ctxT(t, time.Minute)
	newFiles := testpki.WriteFiles(t, t.TempDir())
	f := c.Followers()[0]
	short := func() context.Context { return ctxT(t, 2*time.Second) }
	if _, err := tlsClient(t, newFiles, f).GetStats(short(), &pb.GetStatsRequest{}); err == nil {
		t.Fatal("a client trusting only the new CA was served before the rotation")
	}
	for i, s := range c.Running() {
		cert, key := newFiles.ServerFiles(t, s.ID())
		copyFile(t, cert, c.Configs[i].TLS.CertFile)
		copyFile(t, key, c.Configs[i].TLS.KeyFile)
		copyFile(t, newFiles.CA, c.Configs[i].TLS.CAFile)
	}
	for _, s := range c.Running() {
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	retryWrite(t, time.Minute, func(ctx context.Context) error {
		_, err := tlsClient(t, newFiles, f).Pin(ctx, &pb.HashesRequest{Hashes: hashes(0, 1)})
		return err
	})
	c.WaitConverged()

	if err := writeFile(c.Configs[0].TLS.CertFile, "not a certificate"); err != nil {
		t.Fatal(err)
	}
	if err := c.Servers[0].Reload(); err == nil {
		t.Fatal("Reload accepted a broken certificate file")
	}
	try(tlsClient(t, newFiles, c.Servers[0]).GetStats(ctx, &pb.GetStatsRequest{})).must(t)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// With TLS the metrics listener serves HTTPS with the server certificate;
// plain HTTP gets no metrics.
func TestTLSMetricsAreHTTPS(t *testing.T) {
	files := testpki.WriteFiles(t, t.TempDir())
	pool := files.Pool
	c := clustertest.Start(t, clustertest.Options{N: 1, Configure: func(i int, cfg *cluster.Config) {
		cfg.TLS = serverTLS(t, files, cfg.ID)
		cfg.MetricsAddr = "127.0.0.1:0"
	}})
	addr := c.Leader().MetricsAddr()
	httpsClient := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := httpsClient.Get("https://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "blobgc_applied_index") {
		t.Fatalf("https /metrics: %s\n%.200s", resp.Status, body)
	}
	plain := &http.Client{Timeout: time.Minute}
	if resp, err := plain.Get("http://" + addr + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), "blobgc_applied_index") {
			t.Fatal("metrics served over plain HTTP on a TLS server")
		}
	}
}
