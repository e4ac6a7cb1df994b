package dockertest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/internal/testnet"
)

// maxServers is how many servers the compose files can run (profile five).
const maxServers = 5

// The image is built once per test run, by the repository's script, into a
// context directory whose binary the tests also run on the host as the CLI.
var (
	imageOnce sync.Once
	imageTag  string
	imageDir  string
	imageErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("the container suite does not run with -short")
		os.Exit(0)
	}
	code := m.Run()
	if imageTag != "" && imageErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if out, err := exec.CommandContext(ctx, "docker", "rmi", "--force", imageTag).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "docker rmi %s: %v\n%s", imageTag, err, out)
		}
		cancel()
	}
	if imageDir != "" {
		os.RemoveAll(imageDir)
	}
	os.Exit(code)
}

// repoRoot returns the repository root (this package is two levels down).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "docker-compose.yml")); err != nil {
		t.Fatalf("repository root not found: %v", err)
	}
	return root
}

// requireDocker fails the test, never skips it, when Docker or Compose is
// missing: a CI machine without Docker must not pass these tests.
func requireDocker(t testing.TB) {
	t.Helper()
	why := "these tests need a running Docker engine and Compose"
	if os.Getenv("CI") == "true" {
		why += " (CI=true: Docker is required in CI)"
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatalf("%s: %v", why, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Fatalf("%s: docker info: %v\n%s", why, err, out)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "scripts", "compose.sh"), "version")
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: compose version: %v\n%s", why, err, out)
	}
}

// buildImage builds the image once and returns its tag and the static binary
// that went into it.
func buildImage(t testing.TB) (tag, bin string) {
	t.Helper()
	requireDocker(t)
	imageOnce.Do(func() {
		imageDir, imageErr = os.MkdirTemp("", "blobgc-dockertest-")
		if imageErr != nil {
			return
		}
		imageTag = "blobgc-test:" + randomHex(4)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "scripts", "docker-image.sh"), imageTag)
		cmd.Env = append(cleanEnv(), "BLOBGC_CONTEXT_DIR="+imageDir)
		if out, err := cmd.CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("scripts/docker-image.sh: %v\n%s", err, out)
		}
	})
	if imageErr != nil {
		t.Fatalf("build image: %v", imageErr)
	}
	return imageTag, filepath.Join(imageDir, "blobgc")
}

// cleanEnv is the environment without the variables that configure blobgc
// or Compose, so that a user's settings do not leak into the tests.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "BLOBGC") || strings.HasPrefix(k, "COMPOSE_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// freePorts returns n distinct free loopback ports.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = testnet.Port(t)
	}
	return ports
}

// cluster is one compose project of the repository's compose files.
type cluster struct {
	t        testing.TB
	root     string
	project  string
	profiles []string
	services []string       // blobgc1..n
	ports    map[string]int // service -> host gRPC port
	metrics  map[string]int // service -> host metrics port
	image    string
	bin      string // the blobgc binary, run on the host as the CLI
	env      []string
	client   *client.Client
	certs    string // the CA and client certificates, copied from the compose volume
}

// startCluster starts n (3, or 5 with the profile "five") servers in a new
// compose project, torn down with its volumes when the test ends.
func startCluster(t testing.TB, n int) *cluster {
	t.Helper()
	tag, bin := buildImage(t)
	c := &cluster{
		t: t, root: repoRoot(t), project: "blobgc-test-" + randomHex(4), image: tag, bin: bin,
		ports: map[string]int{}, metrics: map[string]int{},
	}
	if n == 5 {
		c.profiles = []string{"five"}
	}
	t.Cleanup(c.down)
	// Another process may take a port between freePorts and Docker binding
	// it: start again on fresh ports then.
	for attempt := 1; ; attempt++ {
		c.setPorts(n, freePorts(t, 2*maxServers))
		out, err := c.compose(3*time.Minute, "up", "-d")
		if err == nil {
			break
		}
		taken := strings.Contains(string(out), "already allocated") || strings.Contains(string(out), "address already in use")
		if !taken || attempt == 3 {
			t.Fatalf("compose up: %v\n%s", err, out)
		}
		t.Logf("compose up: a port was taken, retrying: %s", out)
		if out, err := c.compose(2*time.Minute, "down", "-v", "--remove-orphans", "-t", "2"); err != nil {
			t.Fatalf("compose down: %v\n%s", err, out)
		}
	}
	c.client = c.newClient(client.WithCallTimeout(3*time.Second), client.WithRetryTimeout(5*time.Second))
	return c
}

