package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// syncBuf is a bytes.Buffer safe to read while a command writes to it.
type syncBuf = clustertest.SyncBuffer

// run executes the CLI in-process.
func run(t *testing.T, stdin string, args ...string) (stdout string, err error) {
	t.Helper()
	var out, errOut syncBuf
	root := newRoot(strings.NewReader(stdin), &out, &errOut)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), testtiming.Hang())
	defer cancel()
	err = root.ExecuteContext(ctx)
	return out.String(), err
}

// mustRun runs the CLI and fails the test on error.
func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := run(t, stdin, args...)
	if err != nil {
		t.Fatalf("blobgc %s: %v", strings.Join(args, " "), errorText(err))
	}
	return out
}

func jsonOf[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
	return v
}

func hashHex(i int) string { return fmt.Sprintf("%064x", i+1) }

func startCluster(t *testing.T) (*clustertest.Cluster, string) {
	tc := clustertest.Start(t, clustertest.Options{N: 3})
	var addrs []string
	for _, s := range tc.Followers() {
		addrs = append(addrs, s.Addr())
	}
	return tc, "--servers=" + strings.Join(addrs, ",")
}

func TestCLIWorkflow(t *testing.T) {
	tc, srv := startCluster(t)
	h := []string{hashHex(0), hashHex(1), hashHex(2), hashHex(3)}

	// Hashes as arguments, from stdin and from a file.
	file := filepath.Join(t.TempDir(), "hashes")
	if err := os.WriteFile(file, []byte("# comment\n"+h[3]+"\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, h[1]+"\n"+strings.ToUpper(h[2])+"\n", "register", h[0], "-", "--file", file, srv)
	if !strings.Contains(out, "Registered 4 hash(es): 4 changed") {
		t.Fatalf("register output: %q", out)
	}
	out = mustRun(t, "", "status", h[0], srv)
	if !strings.Contains(out, "HASH") || !strings.Contains(out, h[0]) || !strings.Contains(out, "ACTIVE") {
		t.Fatalf("status table: %q", out)
	}

	mustRun(t, "", "pin", h[0], srv)
	st := jsonOf[[]map[string]any](t, mustRun(t, "", "status", h[0], h[1], "-o", "json", srv))
	if len(st) != 2 || st[0]["hash"] != h[0] || st[0]["state"] != "PINNED" || st[0]["coordinator_pin"] != true || st[1]["state"] != "ACTIVE" {
		t.Fatalf("status json: %v", st)
	}
	mustRun(t, "", "unpin", h[0], srv)

	out = mustRun(t, "", "report", "--node", "vm-1", "--full", "--active", h[0]+","+h[1], srv)
	if !strings.Contains(out, "Full report of vm-1 applied: seq 1, 2 active") {
		t.Fatalf("report output: %q", out)
	}
	rep := jsonOf[map[string]any](t, mustRun(t, "", "report", "--node", "vm-1", "--delta", "--seq", "2", "--removed-active", h[1], "-o", "json", srv))
	if rep["seq"] != float64(2) || rep["duplicate"] != false {
		t.Fatalf("delta json: %v", rep)
	}
	nodes := jsonOf[[]map[string]any](t, mustRun(t, "", "nodes", "-o", "json", srv))
	if len(nodes) != 1 || nodes[0]["id"] != "vm-1" || nodes[0]["active"] != float64(1) || nodes[0]["seq"] != float64(2) {
		t.Fatalf("nodes: %v", nodes)
	}

	cfg := jsonOf[map[string]any](t, mustRun(t, "", "config", "set", "grace-period=0s", "stale-policy=hold", "max-eligible-fraction=0.9",
		"max-nodes=50", "max-staged-hashes=1000", "-o", "json", srv))
	if cfg["grace_period_ns"] != float64(0) || cfg["stale_policy"] != "HOLD" || cfg["max_eligible_fraction"] != 0.9 ||
		cfg["max_nodes"] != float64(50) || cfg["max_staged_hashes"] != float64(1000) {
		t.Fatalf("config set: %v", cfg)
	}
	out = mustRun(t, "", "config", "get", srv)
	if !strings.Contains(out, "grace-period") || !strings.Contains(out, "hold") {
		t.Fatalf("config get: %q", out)
	}

	dry := jsonOf[map[string]any](t, mustRun(t, "", "cycle", "--dry-run", "-o", "json", srv))
	if dry["dry_run"] != true {
		t.Fatalf("dry run: %v", dry)
	}
	mustRun(t, "", "cycle", srv)
	out = mustRun(t, "", "cycle", srv)
	if !strings.Contains(out, "Newly marked") || !strings.Contains(out, "marked") {
		t.Fatalf("cycle output: %q", out)
	}
	el := jsonOf[map[string][]string](t, mustRun(t, "", "eligible", "-o", "json", srv))
	if want := []string{h[1], h[2], h[3]}; strings.Join(el["hashes"], ",") != strings.Join(want, ",") {
		t.Fatalf("eligible %v, want %v", el["hashes"], want)
	}
	out = mustRun(t, "", "claim", h[1], h[2], srv)
	if out != h[1]+"\n"+h[2]+"\n" {
		t.Fatalf("claim output: %q", out)
	}
	mustRun(t, out, "confirm", "-", srv)
	st = jsonOf[[]map[string]any](t, mustRun(t, "", "status", h[1], "-o", "json", srv))
	if st[0]["state"] != "COLLECTED" {
		t.Fatalf("after confirm: %v", st)
	}
	hist := jsonOf[map[string][]map[string]any](t, mustRun(t, "", "history", "-o", "json", srv))
	if len(hist["events"]) != 2 {
		t.Fatalf("history: %v", hist)
	}
	if out := mustRun(t, "", "history", srv); !strings.Contains(out, "NEWLY_MARKED") {
		t.Fatalf("history table: %q", out)
	}
	// A stale read is answered by a follower, which may not have applied
	// the confirm yet.
	var stats map[string]any
	clustertest.Eventually(t, time.Minute, "a stale read that shows the confirm", func() bool {
		stats = jsonOf[map[string]any](t, mustRun(t, "", "stats", "-o", "json", "--stale", srv))
		return stats["known"] == float64(2) && stats["collected"] == float64(2)
	}, func() string { return fmt.Sprint(stats) })

	// Cluster operations.
	mem := jsonOf[map[string]any](t, mustRun(t, "", "members", "-o", "json", srv))
	if ms := mem["members"].([]any); len(ms) != 3 || mem["leader_address"] != tc.Leader().Addr() {
		t.Fatalf("members: %v", mem)
	}
	if out := mustRun(t, "", "members", srv); !strings.Contains(out, "leader") || !strings.Contains(out, "TRAILS_LEADER_BY") {
		t.Fatalf("members table: %q", out)
	}
	tc.WaitConverged()
	dg := jsonOf[map[string][]digestRow](t, mustRun(t, "", "digest", "-o", "json", srv))
	if rows := dg["servers"]; len(rows) != 3 || rows[0].Digest == "" || rows[0].Digest != rows[1].Digest || rows[1].Digest != rows[2].Digest {
		t.Fatalf("digests: %+v", dg)
	}
	// On a loaded machine a transfer can still be in progress when the
	// command's call gives up; the command is then run again.
	target := tc.Followers()[0].ID()
	for attempt := 1; ; attempt++ {
		out, err := run(t, "", "transfer-leader", target, srv)
		if err == nil {
			if !strings.Contains(out, "Leader is now "+target) {
				t.Fatalf("transfer-leader: %q", out)
			}
			break
		}
		if attempt == 5 || !strings.Contains(errorText(err), "leadership transfer in progress") {
			t.Fatalf("blobgc transfer-leader: %v", errorText(err))
		}
		if tc.Leader().ID() == target {
			break
		}
	}
}

func TestCLIMembership(t *testing.T) {
	tc, srv := startCluster(t)
	ids := func() []string {
		mem := jsonOf[map[string]any](t, mustRun(t, "", "members", "-o", "json", srv))
		var out []string
		for _, m := range mem["members"].([]any) {
			out = append(out, m.(map[string]any)["id"].(string))
		}
		return out
	}
	victim := tc.Followers()[1]
	srv = "--servers=" + tc.Followers()[0].Addr() // not the one removed
	out := mustRun(t, "", "remove", victim.ID(), srv)
	if strings.Contains(out, victim.Addr()) {
		t.Fatalf("removed server still listed: %q", out)
	}
	if got := ids(); len(got) != 2 {
		t.Fatalf("members after remove: %v", got)
	}
	tc.Kill(tc.Index(victim))
	// A new server joins by itself; adding it again through the CLI is a
	// no-op that lists it.
	cfg := clustertest.TestConfig("s4", filepath.Join(t.TempDir(), "s4"))
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Join = []string{tc.Followers()[0].Addr()}
	s4 := tc.Add(cfg)
	out = mustRun(t, "", "join", "s4", s4.Addr(), srv)
	if !strings.Contains(out, s4.Addr()) {
		t.Fatalf("join output: %q", out)
	}
	if got := ids(); len(got) != 3 {
		t.Fatalf("members after join: %v", got)
	}
	// A non-voter that does not exist yet: listed, then removed again.
	out = mustRun(t, "", "join", "s10", "127.0.0.1:1", "--non-voter", srv)
	if !strings.Contains(out, "s10") || !strings.Contains(out, "false") {
		t.Fatalf("join --non-voter output: %q", out)
	}
	mustRun(t, "", "remove", "s10", srv)
	if got := ids(); len(got) != 3 {
		t.Fatalf("members after removing s10: %v", got)
	}
}

func TestCLIBadInput(t *testing.T) {
	_, srv := startCluster(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"status", "abc"}, `bad hash "abc" (argument 1): hash must be 64 hex characters, got 3`},
		{[]string{"pin", hashHex(0), strings.Repeat("zz", 32)}, `bad hash "` + strings.Repeat("zz", 32) + `" (argument 2): hash is not hex`},
		{[]string{"register", hashHex(0) + "00"}, "got 66"},
		{[]string{"pin"}, "no hashes given"},
		{[]string{"status", hashHex(0), "-o", "yaml"}, `output format "yaml": want table or json`},
		{[]string{"config", "set", "bogus=1"}, `unknown config key "bogus"`},
		{[]string{"config", "set", "grace-period"}, "want key=value"},
		{[]string{"config", "set", "grace-period=soon"}, `grace-period: "soon"`},
		{[]string{"config", "set", "min-nodes=x"}, "want an integer"},
		{[]string{"config", "set", "stale-policy=keep"}, "want drop or hold"},
		{[]string{"config", "set", "grace-period=-1s"}, "InvalidArgument: grace_period -1s out of range"},
		{[]string{"config", "set", "max-eligible-fraction=2"}, "InvalidArgument: max_eligible_fraction 2 out of range"},
		{[]string{"report", "--node", "vm-1", "--full", "--delta"}, "exactly one of --full and --delta"},
		{[]string{"report", "--full", "--active", hashHex(0)}, "--node is required"},
		{[]string{"report", "--node", "vm-1", "--delta", "--active", hashHex(0)}, "--delta needs --seq"},
		{[]string{"report", "--node", "vm-1", "--delta", "--seq", "5", "--active", hashHex(0)}, "FailedPrecondition"},
		{[]string{"report", "--node", "vm-1", "--full", "--active", "12"}, `--active: bad hash "12"`},
		{[]string{"join", "s4"}, "accepts 2 arg(s)"},
		{[]string{"status", hashHex(0), "--tls-cert", "x.pem"}, "need --tls-ca"},
	}
	for _, c := range cases {
		_, err := run(t, "", append(c.args, srv)...)
		if err == nil {
			t.Errorf("blobgc %s succeeded, want error %q", strings.Join(c.args, " "), c.want)
			continue
		}
		if !strings.Contains(errorText(err), c.want) {
			t.Errorf("blobgc %s: error %q, want it to contain %q", strings.Join(c.args, " "), errorText(err), c.want)
		}
	}
	// Nothing of that reached the state.
	stats := jsonOf[map[string]any](t, mustRun(t, "", "stats", "-o", "json", srv))
	if stats["known"] != float64(0) || stats["nodes_reporting"] != float64(0) {
		t.Fatalf("bad input changed the state: %v", stats)
	}
}

