package cluster_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

// startHTTPCluster is startAuthCluster with every server's HTTP listener on.
func startHTTPCluster(t *testing.T, withTLS bool) *authCluster {
	return startAuthCluster(t, withTLS, func(_ int, c *cluster.Config) { c.MetricsAddr = "127.0.0.1:0" })
}

// httpReply is one JSON answer of the HTTP API.
type httpReply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// grpcCode is the gRPC code of an error answer ({"code": N, "message": ...}).
func (r httpReply) grpcCode() codes.Code {
	c, _ := r.body["code"].(float64)
	return codes.Code(c)
}

// httpCall sends one request with the header Authorization: authorization
// (none if ""), retrying while the cluster has no leader (503).
func httpCall(t *testing.T, method, url, authorization string, body any, header ...string) httpReply {
	t.Helper()
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		req, err := http.NewRequest(method, url, bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := testHTTPClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r := httpReply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
		_ = json.Unmarshal(raw, &r.body)
		if r.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func bearer(token string) string { return "Bearer " + token }

func b64(h []byte) string { return base64.StdEncoding.EncodeToString(h) }

func b64s(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = b64(h)
	}
	return out
}

func baseURL(s *cluster.Server) string { return s.HTTPURL() }

// testRoots holds the CA of every test cluster with TLS (startAuthCluster
// adds them; tests of this package do not run in parallel), so that
// testHTTPClient verifies any test server's HTTPS.
var testRoots = x509.NewCertPool()

func trustTestCA(t *testing.T, caFile string) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	testRoots.AppendCertsFromPEM(pem)
}

// testHTTPClient speaks HTTP, and HTTPS to servers of the test CAs.
var testHTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: testRoots}}}

