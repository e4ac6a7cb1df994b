package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testnet"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// startCmd runs the CLI in the background until the returned stop is called;
// stop returns the command's error.
func startCmd(t *testing.T, args ...string) (out *syncBuf, errOut *syncBuf, stop func() error) {
	t.Helper()
	out, errOut = &syncBuf{}, &syncBuf{}
	root := newRoot(strings.NewReader(""), out, errOut)
	root.SetArgs(args)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	var stopped bool
	var result error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(testtiming.Hang()):
				t.Error("command did not stop within 30s of cancel")
			}
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return out, errOut, stop
}

// The server command: flags and environment make a config, the server
// serves until the context ends, and a restart from the same data keeps the
// writes (and does not bootstrap again).
func TestServerCommandRestart(t *testing.T) {
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", testnet.Port(t))
	t.Setenv("BLOBGC_ID", "s1")
	args := []string{"server", "--data-dir", dir, "--listen", addr, "--peers", "s1=" + addr,
		"--heartbeat-timeout", "100ms", "--election-timeout", "100ms", "--leader-lease-timeout", "50ms",
		"--cycle-interval", "-1s", "--grace-period", "1m", "--log-format", "json", "--log-level", "debug",
		"--metrics-addr", "127.0.0.1:0", "--insecure"}
	_, errOut, stop := startCmd(t, args...)
	srv := "--servers=" + addr
	clustertest.Eventually(t, testtiming.Hang(), "the server to lead", func() bool {
		_, err := run(t, "", "register", hashHex(7), srv, "--timeout", "500ms")
		return err == nil
	})
	// The first leader proposes the GC flags.
	clustertest.Eventually(t, testtiming.Hang(), "the --grace-period flag in the replicated config", func() bool {
		cfg := jsonOf[map[string]any](t, mustRun(t, "", "config", "get", "-o", "json", srv))
		return cfg["grace_period_ns"] == float64(time.Minute)
	})
	resp, err := http.Get("http://" + metricsAddrOf(t, errOut) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "# TYPE") {
		t.Fatalf("/metrics: %d %.200s", resp.StatusCode, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("server command: %v", err)
	}
	_, errOut2, stop := startCmd(t, args...)
	var st []map[string]any
	clustertest.Eventually(t, testtiming.Hang(), "the restarted server to answer", func() bool {
		out, err := run(t, "", "status", hashHex(7), "-o", "json", srv, "--timeout", "500ms")
		if err != nil {
			return false
		}
		st = jsonOf[[]map[string]any](t, out)
		return true
	})
	if st[0]["state"] != "ACTIVE" {
		t.Fatalf("after restart: %v", st)
	}
	// --insecure is announced at every start.
	for i, e := range []*syncBuf{errOut, errOut2} {
		if !strings.Contains(e.String(), "running without TLS (--insecure)") {
			t.Fatalf("start %d logged no warning about running without TLS: %q", i+1, e.String())
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("server command: %v", err)
	}
}

// metricsAddrOf finds the metrics address in the server's JSON logs.
func metricsAddrOf(t *testing.T, errOut *syncBuf) string {
	t.Helper()
	for _, line := range strings.Split(errOut.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["@message"] == "serving" {
			if a, _ := rec["metrics"].(string); a != "" {
				return a
			}
		}
	}
	t.Fatalf("no JSON \"serving\" log line with the metrics address: %q", errOut.String())
	return ""
}

func TestServerCommandBadFlags(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"server", "--data-dir", dir}, "--id is required"},
		{[]string{"server", "--id", "s1"}, "--data-dir is required"},
		{[]string{"server", "--id", "s1", "--data-dir", dir}, "no TLS: give --tls-cert, --tls-key and --tls-ca"},
		{[]string{"server", "--id", "s1", "--data-dir", dir, "--tls-ca", "ca.pem"}, "TLS needs CertFile, KeyFile and CAFile"},
		{[]string{"server", "--id", "s\x1b[2J", "--data-dir", dir, "--insecure"}, "--id: server id"},
		{[]string{"server", "--id", "s1", "--data-dir", dir, "--insecure", "--peers", "s1"}, "--peers: peer 1"},
		{[]string{"server", "--id", "s1", "--data-dir", dir, "--insecure", "--peers", "s1=127.0.0.1:0"}, "port must be a number from 1 to 65535"},
		{[]string{"server", "--id", "s1", "--data-dir", dir, "--insecure", "--peers", "s 1=127.0.0.1:7001"}, `server id "s 1"`},
		{[]string{"server", "--id", "s1", "--data-dir", dir, "--insecure", "--stale-policy", "keep"}, "want drop or hold"},
		{[]string{"server", "--id", "s1", "--data-dir", dir, "--insecure", "--grace-period", "-1s"}, "grace_period -1s out of range"},
		{[]string{"server", "--id", "s1", "--data-dir", dir, "--insecure", "--log-format", "xml"}, `log format "xml"`},
		{[]string{"server", "--id", "s1", "--data-dir", dir, "--insecure", "--log-level", "loud"}, `log level "loud"`},
		{[]string{"server", "--id", "s1", "--data-dir", dir, "--insecure", "--listen", "127.0.0.1:0", "--peers", "s2=127.0.0.1:1"}, "not among the peers"},
		{[]string{"server", "--id", "s1", "--data-dir", dir, "--insecure", "--max-nodes", "0"}, "max_nodes 0 out of range"},
		{[]string{"server", "--id", "s1", "--data-dir", dir, "--insecure", "--dev-cluster", "--listen", "0.0.0.0:7001"}, "a server of blobgc dev listens on a loopback address only"},
		{[]string{"dev", "--stale-policy", "x"}, "want drop or hold"},
		{[]string{"dev", "--host", "0.0.0.0"}, "listens on loopback addresses only"},
	}
	for _, c := range cases {
		_, err := run(t, "", c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("blobgc %s: error %v, want %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

func TestDevCommand(t *testing.T) {
	port := testnet.Consecutive(t, 3)
	dir := t.TempDir()
	out, _, stop := startCmd(t, "dev", "--port", fmt.Sprint(port), "--metrics-port", "0", "--data-dir", dir,
		"--heartbeat-timeout", "100ms", "--election-timeout", "100ms", "--leader-lease-timeout", "50ms")
	clustertest.Eventually(t, testtiming.Hang(), "dev to print its banner", func() bool {
		return strings.Contains(out.String(), "Ctrl-C stops the cluster")
	})
	banner := out.String()
	for i := 0; i < 3; i++ {
		want := fmt.Sprintf("s%d  api 127.0.0.1:%d", i+1, port+i)
		if !strings.Contains(banner, want) {
			t.Fatalf("banner lacks %q:\n%s", want, banner)
		}
	}
	if !strings.Contains(banner, dir) || !strings.Contains(banner, "blobgc members --servers") || !strings.Contains(banner, "Plaintext, no TLS") {
		t.Fatalf("banner lacks the data dir or examples:\n%s", banner)
	}
	srv := fmt.Sprintf("--servers=127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", port, port+1, port+2)
	mustRun(t, "", "register", hashHex(1), srv)
	mem := jsonOf[map[string]any](t, mustRun(t, "", "members", "-o", "json", srv))
	if len(mem["members"].([]any)) != 3 {
		t.Fatalf("members: %v", mem)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"s1", "s2", "s3"} {
		if matches, _ := filepath.Glob(filepath.Join(dir, id, "*")); len(matches) == 0 {
			t.Fatalf("no data kept in %s", filepath.Join(dir, id))
		}
	}
}
