package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/internal/testnet"
)

// runStreams executes the CLI in-process and returns stdout, stderr and the
// exit status main would use.
func runStreams(t *testing.T, args ...string) (stdout, stderr string, code int, err error) {
	t.Helper()
	var out, errOut syncBuf
	root := newRoot(strings.NewReader(""), &out, &errOut)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), exitCode(err), err
}

func TestCLINodesDeregisterAndPrune(t *testing.T) {
	_, srv := startCluster(t)
	h := hashHex(0)
	mustRun(t, "", "register", h, srv)
	mustRun(t, "", "report", "--node", "vm-1", "--full", "--active", h, srv)
	mustRun(t, "", "report", "--node", "vm-2", "--full", "--active", h, srv)

	// An unknown node changes nothing and says so, with exit status 3.
	_, _, code, err := runStreams(t, "nodes", "deregister", "vm-9", srv)
	if code != exitNoEffect || err == nil || !strings.Contains(err.Error(), "not registered: vm-9 (registered: vm-1,vm-2)") {
		t.Fatalf("deregister of an unknown node: exit %d, %v", code, err)
	}
	out := mustRun(t, "", "nodes", "deregister", "vm-1", srv)
	if !strings.Contains(out, "Deregistered vm-1") {
		t.Fatalf("deregister output %q", out)
	}
	nodes := jsonOf[[]map[string]any](t, mustRun(t, "", "nodes", "-o", "json", srv))
	if len(nodes) != 1 || nodes[0]["id"] != "vm-2" {
		t.Fatalf("nodes after deregister: %v", nodes)
	}

	// Nothing stale: prune says so and exits 0.
	if _, stderr, code, err := runStreams(t, "nodes", "prune", srv); err != nil || code != exitOK || !strings.Contains(stderr, "No stale nodes") {
		t.Fatalf("prune with nothing stale: exit %d, %v, stderr %q", code, err, stderr)
	}
	// With a 1ms stale threshold vm-2 goes stale as soon as the cluster
	// clock moves on (each command moves it).
	mustRun(t, "", "config", "set", "stale-threshold=1ms", srv)
	eventually(t, "vm-2 pruned", func() bool {
		res := jsonOf[map[string]any](t, mustRun(t, "", "nodes", "prune", "-o", "json", srv))
		pruned, _ := res["pruned"].([]any)
		return len(pruned) == 1 && pruned[0] == "vm-2"
	})
	if nodes := jsonOf[[]map[string]any](t, mustRun(t, "", "nodes", "-o", "json", srv)); len(nodes) != 0 {
		t.Fatalf("nodes after prune: %v", nodes)
	}
	// The blob lost its last reference.
	st := jsonOf[[]map[string]any](t, mustRun(t, "", "status", h, "-o", "json", srv))
	if refs, _ := st[0]["referenced_by"].([]any); len(refs) != 0 {
		t.Fatalf("status after prune: %v", st)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCLIBlobsListByState(t *testing.T) {
	_, srv := startCluster(t)
	if _, stderr, code, err := runStreams(t, "blobs", "list", srv); err != nil || code != exitOK || !strings.Contains(stderr, "No blobs found.") {
		t.Fatalf("empty list: exit %d, %v, stderr %q", code, err, stderr)
	}
	h := []string{hashHex(0), hashHex(1), hashHex(2)}
	mustRun(t, "", "register", h[0], h[1], h[2], srv)
	mustRun(t, "", "pin", h[1], srv)
	mustRun(t, "", "report", "--node", "vm-1", "--full", "--active", h[2], srv)
	mustRun(t, "", "cycle", srv)

	for _, tc := range []struct {
		state string
		want  []string
	}{
		{"pinned", []string{h[1]}},
		{"PINNED", []string{h[1]}},
		{"active", []string{h[2]}},
		{"unreferenced", []string{h[0]}},
		{"marked-for-collection", nil},
		{"all", h},
	} {
		res := jsonOf[struct{ Blobs []map[string]any }](t, mustRun(t, "", "blobs", "list", "--state", tc.state, "-o", "json", srv))
		var got []string
		for _, b := range res.Blobs {
			got = append(got, b["hash"].(string))
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("--state %s: %v, want %v", tc.state, got, tc.want)
		}
	}
	out := mustRun(t, "", "blobs", "list", "--state", "unreferenced", srv)
	if !strings.Contains(out, h[0]) || !strings.Contains(out, " ago") {
		t.Fatalf("table: %q, want the blob and its age", out)
	}
	if _, err := run(t, "", "blobs", "list", "--state", "gone", srv); err == nil || !strings.Contains(err.Error(), `--state "gone": want all or one of active, pinned`) {
		t.Fatalf("bad state: %v", err)
	}
}

// A claim that is granted nothing says why, per blob, and exits 3; so does
// a confirmation of a blob that was never claimed. An empty eligible list
// says so.
func TestCLISaysWhyNothingChanged(t *testing.T) {
	_, srv := startCluster(t)
	h := hashHex(0)
	mustRun(t, "", "register", h, srv)
	mustRun(t, "", "report", "--node", "vm-1", "--full", "--active", h, srv)
	if _, stderr, code, err := runStreams(t, "eligible", srv); err != nil || code != exitOK || !strings.Contains(stderr, "No blobs are eligible") {
		t.Fatalf("empty eligible: exit %d, %v, stderr %q", code, err, stderr)
	}

	_, _, code, err := runStreams(t, "claim", h, srv)
	if want := "0 of 1 granted: " + h + " is ACTIVE, referenced by vm-1"; code != exitNoEffect || err == nil || err.Error() != want {
		t.Fatalf("claim: exit %d, %v; want exit 3 and %q", code, err, want)
	}
	_, _, code, err = runStreams(t, "confirm", h, srv)
	if code != exitNoEffect || err == nil || !strings.Contains(err.Error(), "1 of 1 not confirmed") || !strings.Contains(err.Error(), h+" is ACTIVE") {
		t.Fatalf("confirm of an unclaimed blob: exit %d, %v", code, err)
	}

	// Claimed and confirmed: exit 0, and confirming again is fine too.
	mustRun(t, "", "config", "set", "grace-period=0s", srv)
	mustRun(t, "", "report", "--node", "vm-1", "--full", srv)
	mustRun(t, "", "cycle", srv)
	mustRun(t, "", "cycle", srv)
	if out := mustRun(t, "", "claim", h, srv); strings.TrimSpace(out) != h {
		t.Fatalf("claim granted %q, want %s", out, h)
	}
	mustRun(t, "", "confirm", h, srv)
	mustRun(t, "", "confirm", h, srv)
	_, _, code, err = runStreams(t, "claim", h, srv)
	if code != exitNoEffect || err == nil || !strings.Contains(err.Error(), h+" is COLLECTED already") {
		t.Fatalf("claim of a collected blob: exit %d, %v", code, err)
	}
}

func TestCLIVersion(t *testing.T) {
	out := mustRun(t, "", "version")
	if !strings.HasPrefix(out, "blobgc ") || !strings.Contains(out, "go1") {
		t.Fatalf("version: %q", out)
	}
	if flag := mustRun(t, "", "--version"); flag != out {
		t.Fatalf("--version %q, version %q", flag, out)
	}
	v := jsonOf[map[string]any](t, mustRun(t, "", "version", "-o", "json"))
	if v["version"] == "" || v["go_version"] == nil {
		t.Fatalf("version json: %v", v)
	}
}

// With no server up, a command fails within the dial timeout (not the
// command timeout), names every address and says where they come from,
// with exit status 2.
func TestCLINoServerReachable(t *testing.T) {
	addrs := []string{testnet.Addr(t), testnet.Addr(t), testnet.Addr(t)}
	_, _, code, err := runStreams(t, "members", "--servers", strings.Join(addrs, ","), "--dial-timeout", "300ms", "--timeout", "5m")
	var ue *client.UnreachableError
	if !errors.As(err, &ue) || code != exitUnreachable {
		t.Fatalf("exit %d, %v; want exit 2 and an UnreachableError", code, err)
	}
	msg := errorText(err)
	for _, a := range addrs {
		if !strings.Contains(msg, a+" (connect: connection refused)") {
			t.Errorf("message does not name %s: %s", a, msg)
		}
	}
	if !strings.Contains(msg, "set --servers or BLOBGC_SERVERS") {
		t.Errorf("message does not suggest --servers: %s", msg)
	}
}

// Servers reached through other addresses than those they advertise (a
// compose port mapping, a NAT) are shown once each: a member that answered
// through --servers is not asked again at its advertised address.
func TestCLIDigestAsksEachServerOnce(t *testing.T) {
	tc, _ := startCluster(t)
	var given []string
	for _, s := range tc.Running() {
		_, port, _ := net.SplitHostPort(s.Addr())
		given = append(given, "localhost:"+port) // advertised as 127.0.0.1:port
	}
	tc.WaitConverged()
	dg := jsonOf[map[string][]digestRow](t, mustRun(t, "", "digest", "-o", "json", "--servers", strings.Join(given, ",")))
	rows := dg["servers"]
	if len(rows) != 3 {
		t.Fatalf("%d rows, want one per server: %+v", len(rows), rows)
	}
	for _, r := range rows {
		if r.Error != "" || !strings.HasPrefix(r.Address, "localhost:") {
			t.Fatalf("row %+v, want the digest through the given address", r)
		}
	}
}

// stats shows when the last cycle ran and what it did, also a cycle that
// the state machine's history does not record.
func TestCLIStatsLastCycle(t *testing.T) {
	tc, srv := startCluster(t)
	if out := mustRun(t, "", "stats", srv); !strings.Contains(out, "Last cycle") || !strings.Contains(out, "none applied") {
		t.Fatalf("stats before any cycle: %q", out)
	}
	mustRun(t, "", "config", "set", "min-nodes=5", srv)
	mustRun(t, "", "cycle", srv)
	if out := mustRun(t, "", "stats", srv); !strings.Contains(out, "skipped: below min_nodes_reporting") {
		t.Fatalf("stats after a skipped cycle: %q", out)
	}
	mustRun(t, "", "config", "set", "min-nodes=0", srv)
	// A registered blob gives the cycle work to do, so it goes through the
	// log (a cycle with nothing to do is answered by the leader alone).
	mustRun(t, "", "register", hashHex(7), srv)
	mustRun(t, "", "cycle", srv)
	tc.WaitConverged()
	// Every server applied it, so a stale read from any of them tells.
	st := jsonOf[map[string]any](t, mustRun(t, "", "stats", "-o", "json", "--stale", srv))
	if st["last_cycle_ns"] == float64(0) || st["last_cycle_skipped"] != "" || st["last_cycle_newly_marked"] != float64(0) {
		t.Fatalf("stats json after a cycle: %v", st)
	}
	if out := mustRun(t, "", "stats", srv); !strings.Contains(out, "0 newly marked, 0 eligible") {
		t.Fatalf("stats after a cycle: %q", out)
	}
}
