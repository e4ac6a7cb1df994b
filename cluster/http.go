package cluster

import (
	"context"
	"net/http"

	"google.golang.org/grpc/metadata"

	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/gateway"
)

// httpHandler serves the HTTP listener: /metrics, /healthz and /readyz,
// and through package gateway the JSON API and the operator's page, which
// reach the API over a loopback gRPC connection so that every interceptor
// runs for them.
func (s *Server) httpHandler() (http.Handler, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.metrics.handler())
	s.handleHealth(mux)
	conn, err := s.conns.get(s.addr)
	if err != nil {
		return nil, err
	}
	err = gateway.Register(mux, gateway.Config{Conn: conn, ServerID: s.cfg.ID,
		CycleInterval: s.cfg.CycleInterval, Admit: s.admitPage})
	return mux, err
}

// admitPage authenticates an HTTP caller by its Authorization value, as an
// API call through the gateway is, and checks the page table.
func (s *Server) admitPage(ctx context.Context, authorization, page string) error {
	md := metadata.Pairs(gateway.ViaHTTPKey, "1")
	if authorization != "" {
		md.Set(authorizationKey, authorization)
	}
	_, p, err := s.authenticate(metadata.NewIncomingContext(ctx, md))
	if err != nil {
		return err
	}
	if !auth.PageAllowed(page, p.Role) {
		roles, _ := auth.PageRolesFor(page)
		return s.deny(page, p, "the page "+page+" needs role "+auth.JoinRoles(roles))
	}
	return nil
}
