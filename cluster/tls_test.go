package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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

// writeCerts creates a CA and a server certificate for 127.0.0.1 (used for
// both serving and dialing peers) and returns the file names and the CA.
func writeCerts(t *testing.T) (cluster.TLSFiles, *x509.CertPool) {
	f := testpki.WriteFiles(t, t.TempDir())
	return cluster.TLSFiles{CertFile: f.ServerCert, KeyFile: f.ServerKey, CAFile: f.CA}, f.Pool
}

// A TLS cluster replicates over mTLS and serves API clients that present no
// certificate; forwarding between servers uses TLS too.
func TestTLSCluster(t *testing.T) {
	files, pool := writeCerts(t)
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(i int, cfg *cluster.Config) {
		cfg.TLS = files
	}})
	ctx := ctxT(t, testtiming.Hang())
	f := c.Followers()[0]
	cc, err := grpc.NewClient("passthrough:///"+f.Addr(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cl := pb.NewBlobGCClient(cc)
	retryWrite(t, testtiming.Hang(), func(ctx context.Context) error {
		_, err := cl.Pin(ctx, &pb.HashesRequest{Hashes: hashes(0, 3)})
		return err
	})
	if st := try(cl.GetStatus(ctx, &pb.GetStatusRequest{Hash: hashN(1)})).must(t); st.State != pb.BlobState_BLOB_STATE_PINNED {
		t.Fatalf("state %v", st.State)
	}
	c.WaitConverged()
	// A plaintext client cannot talk to a TLS server.
	sctx := ctxT(t, time.Second)
	if _, err := c.RawClient(f).GetStats(sctx, &pb.GetStatsRequest{}); err == nil {
		t.Fatal("plaintext client served by a TLS server")
	}
}