func TestCLIEnvironment(t *testing.T) {
	_, srv := startCluster(t)
	t.Setenv("BLOBGC_SERVERS", strings.TrimPrefix(srv, "--servers="))
	t.Setenv("BLOBGC_OUTPUT", "json")
	stats := jsonOf[map[string]any](t, mustRun(t, "", "stats"))
	if _, ok := stats["applied_index"]; !ok {
		t.Fatalf("stats: %v", stats)
	}
	// A flag beats the environment.
	if out := mustRun(t, "", "stats", "-o", "table"); !strings.Contains(out, "Applied index") {
		t.Fatalf("table output: %q", out)
	}
	t.Setenv("BLOBGC_TIMEOUT", "soon")
	if _, err := run(t, "", "stats"); err == nil || !strings.Contains(err.Error(), "BLOBGC_TIMEOUT") {
		t.Fatalf("bad env value: %v", err)
	}
}

func TestCLIUnreachable(t *testing.T) {
	_, err := run(t, "", "stats", "--servers", "127.0.0.1:1", "--timeout", "300ms")
	if err == nil || !strings.Contains(errorText(err), "Unavailable") {
		t.Fatalf("err = %v, want Unavailable", err)
	}
}

func TestCLIHealth(t *testing.T) {
	tc, _ := startCluster(t)
	leader := tc.Leader()
	for _, s := range tc.Running() {
		out := mustRun(t, "", "health", "--addr", s.Addr(), "-o", "json")
		got := jsonOf[map[string]any](t, out)
		if got["status"] != "SERVING" || got["leader_id"] != leader.ID() {
			t.Fatalf("health of %s = %v, want SERVING with leader %s", s.ID(), got, leader.ID())
		}
	}
	// A server that is down is unhealthy: the command fails.
	down := tc.Followers()[0]
	addr := down.Addr()
	tc.Stop(tc.Index(down))
	if out, err := run(t, "", "health", "--addr", addr, "--timeout", "2s"); err == nil {
		t.Fatalf("health of a stopped server succeeded: %s", out)
	}
	// A server that lost its quorum serves but knows no leader: unhealthy.
	last := tc.Followers()[0]
	tc.Stop(tc.Index(tc.Leader()))
	deadline := time.Now().Add(testtiming.Hang())
	for {
		_, err := run(t, "", "health", "--addr", last.Addr(), "--timeout", "2s")
		if err != nil && strings.Contains(err.Error(), "no leader") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health of a server without quorum: err = %v, want \"no leader\"", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sweep deletes exactly the marked, unreferenced blobs from the store and
// confirms them; a dry run changes nothing.
func TestCLISweep(t *testing.T) {
	_, srv := startCluster(t)
	store := t.TempDir()
	live, dead := hashHex(10), hashHex(11)
	for _, h := range []string{live, dead} {
		if err := os.MkdirAll(filepath.Join(store, h[:2]), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(store, h[:2], h[2:]), []byte(h), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "", "register", live, dead, srv)
	mustRun(t, "", "report", "--node", "vm-1", "--full", "--active", live, srv)
	mustRun(t, "", "config", "set", "grace-period=0s", srv)
	mustRun(t, "", "cycle", srv)

	dry := jsonOf[map[string]any](t, mustRun(t, "", "sweep", "--store", store, "--dry-run", "-o", "json", srv))
	if w, _ := dry["would_claim"].([]any); len(w) != 1 || w[0] != dead {
		t.Fatalf("dry run: %v, want would_claim [%s]", dry, dead)
	}
	if _, err := os.Stat(filepath.Join(store, dead[:2], dead[2:])); err != nil {
		t.Fatalf("dry run deleted a file: %v", err)
	}

	sum := jsonOf[map[string]any](t, mustRun(t, "", "sweep", "--store", store, "-o", "json", srv))
	if sum["deleted"] != float64(1) || sum["confirmed"] != float64(1) || sum["errors"] != float64(0) {
		t.Fatalf("sweep: %v", sum)
	}
	if _, err := os.Stat(filepath.Join(store, dead[:2], dead[2:])); !os.IsNotExist(err) {
		t.Fatalf("unreferenced blob's file still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(store, live[:2], live[2:])); err != nil {
		t.Fatalf("referenced blob's file deleted: %v", err)
	}
	st := jsonOf[[]map[string]any](t, mustRun(t, "", "status", dead, live, "-o", "json", srv))
	if st[0]["state"] != "COLLECTED" || st[1]["state"] != "ACTIVE" {
		t.Fatalf("after sweep: %v", st)
	}
	if _, err := run(t, "", "sweep", "--store", filepath.Join(store, "nope"), srv); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("sweep of a missing store: %v", err)
	}
}
