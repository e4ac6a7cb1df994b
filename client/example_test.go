package client_test

import (
	"cmp"
	"context"
	"log"
	"os"
	"strings"
	"time"

	"github.com/blobgc/blobgc/client"
)

// A VM node reports what it uses: a full report at start, deltas after.
// This is the README's example; TestExamplesRun runs it against a cluster.
func ExampleReporter() {
	// Any members will do; these are where `blobgc dev` listens.
	servers := strings.Split(cmp.Or(os.Getenv("BLOBGC_SERVERS"), "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"), ",")
	c, err := client.New(servers)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	image, err := client.ParseHash("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	if err != nil {
		log.Fatal(err)
	}
	r := c.Reporter("vm-17")
	// At start: every blob this node uses (sent in chunks when large).
	if err := r.Full(ctx, []client.Hash{image}, nil); err != nil {
		log.Fatal(err)
	}
	// Later, only the changes: the image is no longer in use. If the cluster
	// lost track of this node's sequence, the Reporter sends a full report.
	if err := r.Delta(ctx, nil, []client.Hash{image}, nil, nil); err != nil {
		log.Fatal(err)
	}
}

// A sweeper deletes what it is granted, then confirms.
func ExampleClient_Claim() {
	servers := strings.Split(cmp.Or(os.Getenv("BLOBGC_SERVERS"), "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"), ",")
	c, err := client.New(servers)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	var eligible []client.Hash
	for h, err := range c.ListEligible(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		eligible = append(eligible, h)
	}
	if len(eligible) == 0 {
		return // an empty batch is refused
	}
	granted, _, err := c.Claim(ctx, eligible)
	if err != nil {
		log.Fatal(err)
	}
	// ... delete exactly the granted blobs from the blob store ...
	if len(granted) == 0 {
		return
	}
	if _, err := c.ConfirmCollected(ctx, granted); err != nil {
		log.Fatal(err)
	}
}
