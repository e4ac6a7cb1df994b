package client_test

import (
	"context"
	"log"

	"github.com/blobgc/blobgc/client"
)

// A VM node reports what it uses: a full report at start, deltas after.
func ExampleReporter() {
	c, err := client.New([]string{"10.0.0.1:7001", "10.0.0.2:7001", "10.0.0.3:7001"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	h, _ := client.ParseHash("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")

	r := c.Reporter("vm-17")
	if err := r.Full(ctx, []client.Hash{h}, nil); err != nil {
		log.Fatal(err)
	}
	// Later: the function is no longer in use. If the cluster lost track of
	// the sequence, the Reporter sends a full report instead.
	if err := r.Delta(ctx, nil, []client.Hash{h}, nil, nil); err != nil {
		log.Fatal(err)
	}
}

// A sweeper deletes what it is granted, then confirms.
func ExampleClient_Claim() {
	c, err := client.New([]string{"127.0.0.1:7001"})
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
