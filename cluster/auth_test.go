package cluster_test

import (
	"context"
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testpki"
)

// authCluster is a 3-server cluster with TLS (per-server certificates naming
// spiffe://blobgc/server/<id>) and a token file holding one token per role.
type authCluster struct {
	*clustertest.Cluster
	pki       testpki.Files
	tokenFile string
	tokens    map[auth.Role]string // role → token
}

// testPrincipals are the principals of the role tokens: p-<role>; the node
// one may report as vm-1 only.
func testPrincipal(r auth.Role) auth.Principal {
	p := auth.Principal{Name: "p-" + string(r), Role: r}
	if r == auth.RoleNode {
		p.Nodes = []string{"vm-1"}
	}
	return p
}

func startAuthCluster(t *testing.T, withTLS bool, configure func(i int, c *cluster.Config)) *authCluster {
	t.Helper()
	dir := t.TempDir()
	ac := &authCluster{pki: testpki.WriteFiles(t, dir), tokenFile: filepath.Join(dir, "tokens"), tokens: map[auth.Role]string{}}
	if withTLS {
		trustTestCA(t, ac.pki.CA)
	}
	for _, r := range auth.Roles {
		tok := "token-of-" + string(r)
		if err := auth.AppendToken(ac.tokenFile, tok, testPrincipal(r)); err != nil {
			t.Fatal(err)
		}
		ac.tokens[r] = tok
	}
	ac.Cluster = clustertest.Start(t, clustertest.Options{N: 3, Configure: func(i int, c *cluster.Config) {
		c.TokenFile = ac.tokenFile
		if withTLS {
			cert, key := ac.pki.WriteIdentity(t, c.ID, true, "spiffe://blobgc/server/"+c.ID)
			c.TLS = cluster.TLSFiles{CertFile: cert, KeyFile: key, CAFile: ac.pki.CA}
		}
		if configure != nil {
			configure(i, c)
		}
	}})
	return ac
}