// setPorts sets the environment for a cluster of n servers whose host
// ports (gRPC and metrics of each of the maxServers services) are ports.
func (c *cluster) setPorts(n int, ports []int) {
	// scripts/compose.sh picks the repository's compose files, adding
	// docker-compose.five.yml with the profile "five".
	c.env = append(cleanEnv(),
		"BLOBGC_IMAGE="+c.image,
		// The test kills containers itself and decides when they return.
		"BLOBGC_RESTART=no",
	)
	c.services = nil
	for i := 1; i <= maxServers; i++ {
		svc := fmt.Sprintf("blobgc%d", i)
		c.env = append(c.env,
			fmt.Sprintf("BLOBGC%d_PORT=%d", i, ports[2*i-2]),
			fmt.Sprintf("BLOBGC%d_METRICS_PORT=%d", i, ports[2*i-1]))
		if i <= n {
			c.services = append(c.services, svc)
			c.ports[svc], c.metrics[svc] = ports[2*i-2], ports[2*i-1]
		}
	}
}

// newClient returns a Go client of the cluster, closed when the test ends.
// The servers advertise their service names; the client's dialer maps them
// to the published ports, so it follows leader hints from the host.
func (c *cluster) newClient(opts ...client.Option) *client.Client {
	c.t.Helper()
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			if p, ok := c.ports[host]; ok {
				addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
			}
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	opts = append(opts, client.WithTLSConfig(c.tlsConfig()), client.WithDialOptions(grpc.WithContextDialer(dialer)))
	cl, err := client.New(c.hostAddrs(), opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// certDir returns a directory holding the cluster's CA and client
// certificates, which the compose service "certs" made in its volume; the
// first call copies them out.
func (c *cluster) certDir() string {
	c.t.Helper()
	if c.certs != "" {
		return c.certs
	}
	out, err := c.compose(time.Minute, "ps", "-a", "-q", "certs")
	id := strings.TrimSpace(string(out))
	if err != nil || id == "" {
		c.t.Fatalf("compose ps certs: %v\n%s", err, out)
	}
	dir := c.t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "cp", id+":/certs/.", dir).CombinedOutput(); err != nil {
		c.t.Fatalf("docker cp certs: %v\n%s", err, out)
	}
	c.certs = dir
	return dir
}

// tlsArgs are the CLI flags of an admin client of the cluster.
func (c *cluster) tlsArgs() []string {
	d := c.certDir()
	return []string{"--tls-ca", filepath.Join(d, "ca.pem"),
		"--tls-cert", filepath.Join(d, "admin-admin.pem"), "--tls-key", filepath.Join(d, "admin-admin-key.pem")}
}

// tlsConfig is the TLS of an admin client of the cluster.
func (c *cluster) tlsConfig() *tls.Config {
	c.t.Helper()
	d := c.certDir()
	caPEM, err := os.ReadFile(filepath.Join(d, "ca.pem"))
	if err != nil {
		c.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(filepath.Join(d, "admin-admin.pem"), filepath.Join(d, "admin-admin-key.pem"))
	if err != nil {
		c.t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// down prints the servers' logs if the test failed, then removes the
// project's containers, network and volumes.
func (c *cluster) down() {
	if c.t.Failed() {
		if out, err := c.compose(time.Minute, "logs", "--no-color", "--tail", "150"); err == nil {
			c.t.Logf("server logs:\n%s", out)
		}
	}
	if out, err := c.compose(2*time.Minute, "down", "-v", "--remove-orphans", "-t", "2"); err != nil {
		c.t.Errorf("compose down: %v\n%s", err, out)
	}
}

// compose runs scripts/compose.sh for this project.
func (c *cluster) compose(timeout time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := []string{"-p", c.project}
	for _, p := range c.profiles {
		full = append(full, "--profile", p)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.root, "scripts", "compose.sh"), append(full, args...)...)
	cmd.Env = c.env
	return cmd.CombinedOutput()
}

// hostAddrs are the servers' published gRPC addresses.
func (c *cluster) hostAddrs() []string {
	var as []string
	for _, s := range c.services {
		as = append(as, fmt.Sprintf("127.0.0.1:%d", c.ports[s]))
	}
	return as
}

// cli runs the blobgc CLI on the host against the given servers (default:
// all published addresses).
func (c *cluster) cliAt(servers []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append(append(args, "--servers", strings.Join(servers, ",")), c.tlsArgs()...)
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = cleanEnv()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("blobgc %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// mustWrite runs a write command (register, pin) through the CLI and
// returns the applied index it reports.
func (c *cluster) mustWrite(cmd, hash string) uint64 {
	c.t.Helper()
	out, err := c.cliAt(c.hostAddrs(), cmd, "-o", "json", hash)
	if err != nil {
		c.t.Fatal(err)
	}
	var resp struct {
		AppliedIndex uint64 `json:"applied_index"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.AppliedIndex == 0 {
		c.t.Fatalf("blobgc %s: output %q: want JSON with applied_index (%v)", cmd, out, err)
	}
	return resp.AppliedIndex
}

// pinnedVia reports, through the CLI, whether hash is registered and pinned
// by the coordinator; stale reads are answered by the first server given.
func (c *cluster) pinnedVia(servers []string, stale bool, hash string) error {
	args := []string{"status", "-o", "json", hash}
	if stale {
		args = append(args, "--stale")
	}
	out, err := c.cliAt(servers, args...)
	if err != nil {
		return err
	}
	var sts []struct {
		Hash           string `json:"hash"`
		State          string `json:"state"`
		CoordinatorPin bool   `json:"coordinator_pin"`
	}
	if err := json.Unmarshal([]byte(out), &sts); err != nil {
		return fmt.Errorf("status output %q: %v", out, err)
	}
	if len(sts) != 1 || sts[0].Hash != hash || sts[0].State != "PINNED" || !sts[0].CoordinatorPin {
		return fmt.Errorf("status of %s = %s, want it PINNED by the coordinator", hash, out)
	}
	return nil
}

// containerID returns the container of a service.
func (c *cluster) containerID(svc string) string {
	c.t.Helper()
	out, err := c.compose(time.Minute, "ps", "-q", svc)
	id := strings.TrimSpace(string(out))
	if err != nil || id == "" || strings.ContainsAny(id, " \n") {
		c.t.Fatalf("compose ps -q %s: %q, %v", svc, out, err)
	}
	return id
}

func docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// waitFor polls f until it returns nil, failing the test with f's last
// error once timeout has passed.
func waitFor(t testing.TB, timeout time.Duration, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v: %v", what, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitVoters waits until the cluster has a leader other than notLeader and
// its members are exactly this cluster's services, all voters.
func (c *cluster) waitVoters(timeout time.Duration, notLeader string) *blobgcv1.MembersResponse {
	c.t.Helper()
	var got *blobgcv1.MembersResponse
	waitFor(c.t, timeout, "a leader and all voters", func(ctx context.Context) error {
		m, err := c.client.Members(ctx)
		if err != nil {
			return err
		}
		if m.LeaderId == "" || m.LeaderId == notLeader {
			return fmt.Errorf("leader %q (want one other than %q)", m.LeaderId, notLeader)
		}
		var voters []string
		for _, mem := range m.Members {
			if mem.Voter {
				voters = append(voters, mem.Id)
			}
		}
		slices.Sort(voters)
		if !slices.Equal(voters, c.services) {
			return fmt.Errorf("voters %v, want %v", voters, c.services)
		}
		got = m
		return nil
	})
	return got
}

// waitHealthy waits until Docker reports the service's container healthy by
// the image's own healthcheck.
func (c *cluster) waitHealthy(svc string, timeout time.Duration) {
	c.t.Helper()
	id := c.containerID(svc)
	waitFor(c.t, timeout, svc+" healthy", func(context.Context) error {
		st, err := docker("inspect", "--format", "{{.State.Health.Status}}", id)
		if err != nil {
			return err
		}
		if st != "healthy" {
			return fmt.Errorf("health %q", st)
		}
		return nil
	})
}

// waitConverged waits until every server answers the same digest at the
// same applied index, at least atIndex.
func (c *cluster) waitConverged(timeout time.Duration, atIndex uint64) {
	c.t.Helper()
	waitFor(c.t, timeout, "same digest on every server", func(ctx context.Context) error {
		var first *blobgcv1.DigestResponse
		for _, a := range c.hostAddrs() {
			d, err := c.client.DigestOf(ctx, a)
			if err != nil {
				return fmt.Errorf("%s: %v", a, err)
			}
			if d.AppliedIndex < atIndex {
				return fmt.Errorf("%s (%s) applied %d, want >= %d", a, d.ServerId, d.AppliedIndex, atIndex)
			}
			if first == nil {
				first = d
				continue
			}
			if d.AppliedIndex != first.AppliedIndex || string(d.Digest) != string(first.Digest) {
				return fmt.Errorf("%s at %d %x, %s at %d %x", first.ServerId, first.AppliedIndex, first.Digest,
					d.ServerId, d.AppliedIndex, d.Digest)
			}
		}
		return nil
	})
}

// publishedOnLoopback checks that the service's ports are published on
// 127.0.0.1 only, at the ports the test chose.
func (c *cluster) publishedOnLoopback(svc string) error {
	id := c.containerID(svc)
	for port, want := range map[string]int{"7000/tcp": c.ports[svc], "9000/tcp": c.metrics[svc]} {
		out, err := docker("port", id, port)
		if err != nil {
			return err
		}
		if got, w := strings.Fields(out), fmt.Sprintf("127.0.0.1:%d", want); len(got) != 1 || got[0] != w {
			return fmt.Errorf("%s %s published at %q, want only %s", svc, port, out, w)
		}
	}
	return nil
}

// newHash returns a random blob hash in hex.
func newHash() string { return randomHex(32) }

// network returns the compose network a container is attached to.
func network(id string) (string, error) {
	out, err := docker("inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", id)
	if err != nil {
		return "", err
	}
	nets := strings.Fields(out)
	if len(nets) != 1 {
		return "", fmt.Errorf("container %s is on networks %q, want one", id, out)
	}
	return nets[0], nil
}
