package gateway_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/metadata"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

// chromium finds a Chromium or Chrome binary. Without one the test skips,
// unless BLOBGC_REQUIRE_BROWSER is set (CI sets it), where it fails.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("BLOBGC_REQUIRE_BROWSER") != "" {
		t.Fatal("no Chromium on PATH, and BLOBGC_REQUIRE_BROWSER is set: the browser test of /ui must run")
	}
	t.Skip("no Chromium on PATH (scripts/test.sh installs Debian's chromium with apt-get; here it could not be installed): skipping the browser test of /ui")
	return ""
}

// artifacts is a directory kept after the test for its screenshots:
// $BLOBGC_TEST_ARTIFACTS if set, else a new temporary directory.
func artifacts(t *testing.T) string {
	dir := os.Getenv("BLOBGC_TEST_ARTIFACTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "blobgc-ui-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots of /ui go to %s", dir)
	return dir
}

func blobHash(i int) []byte {
	h := sha256.Sum256([]byte(fmt.Sprintf("blob-%d", i)))
	return h[:]
}

// The operator's page in a real browser against a real 3-server cluster
// with authentication on: the login form admits the reader's token, the
// page shows the leader, a lookup of a blob a node pins names that node,
// a lookup of a collected blob says it is collected (and by whom, once the
// status carries provenance), and killing the leader shows a new one on
// the page without reloading it.
func TestUIInBrowser(t *testing.T) {
	exe := chromium(t)
	shots := artifacts(t)

	tokens := filepath.Join(t.TempDir(), "tokens")
	for _, r := range auth.Roles {
		p := auth.Principal{Name: "p-" + string(r), Role: r}
		if r == auth.RoleNode {
			p.Nodes = []string{"vm-1"}
		}
		if err := auth.AppendToken(tokens, "token-of-"+string(r), p); err != nil {
			t.Fatal(err)
		}
	}
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(_ int, cfg *cluster.Config) {
		cfg.TokenFile = tokens
		cfg.MetricsAddr = "127.0.0.1:0"
	}})

	// State worth looking at: nodes reporting, a pinned blob, cycles, and a
	// blob a sweeper claimed and confirmed.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	as := func(r auth.Role) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer token-of-"+string(r))
	}
	api := c.Client(c.Leader())
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var known [][]byte
	for i := range 40 {
		known = append(known, blobHash(i))
	}
	pinned, collected := known[0], known[39]
	zero := int64(0)
	must(api.SetConfig(as(auth.RoleAdmin), &pb.SetConfigRequest{GracePeriodNs: &zero}))
	must(api.RegisterBlobs(as(auth.RoleOperator), &pb.HashesRequest{Hashes: known}))
	for n := 1; n <= 4; n++ {
		must(api.Report(as(auth.RoleAdmin), &pb.ReportRequest{NodeId: fmt.Sprintf("vm-%d", n), Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1,
			Active: known[1 : 10*n-5], Pinned: known[:1]}))
		must(api.RunCycle(as(auth.RoleOperator), &pb.RunCycleRequest{}))
	}
	must(api.Claim(as(auth.RoleSweeper), &pb.HashesRequest{Hashes: [][]byte{collected}}))
	must(api.ConfirmCollected(as(auth.RoleSweeper), &pb.HashesRequest{Hashes: [][]byte{collected}}))
	must(api.RunCycle(as(auth.RoleOperator), &pb.RunCycleRequest{}))

	leader := c.Leader()
	var viewer *cluster.Server
	for _, s := range c.Followers() {
		viewer = s
	}
	page := "http://" + viewer.MetricsAddr() + "/ui"

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1440, 900),
		chromedp.Flag("disable-dev-shm-usage", true))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(browser, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	screenshot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(browser, chromedp.Screenshot(chromedp.CSS("#main")))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// waitText polls the element's text until cond holds (the page
	// refreshes itself every 2 s; a busy machine may take longer).
	waitText := func(sel, what string, cond func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		var text string
		for {
			tctx, tcancel := context.WithTimeout(browser, 5*time.Second)
			var err error
			text, err = chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
			tcancel()
			if err == nil && cond(text) {
				return text
			}
			if time.Now().After(deadline) {
				screenshot("failed.png")
				t.Fatalf("waiting for %s: %s reads %q (err %v)", what, sel, text, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	run("open the page and sign in as reader", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), "token-of-reader"), chromedp.Click(chromedp.CSS("#sign-in")))
	waitText("#leader", "the leader "+leader.ID(), func(s string) bool { return s == leader.ID() })
	waitText("#nodes", "four VM nodes", func(s string) bool { return strings.Contains(s, "vm-4") })
	screenshot("page.png")

	run("look up the pinned blob", chromedp.Navigate(page+"?blob="+hex.EncodeToString(pinned)))
	waitText("#lookup-pinned-by", "the nodes pinning it", func(s string) bool { return strings.Contains(s, "vm-1") && strings.Contains(s, "vm-4") })
	waitText("#lookup-state", "PINNED", func(s string) bool { return strings.HasPrefix(s, "PINNED") })
	screenshot("lookup-pinned.png")

	run("look up the collected blob", chromedp.Navigate(page+"?blob="+hex.EncodeToString(collected)))
	waitText("#lookup-state", "COLLECTED", func(s string) bool { return strings.HasPrefix(s, "COLLECTED") })
	if (&pb.BlobStatus{}).ProtoReflect().Descriptor().Fields().ByName("confirmed_by") != nil {
		waitText("#lookup-collected-by", "the sweeper that collected it", func(s string) bool { return strings.Contains(s, "p-sweeper") })
	} else {
		t.Log("BlobStatus has no confirmed_by field yet: the page shows COLLECTED but cannot say who collected it")
	}
	screenshot("lookup-collected.png")

	run("back to the overview", chromedp.Navigate(page))
	waitText("#leader", "the leader", func(s string) bool { return s == leader.ID() })
	killed := time.Now()
	c.Kill(c.Index(leader))
	now := waitText("#leader", "a new leader", func(s string) bool { return s != leader.ID() && s != "none known" })
	t.Logf("the page showed the new leader %s %v after the old one was killed", now, time.Since(killed).Round(time.Millisecond))
	waitText(fmt.Sprintf(`tr[data-member=%q]`, leader.ID()), "the killed leader unreachable", func(s string) bool { return strings.Contains(s, "unreachable") })
	screenshot("after-leader-killed.png")
}