// conn dials s over TLS, with the client certificate certFile/keyFile if
// given (""), or in plaintext for a cluster without TLS.
func (ac *authCluster) conn(t *testing.T, s *cluster.Server, certFile, keyFile string) *grpc.ClientConn {
	t.Helper()
	var opt grpc.DialOption
	if ac.Configs[0].TLS.CAFile == "" {
		return ac.Conn(s.Addr())
	}
	tc := &tls.Config{RootCAs: ac.pki.Pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	opt = grpc.WithTransportCredentials(credentials.NewTLS(tc))
	cc, err := grpc.NewClient("passthrough:///"+s.Addr(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// withToken adds a bearer token to ctx's outgoing metadata.
func withToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// call invokes method on cc with req, retrying while the cluster changes
// leader (Unavailable), and returns the final error. The stream of a
// server-streaming method is read to its end.
func call(t *testing.T, ctx context.Context, cc *grpc.ClientConn, method string, req proto.Message) error {
	t.Helper()
	md := methodOf(t, method)
	deadline := time.Now().Add(time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var err error
		if md.IsStreamingServer() {
			err = readStream(cctx, cc, method, req, md.Output())
		} else {
			err = cc.Invoke(cctx, method, req, dynamicpb.NewMessage(md.Output()))
		}
		cancel()
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readStream calls the server-streaming method with req and reads every
// message of type out it sends.
func readStream(ctx context.Context, cc *grpc.ClientConn, method string, req proto.Message, out protoreflect.MessageDescriptor) error {
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
	if err != nil {
		return err
	}
	// io.EOF: the server has already ended the call; RecvMsg says how.
	if err := st.SendMsg(req); err != nil && err != io.EOF {
		return err
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	for {
		if err := st.RecvMsg(dynamicpb.NewMessage(out)); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// methodOf describes a BlobGC method.
func methodOf(t *testing.T, method string) protoreflect.MethodDescriptor {
	t.Helper()
	name := method[strings.LastIndexByte(method, '/')+1:]
	md := pb.File_api_blobgc_v1_blobgc_proto.Services().ByName("BlobGC").Methods().ByName(protoreflect.Name(name))
	if md == nil {
		t.Fatalf("no method %s", method)
	}
	return md
}

// matrixRequests is a valid request for every API method, harmless when
// allowed: reads, writes of test hashes, no-op membership calls.
func matrixRequests(c *clustertest.Cluster) map[string]proto.Message {
	leader := c.Leader()
	other := c.Followers()[0]
	hist := int64(defaultGC().HistoryLimit)
	h := hashes(900, 1)
	return map[string]proto.Message{
		pb.BlobGC_Report_FullMethodName:             &pb.ReportRequest{NodeId: "vm-1", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: h},
		pb.BlobGC_DeregisterNode_FullMethodName:     &pb.DeregisterNodeRequest{NodeId: "vm-1"},
		pb.BlobGC_RegisterBlobs_FullMethodName:      &pb.HashesRequest{Hashes: h},
		pb.BlobGC_Pin_FullMethodName:                &pb.HashesRequest{Hashes: h},
		pb.BlobGC_Unpin_FullMethodName:              &pb.HashesRequest{Hashes: h},
		pb.BlobGC_GetStatus_FullMethodName:          &pb.GetStatusRequest{Hash: h[0]},
		pb.BlobGC_ListBlobs_FullMethodName:          &pb.ListBlobsRequest{},
		pb.BlobGC_GetStats_FullMethodName:           &pb.GetStatsRequest{},
		pb.BlobGC_ListNodes_FullMethodName:          &pb.ListNodesRequest{},
		pb.BlobGC_RunCycle_FullMethodName:           &pb.RunCycleRequest{},
		pb.BlobGC_PruneStaleNodes_FullMethodName:    &pb.PruneStaleNodesRequest{},
		pb.BlobGC_History_FullMethodName:            &pb.HistoryRequest{},
		pb.BlobGC_GetConfig_FullMethodName:          &pb.GetConfigRequest{},
		pb.BlobGC_SetConfig_FullMethodName:          &pb.SetConfigRequest{HistoryLimit: &hist},
		pb.BlobGC_ListEligible_FullMethodName:       &pb.ListEligibleRequest{},
		pb.BlobGC_Claim_FullMethodName:              &pb.HashesRequest{Hashes: h},
		pb.BlobGC_ConfirmCollected_FullMethodName:   &pb.HashesRequest{Hashes: h},
		pb.BlobGC_Members_FullMethodName:            &pb.MembersRequest{},
		pb.BlobGC_AddServer_FullMethodName:          &pb.AddServerRequest{Id: other.ID(), Address: other.Addr()},
		pb.BlobGC_RemoveServer_FullMethodName:       &pb.RemoveServerRequest{Id: "not-a-member"},
		pb.BlobGC_TransferLeadership_FullMethodName: &pb.TransferLeadershipRequest{TargetId: leader.ID()},
		pb.BlobGC_Digest_FullMethodName:             &pb.DigestRequest{},
		pb.BlobGC_SaveSnapshot_FullMethodName:       &pb.SaveSnapshotRequest{},
	}
}

// Every role × every API method, as the role table says, against a real
// TLS cluster through a follower (so allowed writes are forwarded with the
// caller's principal and authorised again on the leader; SaveSnapshot, which
// is not forwarded, through the leader). A denied call is PermissionDenied,
// names the roles it needed and changes nothing.
func TestRoleMatrix(t *testing.T) {
	ac := startAuthCluster(t, true, nil)
	reqs := matrixRequests(ac.Cluster)
	var names []string
	for _, m := range pb.BlobGC_ServiceDesc.Methods {
		names = append(names, m.MethodName)
	}
	for _, m := range pb.BlobGC_ServiceDesc.Streams {
		names = append(names, m.StreamName)
	}
	for _, name := range names {
		full := "/" + pb.BlobGC_ServiceDesc.ServiceName + "/" + name
		if _, ok := reqs[full]; !ok {
			t.Fatalf("the matrix has no request for %s", full)
		}
	}
	follower := ac.conn(t, ac.Followers()[0], "", "")
	ctx := ctxT(t, 5*time.Minute)
	for _, method := range auth.Methods() {
		roles, _ := auth.RolesFor(method)
		cc := follower
		if method == pb.BlobGC_SaveSnapshot_FullMethodName {
			// Snapshots are saved from the leader, not forwarded: a
			// follower answers an allowed call Unavailable until the
			// retries of call give up, a minute later.
			cc = ac.conn(t, ac.Leader(), "", "")
		}
		for _, r := range auth.Roles {
			_, before := ac.WaitConverged()
			err := call(t, withToken(ctx, ac.tokens[r]), cc, method, reqs[method])
			code := status.Code(err)
			if auth.Allowed(method, r) {
				if code == codes.PermissionDenied || code == codes.Unauthenticated {
					t.Errorf("%s as %s: %v, want allowed", method, r, err)
				}
				continue
			}
			if code != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "needs role "+auth.JoinRoles(roles)) {
				t.Errorf("%s as %s: %v, want PermissionDenied naming role %s", method, r, err, auth.JoinRoles(roles))
			}
			if _, after := ac.WaitConverged(); after != before {
				t.Errorf("%s as %s: denied, but the state digest changed", method, r)
			}
		}
	}
}

// Calls of every method without credentials, or with a bad token, are
// Unauthenticated and change nothing, as are calls with a CA-signed
// certificate that names no identity; the health service stays open.
func TestUnauthenticated(t *testing.T) {
	ac := startAuthCluster(t, true, nil)
	ctx := ctxT(t, time.Minute)
	reqs := matrixRequests(ac.Cluster)
	_, before := ac.WaitConverged()
	for _, s := range ac.Running() {
		cc := ac.conn(t, s, "", "")
		for name, token := range map[string]string{"no credentials": "", "unknown token": "not-a-token"} {
			for method, req := range reqs {
				err := call(t, withToken(ctx, token), cc, method, req)
				if status.Code(err) != codes.Unauthenticated {
					t.Fatalf("%s: %s on %s: %v, want Unauthenticated", name, method, s.ID(), err)
				}
			}
		}
		anonCert, anonKey := ac.pki.WriteIdentity(t, "no-identity", false, "")
		err := call(t, ctx, ac.conn(t, s, anonCert, anonKey), pb.BlobGC_GetStats_FullMethodName, &pb.GetStatsRequest{})
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "names no blobgc identity") {
			t.Fatalf("a certificate without an identity on %s: %v, want Unauthenticated", s.ID(), err)
		}
		bad := metadata.AppendToOutgoingContext(ctx, "authorization", "Basic dXNlcjpwdw==")
		if err := call(t, bad, cc, pb.BlobGC_GetStats_FullMethodName, &pb.GetStatsRequest{}); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "Bearer") {
			t.Fatalf("basic auth: %v", err)
		}
		if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("health without credentials: %v", err)
		}
	}
	if _, after := ac.WaitConverged(); after != before {
		t.Fatal("unauthenticated calls changed the state")
	}
}

// A client cannot borrow the forwarding headers: a reader that marks its
// call forwarded and names an admin principal is still a reader, on the
// leader and on a follower; a server certificate of a non-member gets no
// further; and an unauthenticated caller stays unauthenticated.
func TestForgedForwardingHeaders(t *testing.T) {
	ac := startAuthCluster(t, true, nil)
	ctx := ctxT(t, time.Minute)
	forged := func(token string) context.Context {
		return withToken(metadata.AppendToOutgoingContext(ctx, "blobgc-forwarded", "s1", "blobgc-principal", "admin:root"), token)
	}
	grace := int64(0)
	setGrace := &pb.SetConfigRequest{GracePeriodNs: &grace}
	_, before := ac.WaitConverged()
	strangerCert, strangerKey := ac.pki.WriteIdentity(t, "s9", true, "spiffe://blobgc/server/s9")
	for _, s := range []*cluster.Server{ac.Leader(), ac.Followers()[0]} {
		err := call(t, forged(ac.tokens[auth.RoleReader]), ac.conn(t, s, "", ""), pb.BlobGC_SetConfig_FullMethodName, setGrace)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "reader:p-reader") {
			t.Fatalf("forged headers with a reader token on %s: %v, want PermissionDenied for the reader", s.ID(), err)
		}
		if err := call(t, forged(""), ac.conn(t, s, "", ""), pb.BlobGC_SetConfig_FullMethodName, setGrace); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("forged headers without credentials on %s: %v, want Unauthenticated", s.ID(), err)
		}
		err = call(t, forged(""), ac.conn(t, s, strangerCert, strangerKey), pb.BlobGC_SetConfig_FullMethodName, setGrace)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "server:s9") {
			t.Fatalf("forged headers from a non-member server certificate on %s: %v, want PermissionDenied", s.ID(), err)
		}
	}
	if _, after := ac.WaitConverged(); after != before {
		t.Fatal("forged forwarding headers changed the state")
	}
	if got := ac.Leader().FSM().Config().GracePeriod; got == 0 {
		t.Fatal("grace period set to 0 by a forged call")
	}
}

// A node credential reports and deregisters only as the node ids it names,
// whether it is a token or a client certificate.
func TestNodeActsOnlyAsItself(t *testing.T) {
	ac := startAuthCluster(t, true, nil)
	ctx := ctxT(t, time.Minute)
	f := ac.Followers()[0]
	report := func(node string) *pb.ReportRequest {
		return &pb.ReportRequest{NodeId: node, Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: hashes(0, 2)}
	}
	vm3Cert, vm3Key := ac.pki.WriteIdentity(t, "vm-3", false, "spiffe://blobgc/node/vm-3")
	viaToken := withToken(ctx, ac.tokens[auth.RoleNode])
	if err := call(t, viaToken, ac.conn(t, f, "", ""), pb.BlobGC_Report_FullMethodName, report("vm-1")); err != nil {
		t.Fatalf("node token reporting as its own node: %v", err)
	}
	if err := call(t, ctx, ac.conn(t, f, vm3Cert, vm3Key), pb.BlobGC_Report_FullMethodName, report("vm-3")); err != nil {
		t.Fatalf("node certificate reporting as its own node: %v", err)
	}
	_, before := ac.WaitConverged()
	for _, s := range []*cluster.Server{ac.Leader(), f} {
		for name, c := range map[string]struct {
			ctx context.Context
			cc  *grpc.ClientConn
		}{"token": {viaToken, ac.conn(t, s, "", "")}, "certificate": {ctx, ac.conn(t, s, vm3Cert, vm3Key)}} {
			err := call(t, c.ctx, c.cc, pb.BlobGC_Report_FullMethodName, report("vm-2"))
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `"vm-2"`) {
				t.Fatalf("node %s reporting as vm-2 on %s: %v, want PermissionDenied", name, s.ID(), err)
			}
			err = call(t, c.ctx, c.cc, pb.BlobGC_DeregisterNode_FullMethodName, &pb.DeregisterNodeRequest{NodeId: "vm-2"})
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("node %s deregistering vm-2 on %s: %v, want PermissionDenied", name, s.ID(), err)
			}
		}
	}
	if _, after := ac.WaitConverged(); after != before {
		t.Fatal("a node acting as another changed the state")
	}
}