// A VM node's full and delta report, a status, and a sweeper's claim and
// confirm, all as JSON over HTTP through a follower of a TLS cluster with
// the role tokens; the leader header comes back as an HTTP header, and bad
// input is a JSON error with the gRPC code and message.
func TestHTTPNodeAndSweeperFlow(t *testing.T) {
	ac := startHTTPCluster(t, true)
	f := baseURL(ac.Followers()[0])
	op, node, sweeper := bearer(ac.tokens[auth.RoleOperator]), bearer(ac.tokens[auth.RoleNode]), bearer(ac.tokens[auth.RoleSweeper])
	h := hashes(100, 3)

	if r := httpCall(t, "POST", f+"/v1/blobs/register", op, map[string]any{"hashes": b64s(h)}); r.status != 200 || r.body["changed"] != "3" {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	r := httpCall(t, "POST", f+"/v1/nodes/vm-1/report", node, map[string]any{"kind": "REPORT_KIND_FULL", "seq": 1, "active": b64s(h[:2])})
	if r.status != 200 || r.body["seq"] != "1" {
		t.Fatalf("full report: %d %s", r.status, r.raw)
	}
	if r.header.Get("Grpc-Metadata-Blobgc-Leader") != ac.Leader().Addr() {
		t.Errorf("leader header %q, want %s", r.header.Get("Grpc-Metadata-Blobgc-Leader"), ac.Leader().Addr())
	}
	r = httpCall(t, "POST", f+"/v1/nodes/vm-1/report", node, map[string]any{"kind": "REPORT_KIND_DELTA", "seq": 2, "removed_active": b64s(h[1:2])})
	if r.status != 200 || r.body["seq"] != "2" {
		t.Fatalf("delta report: %d %s", r.status, r.raw)
	}
	r = httpCall(t, "GET", f+"/v1/blobs/"+base64.URLEncoding.EncodeToString(h[0]), node, nil)
	if r.status != 200 || r.body["state"] != "BLOB_STATE_ACTIVE" || !strings.Contains(r.raw, `"referenced_by":["vm-1"]`) {
		t.Fatalf("status of a reported blob: %d %s", r.status, r.raw)
	}

	// A delta with a gap: FailedPrecondition, with the detail saying what
	// seq the server expected.
	r = httpCall(t, "POST", f+"/v1/nodes/vm-1/report", node, map[string]any{"kind": "REPORT_KIND_DELTA", "seq": 9})
	if r.status != 400 || r.grpcCode() != codes.FailedPrecondition || !strings.Contains(r.raw, `"expected_seq":"3"`) {
		t.Fatalf("a delta with a gap: %d %s, want FailedPrecondition naming expected_seq 3", r.status, r.raw)
	}
	// h[1] and h[2] are unreferenced; with no grace period, one cycle marks them.
	if r := httpCall(t, "PATCH", f+"/v1/config", bearer(ac.tokens[auth.RoleAdmin]), map[string]any{"grace_period_ns": 0}); r.status != 200 {
		t.Fatalf("set config: %d %s", r.status, r.raw)
	}
	if r := httpCall(t, "POST", f+"/v1/cycles", op, map[string]any{}); r.status != 200 || !strings.Contains(r.raw, b64(h[2])) {
		t.Fatalf("cycle: %d %s, want h2 newly marked", r.status, r.raw)
	}
	r = httpCall(t, "POST", f+"/v1/claims", sweeper, map[string]any{"hashes": b64s(h)})
	if r.status != 200 || !strings.Contains(r.raw, b64(h[1])) || !strings.Contains(r.raw, b64(h[2])) || strings.Contains(r.raw, b64(h[0])) {
		t.Fatalf("claim: %d %s, want h1 and h2 granted, not the active h0", r.status, r.raw)
	}
	if r := httpCall(t, "POST", f+"/v1/collected", sweeper, map[string]any{"hashes": b64s(h[1:])}); r.status != 200 {
		t.Fatalf("confirm: %d %s", r.status, r.raw)
	}
	if r := httpCall(t, "GET", f+"/v1/blobs/"+base64.URLEncoding.EncodeToString(h[2])+"?consistency=CONSISTENCY_LINEARIZABLE", op, nil); r.body["state"] != "BLOB_STATE_COLLECTED" {
		t.Fatalf("after confirm: %s", r.raw)
	}

	// Bad input: a short hash and an unknown field are InvalidArgument, as
	// JSON with the gRPC code and a message that says what is wrong.
	_, before := ac.WaitConverged()
	for _, bad := range []struct {
		body any
		want string
	}{
		{map[string]any{"hashes": []string{"AAEC"}}, "want 32 bytes"},
		{map[string]any{"hashs": b64s(h)}, `unknown field "hashs"`},
	} {
		r := httpCall(t, "POST", f+"/v1/blobs/pin", op, bad.body)
		if r.status != 400 || r.grpcCode() != codes.InvalidArgument || !strings.Contains(r.body["message"].(string), bad.want) {
			t.Errorf("pin %v: %d %s, want 400 InvalidArgument saying %q", bad.body, r.status, r.raw, bad.want)
		}
	}
	huge := map[string]any{"hashes": []string{strings.Repeat("A", 17<<20)}}
	if r := httpCall(t, "POST", f+"/v1/blobs/pin", op, huge); r.status != 429 || r.grpcCode() != codes.ResourceExhausted || !strings.Contains(r.raw, "over the limit") {
		t.Errorf("a 17 MB body: %d %.300s, want 429 ResourceExhausted", r.status, r.raw)
	}
	if _, after := ac.WaitConverged(); after != before {
		t.Error("refused input changed the state")
	}
}

// Over HTTP the role table applies as over gRPC: through a follower, every
// role either may call a write (200) or is refused with 403 and
// PermissionDenied naming the roles it needs, and a refused call changes
// nothing.
func TestHTTPRolesApply(t *testing.T) {
	ac := startHTTPCluster(t, true)
	f := baseURL(ac.Followers()[0])
	h := hashes(200, 1)
	calls := []struct {
		method, grpc, verb, path string
		body                     any
	}{
		{"Pin", "/blobgc.v1.BlobGC/Pin", "POST", "/v1/blobs/pin", map[string]any{"hashes": b64s(h)}},
		{"Claim", "/blobgc.v1.BlobGC/Claim", "POST", "/v1/claims", map[string]any{"hashes": b64s(h)}},
		{"ListNodes", "/blobgc.v1.BlobGC/ListNodes", "GET", "/v1/nodes", nil},
		{"GetStats", "/blobgc.v1.BlobGC/GetStats", "GET", "/v1/stats", nil},
	}
	for _, c := range calls {
		roles, _ := auth.RolesFor(c.grpc)
		for _, role := range auth.Roles {
			_, before := ac.WaitConverged()
			r := httpCall(t, c.verb, f+c.path, bearer(ac.tokens[role]), c.body)
			if auth.Allowed(c.grpc, role) {
				if r.status != 200 {
					t.Errorf("%s as %s: %d %s, want 200", c.method, role, r.status, r.raw)
				}
				continue
			}
			if r.status != 403 || r.grpcCode() != codes.PermissionDenied || !strings.Contains(r.raw, "needs role "+auth.JoinRoles(roles)) {
				t.Errorf("%s as %s: %d %s, want 403 PermissionDenied naming %s", c.method, role, r.status, r.raw, auth.JoinRoles(roles))
			}
			if _, after := ac.WaitConverged(); after != before {
				t.Errorf("%s as %s: denied, but the state changed", c.method, role)
			}
		}
	}
}

// With authentication on, an HTTP call without a token is Unauthenticated
// on every server, with and without TLS. With TLS the gateway's loopback
// connection presents the server's own certificate: that must not make
// the HTTP caller a server (Members and AddServer admit the server role),
// and headers that would name a forwarded principal are not passed on.
func TestHTTPAnonymousIsUnauthenticated(t *testing.T) {
	for _, withTLS := range []bool{true, false} {
		ac := startHTTPCluster(t, withTLS)
		admin := auth.EncodePrincipal(auth.Principal{Name: "mallory", Role: auth.RoleAdmin})
		_, before := ac.WaitConverged()
		for _, s := range ac.Running() {
			for _, c := range []struct {
				verb, path string
				body       any
			}{
				{"GET", "/v1/stats", nil},
				{"GET", "/v1/members", nil},
				{"POST", "/v1/members", map[string]any{"id": "s9", "address": "127.0.0.1:1"}},
				{"POST", "/v1/blobs/register", map[string]any{"hashes": b64s(hashes(300, 1))}},
				{"GET", "/v1/digest", nil},
			} {
				for _, hdr := range [][]string{nil,
					{"Grpc-Metadata-Blobgc-Principal", admin, "Grpc-Metadata-Blobgc-Forwarded", "1"},
					{"Blobgc-Principal", admin}} {
					r := httpCall(t, c.verb, baseURL(s)+c.path, "", c.body, hdr...)
					if r.status != 401 || r.grpcCode() != codes.Unauthenticated || !strings.Contains(r.raw, "Bearer") {
						t.Errorf("tls=%v %s %s on %s with headers %v: %d %s, want 401 Unauthenticated", withTLS, c.verb, c.path, s.ID(), hdr, r.status, r.raw)
					}
				}
			}
			if r := httpCall(t, "GET", baseURL(s)+"/v1/stats", bearer("not-a-token"), nil); r.status != 401 {
				t.Errorf("unknown token: %d %s", r.status, r.raw)
			}
		}
		if _, after := ac.WaitConverged(); after != before {
			t.Errorf("tls=%v: unauthenticated calls changed the state", withTLS)
		}
	}
}

// The page needs a role that may read: without a token it answers 401 with
// the login form, for a node token 403, for the reader 200 with the leader;
// the login form keeps a valid token in an HttpOnly cookie that later
// requests use, and refuses a bad one.
func TestUIPageRoles(t *testing.T) {
	ac := startHTTPCluster(t, true)
	u := baseURL(ac.Followers()[0]) + "/ui"
	if r := httpCall(t, "GET", u, "", nil); r.status != 401 || !strings.Contains(r.raw, `name="token"`) {
		t.Fatalf("anonymous: %d %s, want 401 and the login form", r.status, r.raw)
	}
	if r := httpCall(t, "GET", u, bearer(ac.tokens[auth.RoleNode]), nil); r.status != 403 || !strings.Contains(r.raw, "needs role reader") {
		t.Fatalf("node: %d %s, want 403", r.status, r.raw)
	}
	for _, role := range auth.Roles {
		roles, _ := auth.PageRolesFor(auth.PageUI)
		r := httpCall(t, "GET", u+"/body", bearer(ac.tokens[role]), nil)
		if want := auth.PageAllowed(auth.PageUI, role); want != (r.status == 200) {
			t.Errorf("/ui/body as %s: %d, want allowed=%v (page roles %v)", role, r.status, want, roles)
		}
	}
	leader := ac.Leader().ID()
	clustertest.Eventually(t, time.Minute, "the page shows leader "+leader, func() bool {
		r := httpCall(t, "GET", u, bearer(ac.tokens[auth.RoleReader]), nil)
		return r.status == 200 && strings.Contains(r.raw, `<b id="leader">`+leader+`</b>`)
	})

	noRedirect := &http.Client{Transport: testHTTPClient.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(u+"/login", url.Values{"token": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
		t.Fatalf("login with a bad token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	resp, err = noRedirect.PostForm(u+"/login", url.Values{"token": {ac.tokens[auth.RoleReader]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("login: %d, cookies %v", resp.StatusCode, cookies)
	}
	req, _ := http.NewRequest("GET", u, nil)
	req.AddCookie(cookies[0])
	resp, err = testHTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with the login cookie: %d", resp.StatusCode)
	}
	// The JSON API does not take the cookie.
	req, _ = http.NewRequest("GET", baseURL(ac.Followers()[0])+"/v1/stats", nil)
	req.AddCookie(cookies[0])
	if resp, err = testHTTPClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("the API with the page's cookie: %d, want 401", resp.StatusCode)
	}
}

// Without a leader the page still answers from the server's own applied
// state and says that it may be stale.
func TestUIWithoutLeaderSaysStale(t *testing.T) {
	ac := startHTTPCluster(t, false)
	reader := bearer(ac.tokens[auth.RoleReader])
	if r := httpCall(t, "POST", baseURL(ac.Leader())+"/v1/blobs/register", bearer(ac.tokens[auth.RoleOperator]), map[string]any{"hashes": b64s(hashes(400, 7))}); r.status != 200 {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	ac.WaitConverged()
	survivor := ac.Followers()[0]
	if r := httpCall(t, "GET", baseURL(survivor)+"/ui/body", reader, nil); r.status != 200 || strings.Contains(r.raw, `id="stale"`) {
		t.Fatalf("with a leader: %d, stale banner shown: %s", r.status, r.raw)
	}
	for _, s := range ac.Running() {
		if s != survivor {
			ac.Kill(ac.Index(s))
		}
	}
	r := httpCall(t, "GET", baseURL(survivor)+"/ui/body", reader, nil)
	if r.status != 200 || !strings.Contains(r.raw, `id="stale"`) || !strings.Contains(r.raw, "<b>7</b><span>active</span>") {
		t.Fatalf("without a leader: %d %s, want the stale banner and the 7 active blobs this server applied", r.status, r.raw)
	}
}

// A write over HTTP is audited as the HTTP caller (not as the server whose
// loopback connection carried it), and a refused page is logged and counted.
func TestHTTPAuditedAsTheCaller(t *testing.T) {
	logs := &clustertest.SyncBuffer{}
	ac := startAuthCluster(t, true, func(_ int, c *cluster.Config) {
		c.MetricsAddr = "127.0.0.1:0"
		c.Logger = clustertest.LoggerTo(logs, c.ID)
	})
	f := ac.Followers()[0]
	if r := httpCall(t, "POST", baseURL(f)+"/v1/blobs/register", bearer(ac.tokens[auth.RoleOperator]), map[string]any{"hashes": b64s(hashes(500, 2))}); r.status != 200 {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
	if r := httpCall(t, "GET", baseURL(f)+"/ui", bearer(ac.tokens[auth.RoleNode]), nil); r.status != 403 {
		t.Fatalf("page as node: %d", r.status)
	}
	out := logs.String()
	for _, want := range [][]string{
		{"audit: write", "principal=operator:p-operator", "method=/blobgc.v1.BlobGC/RegisterBlobs", "hashes=2", "result=ok"},
		{"auth: permission denied", "principal=node:p-node", "method=/ui", "needs role reader or sweeper or operator or admin"},
	} {
		if !hasLine(out, want...) {
			t.Fatalf("no log line with %q:\n%s", want, out)
		}
	}
	if want := `blobgc_auth_denied_total{method="ui",role="node"} 1`; !strings.Contains(scrape(t, f.HTTPURL()), want) {
		t.Errorf("metrics lack %s", want)
	}
}
