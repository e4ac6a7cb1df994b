package client

import (
	"context"
	"errors"
	"github.com/blobgc/blobgc/internal/testnet"
	"net"
	"strings"
	"testing"
	"time"
)

// blackhole returns a loopback address that accepts TCP connections but
// never speaks: a gRPC connection to it never becomes ready, as with a
// firewall that drops packets.
func blackhole(t *testing.T) string {
	t.Helper()
	lis := testnet.Listen(t)
	t.Cleanup(func() { lis.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	return lis.Addr().String()
}

// Servers that accept connections but never answer are all reported, and
// the call gives up at the dial timeout, long before its deadline.
func TestNoServerAnswersNamesEveryAddress(t *testing.T) {
	addrs := []string{blackhole(t), blackhole(t), blackhole(t)}
	c := newTestClient(t, addrs, WithDialTimeout(time.Second), WithCallTimeout(500*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.Stats(ctx)
	var ue *UnreachableError
	if !errors.As(err, &ue) || len(ue.Errors) != 3 {
		t.Fatalf("err = %v, want an UnreachableError naming all 3 servers", err)
	}
	for _, a := range addrs {
		if !strings.Contains(err.Error(), a+" (no answer in time)") {
			t.Errorf("error does not say %s did not answer: %v", a, err)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the call ran until its deadline")
	}
}
