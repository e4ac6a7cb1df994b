package cluster

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/auth"
)

// FuzzReportAdmission drives a Report through everything that runs before a
// proposal: authentication from arbitrary metadata (tokens, forged
// forwarding headers), the role table, request validation and the node-id
// rule. Whatever comes in, a call that gets through is from a listed token's
// principal that may act as the reported node, the forwarding headers of a
// non-peer are gone, and every refusal has the right code.
func FuzzReportAdmission(f *testing.F) {
	dir := f.TempDir()
	tokenFile := filepath.Join(dir, "tokens")
	tokens := map[string]auth.Principal{
		"tok-vm1":   {Name: "vm-1", Role: auth.RoleNode, Nodes: []string{"vm-1"}},
		"tok-admin": {Name: "root", Role: auth.RoleAdmin},
		"tok-read":  {Name: "dash", Role: auth.RoleReader},
	}
	for tok, p := range tokens {
		if err := auth.AppendToken(tokenFile, tok, p); err != nil {
			f.Fatal(err)
		}
	}
	a, err := newAuthn(Config{TokenFile: tokenFile, TLS: TLSFiles{CAFile: "ca.pem"}}, hclog.NewNullLogger(), prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{authn: a}
	valid, _ := proto.Marshal(&pb.ReportRequest{NodeId: "vm-1", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: [][]byte{make([]byte, 32)}})
	other, _ := proto.Marshal(&pb.ReportRequest{NodeId: "vm-2", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1})
	f.Add("Bearer tok-vm1", "", valid)
	f.Add("Bearer tok-vm1", "admin:root", other)
	f.Add("Bearer tok-read", "node:vm-2:vm-2", other)
	f.Add("Bearer tok-admin", "", []byte{0xff, 0x01})
	f.Add("", "admin:root", valid)
	f.Add("Basic x", "", valid)
	f.Fuzz(func(t *testing.T, authorization, principal string, reqBytes []byte) {
		md := metadata.MD{}
		if authorization != "" {
			md.Set(authorizationKey, authorization)
		}
		if principal != "" {
			md.Set(principalKey, principal)
		}
		md.Set(forwardedKey, "s1")
		ctx, err := s.admit(metadata.NewIncomingContext(context.Background(), md), pb.BlobGC_Report_FullMethodName)
		if err != nil {
			if c := status.Code(err); c != codes.Unauthenticated && c != codes.PermissionDenied {
				t.Fatalf("admission refused with %v", err)
			}
			return
		}
		p, _ := auth.FromContext(ctx)
		tok, _ := strings.CutPrefix(authorization, bearerPrefix)
		if want, ok := tokens[tok]; !ok || auth.EncodePrincipal(want) != auth.EncodePrincipal(p) {
			t.Fatalf("admitted %s with authorization %q", p, authorization)
		}
		if in, _ := metadata.FromIncomingContext(ctx); len(in.Get(forwardedKey)) > 0 || len(in.Get(principalKey)) > 0 {
			t.Fatal("a client's forwarding headers survived admission")
		}
		var req pb.ReportRequest
		if proto.Unmarshal(reqBytes, &req) != nil {
			return
		}
		if _, err := reportCommand(&req, MaxBatch); err != nil {
			if c := status.Code(err); c != codes.InvalidArgument && c != codes.ResourceExhausted {
				t.Fatalf("invalid report answered %v", err)
			}
			return
		}
		err = s.mayActAsNode(ctx, pb.BlobGC_Report_FullMethodName, req.NodeId)
		if (err == nil) != p.MayActAsNode(req.NodeId) {
			t.Fatalf("%s reporting as %q: %v", p, req.NodeId, err)
		}
		if err != nil && status.Code(err) != codes.PermissionDenied {
			t.Fatalf("node check: %v", err)
		}
	})
}
