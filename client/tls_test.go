package client

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testpki"
	"github.com/blobgc/blobgc/internal/testtiming"
)

func TestClusterTLS(t *testing.T) {
	certs := testpki.WriteFiles(t, t.TempDir())
	tc := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(_ int, c *cluster.Config) {
		c.TLS = cluster.TLSFiles{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, CAFile: certs.CA}
	}})
	_, fol := followers(t, tc)
	ctx, cancel := context.WithTimeout(context.Background(), testtiming.Hang())
	defer cancel()

	// With a client certificate, and without one (the API does not require it).
	for _, opt := range []Option{WithTLS(certs.CA, certs.ClientCert, certs.ClientKey), WithTLS(certs.CA, "", "")} {
		c := newTestClient(t, fol, opt)
		if _, err := c.RegisterBlobs(ctx, hashesN(0, 1)); err != nil {
			t.Fatal(err)
		}
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
