package dockertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Deadlines of the waits. Elections take about a second; the rest is
// container start-up and Docker's 5 s healthcheck interval.
const (
	formTimeout     = 90 * time.Second
	healthyTimeout  = 60 * time.Second
	failoverTimeout = 30 * time.Second
	catchUpTimeout  = 60 * time.Second
)

func TestImageIsScratchWithOnlyTheBinary(t *testing.T) {
	tag, bin := buildImage(t)
	// The build context held the binary and nothing else.
	ents, err := os.ReadDir(filepath.Dir(bin))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "blobgc" {
		t.Fatalf("build context holds %v, want only blobgc", ents)
	}
	out, err := docker("image", "inspect", tag)
	if err != nil {
		t.Fatal(err)
	}
	var imgs []struct {
		Size   int64
		RootFS struct{ Layers []string }
		Config struct {
			Entrypoint  []string
			Healthcheck struct{ Test []string }
			Volumes     map[string]struct{}
		}
	}
	if err := json.Unmarshal([]byte(out), &imgs); err != nil || len(imgs) != 1 {
		t.Fatalf("docker image inspect: %v\n%s", err, out)
	}
	img := imgs[0]
	// FROM scratch plus one COPY: a single layer, no base image, no shell.
	if len(img.RootFS.Layers) != 1 {
		t.Errorf("image has %d layers, want 1 (FROM scratch + the binary)", len(img.RootFS.Layers))
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if img.Size > fi.Size()+1<<20 {
		t.Errorf("image is %d bytes, the binary %d: the image holds more than the binary", img.Size, fi.Size())
	}
	if !slices.Equal(img.Config.Entrypoint, []string{"/blobgc"}) {
		t.Errorf("entrypoint %v, want [/blobgc]", img.Config.Entrypoint)
	}
	if hc := img.Config.Healthcheck.Test; len(hc) < 2 || hc[0] != "CMD" || hc[1] != "/blobgc" {
		t.Errorf("healthcheck %v, want the binary run directly (CMD /blobgc ...)", hc)
	}
	if _, ok := img.Config.Volumes["/data"]; !ok {
		t.Errorf("volumes %v, want /data", img.Config.Volumes)
	}
}

// blobgc4 and blobgc5 live in docker-compose.five.yml, which repeats the
// settings every server shares (YAML anchors do not reach across files): as
// Compose resolves them, each is blobgc1 with its own name and ports, and
// joining instead of bootstrapping.
func TestComposeFiveServersMatchTheFirstThree(t *testing.T) {
	requireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "scripts", "compose.sh"), "--profile", "five", "config")
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("compose config: %v\n%s", err, out)
	}
	first := serviceConfig(t, string(out), 1)
	for _, n := range []int{4, 5} {
		if got := serviceConfig(t, string(out), n); got != first {
			t.Errorf("blobgc%d differs from blobgc1 beyond its name, ports and --join:\n%s\nblobgc1:\n%s", n, got, first)
		}
	}
}

// serviceConfig returns the resolved config of service blobgc<n> from
// `compose config` output, with its number made N, its bootstrap (--peers
// or --join) and its profile left out, for comparing one server with another.
func serviceConfig(t *testing.T, config string, n int) string {
	t.Helper()
	name := fmt.Sprintf("blobgc%d", n)
	var block []string
	in := false
	for _, line := range strings.Split(config, "\n") {
		if strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   ") {
			in = strings.TrimSpace(line) == name+":"
			continue
		}
		if in && strings.HasPrefix(line, "    ") {
			block = append(block, line)
		} else if in {
			in = false
		}
	}
	if len(block) == 0 {
		t.Fatalf("no service %s in compose config:\n%s", name, config)
	}
	number := regexp.MustCompile(fmt.Sprintf(`blobgc%[1]d\b|\b[79]10%[1]d\b`, n))
	var kept []string
	for i := 0; i < len(block); i++ {
		l := block[i]
		switch k := strings.TrimSpace(l); {
		case strings.HasPrefix(k, "BLOBGC_PEERS:"), strings.HasPrefix(k, "BLOBGC_JOIN:"):
			continue
		case k == "profiles:":
			i++ // and its one item, five
			continue
		}
		kept = append(kept, number.ReplaceAllStringFunc(l, func(m string) string { return m[:len(m)-1] + "N" }))
	}
	return strings.Join(kept, "\n")
}

func TestCompose3KillLeader(t *testing.T) { killLeaderScenario(t, 3) }

