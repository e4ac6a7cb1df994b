package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/blobgc/blobgc/cluster/clustertest"
	"github.com/blobgc/blobgc/internal/testnet"
	"github.com/blobgc/blobgc/internal/testtiming"
)

// runMainEnv makes this test binary act as the blobgc binary. `blobgc dev`
// runs its servers as os.Executable(), which in these tests is the test
// binary, so they are real processes running the real command. The name
// lacks blobgc's BLOBGC_ prefix because dev keeps those variables from its
// servers.
const runMainEnv = "BLOBGCTEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Setenv(runMainEnv, "1")
	os.Exit(m.Run())
}

// devTimings are raft timings that elect a leader quickly on loopback.
var devTimings = []string{"--heartbeat-timeout", "100ms", "--election-timeout", "100ms", "--leader-lease-timeout", "50ms"}

// Each dev server runs in a process of its own, so /metrics shows raft's and
// raft-boltdb's own metrics, each server its own: the one server whose
// blobgc_raft_state says leader shows raft's leader-side commit times.
func TestDevServersHaveTheirOwnRaftMetrics(t *testing.T) {
	port := testnet.Consecutive(t, 6) // API on the first three, metrics on the others
	dir := t.TempDir()
	args := append([]string{"dev", "--port", fmt.Sprint(port), "--metrics-port", fmt.Sprint(port + 3), "--data-dir", dir, "--log-level", "info", "--log-store", "boltdb"}, devTimings...)
	out, errOut, stop := startCmd(t, args...)
	clustertest.Eventually(t, testtiming.Hang(), "dev to print its banner", func() bool {
		return strings.Contains(out.String(), "Ctrl-C stops the cluster")
	})
	if !strings.Contains(out.String(), fmt.Sprintf("metrics http://127.0.0.1:%d/metrics", port+3)) {
		t.Fatalf("banner lacks the metrics URL:\n%s", out.String())
	}
	srv := fmt.Sprintf("--servers=127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", port, port+1, port+2)
	mustRun(t, "", "register", hashHex(1), srv)

	var leaders, why []string
	clustertest.Eventually(t, testtiming.Hang(), "one leader by blobgc_raft_state, with raft's metrics on every server", func() bool {
		leaders, why = nil, nil
		for i := 0; i < 3; i++ {
			id, body := fmt.Sprintf("s%d", i+1), scrape(t, port+3+i)
			states := samples(body, "blobgc_raft_state{")
			var in []string
			for series, v := range states {
				if v == 1 {
					in = append(in, series)
				}
			}
			if len(in) != 1 {
				why = append(why, fmt.Sprintf("%s in states %v", id, in))
				continue
			}
			if _, ok := samples(body, "blobgc_raft_boltdb_store_logs_seconds_count")["blobgc_raft_boltdb_store_logs_seconds_count"]; !ok {
				why = append(why, id+" shows no raft-boltdb metrics")
			}
			if in[0] == `blobgc_raft_state{state="leader"}` {
				leaders = append(leaders, id)
				if samples(body, "blobgc_raft_commit_time_seconds_count")["blobgc_raft_commit_time_seconds_count"] == 0 {
					why = append(why, "leader "+id+" shows no raft commit times")
				}
			}
		}
		return len(why) == 0 && len(leaders) == 1
	}, func() string { return fmt.Sprintf("leaders %v; %v", leaders, why) })

	// The servers' output comes out of dev, line by line behind their ids,
	// without a warning about the plaintext that dev itself announces.
	e := errOut.String()
	for _, id := range []string{"s1", "s2", "s3"} {
		if !strings.Contains(e, "\n"+id+" | ") && !strings.HasPrefix(e, id+" | ") {
			t.Errorf("no output of %s in dev's stderr:\n%s", id, e)
		}
	}
	if !strings.Contains(e, "plaintext on loopback, as a server of blobgc dev") || strings.Contains(e, "running without TLS") {
		t.Errorf("dev's stderr should note the dev servers' plaintext without the --insecure warning:\n%s", e)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if ps := processesNaming(t, dir); len(ps) > 0 {
		t.Fatalf("dev returned, but its servers still run: %v", ps)
	}
}

// A dev that is killed outright takes its servers with it.
func TestDevServersStopWhenDevIsKilled(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux stops a child when its parent dies")
	}
	port := testnet.Consecutive(t, 3)
	dir := t.TempDir()
	dev := startDevProcess(t, "--port", fmt.Sprint(port), "--data-dir", dir)
	if ps := processesNaming(t, dir); len(ps) != 3 {
		t.Fatalf("want 3 server processes naming %s, found %v", dir, ps)
	}
	if err := dev.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = dev.Wait()
	var left []int
	clustertest.Eventually(t, testtiming.Hang(), "the servers to exit after dev was killed", func() bool {
		left = processesNaming(t, dir)
		return len(left) == 0
	}, func() string { return fmt.Sprint(left) })
	for i := 0; i < 3; i++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+i))
		if err != nil {
			t.Fatalf("port of s%d still taken: %v", i+1, err)
		}
		l.Close()
	}
}

// SIGTERM to dev (as Ctrl-C) stops its servers, and dev exits 0 once they
// have, its temporary data dir removed.
func TestDevStopsItsServersOnSIGTERM(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dev := startDevProcess(t, "--port", fmt.Sprint(testnet.Consecutive(t, 3)))
	if ps := processesNaming(t, tmp); len(ps) != 3 {
		t.Fatalf("want 3 server processes with data in %s, found %v", tmp, ps)
	}
	if err := dev.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := dev.Wait(); err != nil {
		t.Fatalf("dev after SIGTERM: %v", err)
	}
	if ps := processesNaming(t, tmp); len(ps) > 0 {
		t.Fatalf("dev exited, but its servers still run: %v", ps)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Fatalf("dev left its temporary data in %s: %v", tmp, left)
	}
}

// startDevProcess runs `blobgc dev` with args as a process of its own (this
// test binary, see TestMain) and waits for its banner.
func startDevProcess(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuf
	dev := exec.Command(exe, append(append([]string{"dev", "--metrics-port", "0"}, devTimings...), args...)...)
	dev.Stdout, dev.Stderr = &out, &errOut
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dev.Process.Kill()
		_ = dev.Wait()
	})
	clustertest.Eventually(t, testtiming.Hang(), "dev to print its banner", func() bool {
		return strings.Contains(out.String(), "Ctrl-C stops the cluster")
	}, func() string { return errOut.String() })
	return dev
}

// processesNaming returns the ids of the processes whose command line has an
// argument under dir (on Linux; elsewhere none are found).
func processesNaming(t *testing.T, dir string) []int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		for _, arg := range bytes.Split(b, []byte{0}) {
			if strings.HasPrefix(string(arg), dir+string(filepath.Separator)) {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// scrape returns the /metrics page at the loopback port ("" if it does not
// answer).
func scrape(t *testing.T, port int) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(body)
}

// samples returns the values of the series (name and labels) starting with
// prefix in a Prometheus text page.
func samples(page, prefix string) map[string]float64 {
	got := map[string]float64{}
	for _, line := range strings.Split(page, "\n") {
		series, val, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(series, prefix) {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			got[series] = v
		}
	}
	return got
}
