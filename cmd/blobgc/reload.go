package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/blobgc/blobgc/cluster"
)

// reloadOnSIGHUP makes every SIGHUP, from now until ctx ends, re-read the
// server's token file and its TLS certificate, key and CA files. The server
// logs what changed; files that do not load leave the previous ones in use.
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
				_ = s.Reload()       // logged by the server
			}
		}
	}()
}
