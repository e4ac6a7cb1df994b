package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/blobgc/blobgc/client"
)

// blobgcCluster is three `blobgc server` processes.
type blobgcCluster struct {
	procs
	addrs []string
}

func startBlobgc(bin, dir string, basePort int, extra []string) (*blobgcCluster, error) {
	bc := &blobgcCluster{}
	var peers []string
	for i := 0; i < 3; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", basePort+i)
		bc.addrs = append(bc.addrs, addr)
		peers = append(peers, fmt.Sprintf("s%d=%s", i+1, addr))
	}
	for i, addr := range bc.addrs {
		args := []string{"server", "--id", fmt.Sprintf("s%d", i+1), "--data-dir", fmt.Sprintf("%s/s%d", dir, i+1),
			"--listen", addr, "--peers", strings.Join(peers, ","), "--cycle-interval=-1s", "--insecure"}
		bc.add(fmt.Sprintf("s%d", i+1), bin, append(args, extra...)...)
	}
	if err := bc.startAll(dir); err != nil {
		return nil, err
	}
	return bc, waitUntil(2*time.Minute, "a blobgc leader", func() bool { return bc.leader() >= 0 })
}

func (bc *blobgcCluster) client() (*client.Client, error) {
	return client.New(bc.addrs, client.WithBackoff(5*time.Millisecond, 50*time.Millisecond))
}

// leader returns the index of the server that leads, as a running server
// reports it, or -1.
func (bc *blobgcCluster) leader() int {
	cl, err := bc.client()
	if err != nil {
		return -1
	}
	defer cl.Close()
	for i, a := range bc.addrs {
		if bc.list[i].cmd == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		m, err := cl.MembersOf(ctx, a)
		cancel()
		if err == nil && m.LeaderAddress != "" {
			for j, b := range bc.addrs {
				if b == m.LeaderAddress && bc.list[j].cmd != nil {
					return j
				}
			}
		}
	}
	return -1
}