func TestCompose5KillLeader(t *testing.T) { killLeaderScenario(t, 5) }

// killLeaderScenario forms an n-server cluster with compose, writes through
// the host CLI, kills the leader's container, checks that a new leader takes
// writes and still has the earlier ones (on 5 servers, also with a follower
// killed: two down), and that the killed servers, started again, catch up to
// the same state digest.
func killLeaderScenario(t *testing.T, n int) {
	c := startCluster(t, n)
	m := c.waitVoters(formTimeout, "")
	t.Logf("%d voters, leader %s (term %d)", n, m.LeaderId, m.Term)
	// Exactly the profile's servers run: five only with the profile "five"
	// (the one-shot service "certs" has exited).
	ps, err := docker("ps", "--quiet", "--filter", "label=com.docker.compose.project="+c.project)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(strings.Fields(ps)); got != n {
		t.Errorf("project runs %d containers, want %d", got, n)
	}
	// And the project has exactly the volumes of those servers: those of
	// blobgc4 and blobgc5 come with the profile only.
	vols, err := docker("volume", "ls", "--quiet", "--filter", "label=com.docker.compose.project="+c.project)
	if err != nil {
		t.Fatal(err)
	}
	wantVols := []string{c.project + "_certs"}
	for _, svc := range c.services {
		wantVols = append(wantVols, c.project+"_"+svc+"-data")
	}
	gotVols := strings.Fields(vols)
	slices.Sort(gotVols)
	slices.Sort(wantVols)
	if !slices.Equal(gotVols, wantVols) {
		t.Errorf("project has volumes %v, want %v", gotVols, wantVols)
	}
	for _, svc := range c.services {
		if err := c.publishedOnLoopback(svc); err != nil {
			t.Error(err)
		}
	}
	for _, svc := range c.services {
		c.waitHealthy(svc, healthyTimeout)
	}
	// Metrics are published too, over HTTPS with the servers' certificates.
	metrics := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: c.tlsConfig()}}
	for _, svc := range c.services {
		resp, err := metrics.Get(fmt.Sprintf("https://127.0.0.1:%d/metrics", c.metrics[svc]))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: GET /metrics: %s", svc, resp.Status)
		}
	}

	h1 := newHash()
	c.mustWrite("register", h1)
	c.mustWrite("pin", h1)
	if err := c.pinnedVia(c.hostAddrs(), false, h1); err != nil {
		t.Fatal(err)
	}

	old := m.LeaderId
	id := c.containerID(old)
	killed := time.Now()
	if _, err := docker("kill", id); err != nil {
		t.Fatal(err)
	}
	m = c.waitVoters(failoverTimeout, old)
	elected := time.Since(killed)
	h2 := newHash()
	c.mustWrite("register", h2)
	idx := c.mustWrite("pin", h2)
	t.Logf("killed leader %s: %s elected after %v, first write acknowledged after %v",
		old, m.LeaderId, elected.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	for _, h := range []string{h1, h2} {
		if err := c.pinnedVia(c.hostAddrs(), false, h); err != nil {
			t.Fatal(err)
		}
	}

	written := []string{h1, h2}
	down := []string{old}
	if n == 5 {
		// Five servers tolerate two failures: kill a follower as well.
		var f string
		for _, svc := range c.services {
			if svc != old && svc != m.LeaderId {
				f = svc
				break
			}
		}
		if _, err := docker("kill", c.containerID(f)); err != nil {
			t.Fatal(err)
		}
		h3 := newHash()
		c.mustWrite("register", h3)
		idx = c.mustWrite("pin", h3)
		written = append(written, h3)
		down = append(down, f)
		for _, h := range written {
			if err := c.pinnedVia(c.hostAddrs(), false, h); err != nil {
				t.Fatal(err)
			}
		}
	}

	for _, svc := range down {
		if _, err := docker("start", c.containerID(svc)); err != nil {
			t.Fatal(err)
		}
	}
	c.waitConverged(catchUpTimeout, idx)
	// The restarted servers answer from their own state, on their own ports.
	for _, svc := range down {
		own := []string{fmt.Sprintf("127.0.0.1:%d", c.ports[svc])}
		for _, h := range written {
			waitFor(t, catchUpTimeout, "stale read from restarted "+svc, func(context.Context) error {
				return c.pinnedVia(own, true, h)
			})
		}
		c.waitHealthy(svc, healthyTimeout)
	}
}
