package cluster_test

import (
	"crypto/tls"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testpki"
)

// A TLS cluster replicates over mTLS (each server's certificate names its
// server identity) and serves API clients with a client certificate;
// forwarding between servers uses TLS too.
func TestTLSCluster(t *testing.T) {
	pki := testpki.WriteFiles(t, t.TempDir())
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(i int, cfg *cluster.Config) {
		cert, key := pki.WriteIdentity(t, cfg.ID, true, "spiffe://blobgc/server/"+cfg.ID)
		cfg.TLS = cluster.TLSFiles{CertFile: cert, KeyFile: key, CAFile: pki.CA}
	}})
	admin, err := tls.LoadX509KeyPair(pki.ClientCert, pki.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := pki.Pool
	ctx := ctxT(t, 20*time.Second)
	f := c.Followers()[0]
	cc, err := grpc.NewClient("passthrough:///"+f.Addr(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{admin}, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cl := pb.NewBlobGCClient(cc)
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
}
