// Package testnet gives tests loopback listeners and addresses on ports
// below Linux's range for outgoing connections (32768-60999).
//
// A port the kernel picks for ":0" lies in that range. When a server on
// such a port stops, a peer that keeps dialing it can be given that same
// port as its source port and connect to itself (TCP simultaneous open):
// the restarted server then finds its port taken. Ports below 32768 are
// never handed out as source ports.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
)

// The range: above the fixed ports of blobgc dev, compose and the scripts
// (7001-7003, 7101-7105, 9001-9105, 17101), below the outgoing range.
const (
	first = 24000
	last  = 32000
)

// next starts at a random port so that test binaries running at the same
// time mostly try different ports.
var next atomic.Uint32

func init() { next.Store(uint32(rand.IntN(last - first))) }

// Listen returns a TCP listener on a free 127.0.0.1 port in the range.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	var err error
	for range last - first {
		port := first + int(next.Add(1))%(last-first)
		var l net.Listener
		if l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			return l
		}
	}
	t.Fatalf("no free loopback port in %d-%d: %v", first, last, err)
	return nil
}

// Addr returns host:port of a loopback port nobody listened on a moment
// ago: for a server that a test starts in another process, or as an address
// that refuses connections.
func Addr(t testing.TB) string {
	t.Helper()
	l := Listen(t)
	defer l.Close()
	return l.Addr().String()
}

// Port returns the number of a loopback port that was free a moment ago.
// Successive calls return distinct ports.
func Port(t testing.TB) int {
	t.Helper()
	l := Listen(t)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Consecutive returns the first of n consecutive loopback ports that were
// all free a moment ago (blobgc dev takes a first port and the next ones).
func Consecutive(t testing.TB, n int) int {
	t.Helper()
	for range (last - first) / n {
		base := first + (int(next.Add(uint32(n)))-n)%(last-first-n)
		var ls []net.Listener
		for i := range n {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if len(ls) == n {
			return base
		}
	}
	t.Fatalf("no %d consecutive free loopback ports in %d-%d", n, first, last)
	return 0
}
