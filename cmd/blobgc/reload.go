package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/blobgc/blobgc/cluster"
)

// reloadOnSIGHUP makes every SIGHUP, from now until ctx ends, re-read the
// server's token file. The server logs what changed, by count; a file that
// does not parse leaves the previous tokens in use.
func reloadOnSIGHUP(ctx context.Context, s *cluster.Server) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = s.ReloadTokens() // logged by the server
			}
		}
	}()
}