// A token removed from the file is refused once the servers reload it; a
// token file that does not parse leaves the previous tokens in use.
func TestTokenRevokedByReload(t *testing.T) {
	ac := startAuthCluster(t, true, nil)
	ctx := ctxT(t, time.Minute)
	f := ac.Followers()[0]
	op := withToken(ctx, ac.tokens[auth.RoleOperator])
	if err := call(t, op, ac.conn(t, f, "", ""), pb.BlobGC_Pin_FullMethodName, &pb.HashesRequest{Hashes: hashes(0, 1)}); err != nil {
		t.Fatal(err)
	}
	reload := func() error {
		var errs []error
		for _, s := range ac.Running() {
			if err := s.ReloadTokens(); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return errs[0]
		}
		return nil
	}
	if err := os.WriteFile(ac.tokenFile, []byte("not a token line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := reload(); err == nil {
		t.Fatal("reloading a broken token file succeeded")
	}
	if err := call(t, op, ac.conn(t, f, "", ""), pb.BlobGC_Pin_FullMethodName, &pb.HashesRequest{Hashes: hashes(1, 1)}); err != nil {
		t.Fatalf("after a failed reload the old tokens must still work: %v", err)
	}
	// Keep every token but the operator's.
	if err := os.WriteFile(ac.tokenFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, r := range auth.Roles {
		if r != auth.RoleOperator {
			if err := auth.AppendToken(ac.tokenFile, ac.tokens[r], testPrincipal(r)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := reload(); err != nil {
		t.Fatal(err)
	}
	_, before := ac.WaitConverged()
	for _, s := range ac.Running() {
		err := call(t, op, ac.conn(t, s, "", ""), pb.BlobGC_Pin_FullMethodName, &pb.HashesRequest{Hashes: hashes(2, 1)})
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("revoked token on %s: %v, want Unauthenticated", s.ID(), err)
		}
	}
	if _, after := ac.WaitConverged(); after != before {
		t.Fatal("a revoked token changed the state")
	}
	if err := call(t, withToken(ctx, ac.tokens[auth.RoleAdmin]), ac.conn(t, f, "", ""), pb.BlobGC_Pin_FullMethodName, &pb.HashesRequest{Hashes: hashes(2, 1)}); err != nil {
		t.Fatalf("a token kept in the file: %v", err)
	}
}

// Without TLS (--insecure with a token file) there are no verified peers:
// the leader authenticates the bearer token the follower forwards, and a
// principal header from anyone counts for nothing.
func TestTokensWithoutTLS(t *testing.T) {
	ac := startAuthCluster(t, false, nil)
	ctx := ctxT(t, time.Minute)
	f := ac.Followers()[0]
	if err := call(t, withToken(ctx, ac.tokens[auth.RoleOperator]), ac.conn(t, f, "", ""), pb.BlobGC_RegisterBlobs_FullMethodName, &pb.HashesRequest{Hashes: hashes(0, 1)}); err != nil {
		t.Fatalf("operator through a follower: %v", err)
	}
	_, before := ac.WaitConverged()
	grace := int64(0)
	for _, s := range ac.Running() {
		fctx := metadata.AppendToOutgoingContext(withToken(ctx, ac.tokens[auth.RoleReader]), "blobgc-forwarded", "s1", "blobgc-principal", "admin:root")
		if err := call(t, fctx, ac.conn(t, s, "", ""), pb.BlobGC_SetConfig_FullMethodName, &pb.SetConfigRequest{GracePeriodNs: &grace}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("reader with a forged principal on %s: %v, want PermissionDenied", s.ID(), err)
		}
		if err := call(t, ctx, ac.conn(t, s, "", ""), pb.BlobGC_GetStats_FullMethodName, &pb.GetStatsRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("no token on %s: %v, want Unauthenticated", s.ID(), err)
		}
	}
	if _, after := ac.WaitConverged(); after != before {
		t.Fatal("refused calls changed the state")
	}
}

// A server may add only itself (joining); a server joining a TLS cluster with
// its own server certificate is admitted through a follower.
func TestServerJoinsOnlyAsItself(t *testing.T) {
	ac := startAuthCluster(t, true, nil)
	ctx := ctxT(t, time.Minute)
	f := ac.Followers()[0]
	cert, key := ac.pki.WriteIdentity(t, "s4", true, "spiffe://blobgc/server/s4")
	err := call(t, ctx, ac.conn(t, f, cert, key), pb.BlobGC_AddServer_FullMethodName, &pb.AddServerRequest{Id: "s5", Address: "127.0.0.1:1"})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "only itself") {
		t.Fatalf("server s4 adding s5: %v, want PermissionDenied", err)
	}
	cfg := clustertest.TestConfig("s4", t.TempDir())
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Join = []string{f.Addr()}
	cfg.TokenFile = ac.tokenFile
	cfg.TLS = cluster.TLSFiles{CertFile: cert, KeyFile: key, CAFile: ac.pki.CA}
	s4 := ac.Add(cfg)
	ac.Eventually(time.Minute, "s4 to apply the cluster's state", func() bool {
		_, d := ac.Leader().FSM().Digest()
		_, d4 := s4.FSM().Digest()
		return d == d4
	})
	member := false
	for _, srv := range ac.Leader().Raft().GetConfiguration().Configuration().Servers {
		member = member || srv.ID == "s4"
	}
	if !member {
		t.Fatal("s4 is not in the configuration after joining")
	}
}

// A denied call is counted in blobgc_auth_denied_total and logged with the
// principal and method; every write that reaches the log has an audit line.
func TestDeniedCountedAndAudited(t *testing.T) {
	logs := &clustertest.SyncBuffer{}
	ac := startAuthCluster(t, true, func(i int, c *cluster.Config) {
		c.MetricsAddr = "127.0.0.1:0"
		c.Logger = clustertest.LoggerTo(logs, c.ID)
	})
	ctx := ctxT(t, time.Minute)
	l := ac.Leader()
	cc := ac.conn(t, l, "", "")
	if err := call(t, withToken(ctx, ac.tokens[auth.RoleReader]), cc, pb.BlobGC_Pin_FullMethodName, &pb.HashesRequest{Hashes: hashes(0, 1)}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("reader pin: %v", err)
	}
	if err := call(t, withToken(ctx, ac.tokens[auth.RoleOperator]), cc, pb.BlobGC_Pin_FullMethodName, &pb.HashesRequest{Hashes: hashes(0, 3)}); err != nil {
		t.Fatal(err)
	}
	metrics := scrape(t, l.HTTPURL())
	if want := `blobgc_auth_denied_total{method="Pin",role="reader"} 1`; !strings.Contains(metrics, want) {
		t.Fatalf("metrics lack %s", want)
	}
	out := logs.String()
	for _, want := range [][]string{
		{"auth: permission denied", "principal=reader:p-reader", "method=/blobgc.v1.BlobGC/Pin", "needs role operator or admin"},
		{"audit: write", "principal=operator:p-operator", "method=/blobgc.v1.BlobGC/Pin", "op=pin", "hashes=3", "result=ok"},
	} {
		if !hasLine(out, want...) {
			t.Fatalf("no log line with %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "token-of-") {
		t.Fatal("a token appears in the log")
	}
}

// scrape reads /metrics from a server's HTTP listener at base (HTTPURL).
func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := testHTTPClient.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hasLine reports whether one line of out holds every part.
func hasLine(out string, parts ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
