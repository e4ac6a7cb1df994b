//go:build linux

package cluster_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

// mountTmpfs mounts a tmpfs of the given size on a new directory and
// unmounts it when the test ends (after the servers are closed).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fill writes to a file in dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return p
		}
	}
}

func healthOf(t *testing.T, c *clustertest.Cluster, s *cluster.Server, service string) (healthpb.HealthCheckResponse_ServingStatus, string) {
	t.Helper()
	var hdr metadata.MD
	resp, err := healthpb.NewHealthClient(c.Conn(s.Addr())).Check(ctxT(t, 10*time.Second), &healthpb.HealthCheckRequest{Service: service}, grpc.Header(&hdr))
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN, err.Error()
	}
	return resp.Status, strings.Join(hdr.Get(cluster.HealthReasonHeader), " ")
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A server whose disk is full cannot append to its raft log: its health,
// /healthz and blobgc_can_persist say so, with the reason, and it serves
// again once the disk has room. With either log store (the WAL fails when
// it starts a new segment, so its segments are small here).
func TestDiskFullHealth(t *testing.T) {
	for _, store := range []string{cluster.LogStoreBoltDB, cluster.LogStoreWAL} {
		t.Run(store, func(t *testing.T) { testDiskFullHealth(t, store) })
	}
}

func testDiskFullHealth(t *testing.T, store string) {
	disk := mountTmpfs(t, "8m")
	c := clustertest.Start(t, clustertest.Options{Configure: func(i int, cfg *cluster.Config) {
		cfg.MetricsAddr = "127.0.0.1:0"
		cfg.LogStore, cfg.WALSegmentSize = store, 1<<20
		if i == 2 {
			cfg.DataDir = filepath.Join(disk, "s3")
		}
	}})
	full := c.Servers[2]
	if full.IsLeader() {
		retryWrite(t, time.Minute, func(ctx context.Context) error {
			_, err := c.Client(full).TransferLeadership(ctx, &pb.TransferLeadershipRequest{})
			return err
		})
	}
	leader := c.Leader()
	if st, _ := healthOf(t, c, full, ""); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before the disk fills: %v", st)
	}
	filler := fill(t, disk)

	n := 0
	write := func() {
		retryWrite(t, time.Minute, func(ctx context.Context) error {
			_, err := c.Client(leader).RegisterBlobs(ctx, &pb.HashesRequest{Hashes: hashes(n*1000, 1000)})
			return err
		})
		n++
	}
	var reason string
	c.Eventually(time.Minute, "NOT_SERVING on the server with a full disk", func() bool {
		write()
		var st healthpb.HealthCheckResponse_ServingStatus
		st, reason = healthOf(t, c, full, "")
		return st == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if !strings.Contains(reason, "cannot persist") || !strings.Contains(reason, "no space left") {
		t.Fatalf("NOT_SERVING reason %q does not say why", reason)
	}
	code, body := httpGet(t, "http://"+full.MetricsAddr()+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no space left") {
		t.Fatalf("/healthz with a full disk: %d %q", code, body)
	}
	_, metrics := httpGet(t, "http://"+full.MetricsAddr()+"/metrics")
	if !strings.Contains(metrics, "blobgc_can_persist 0") || strings.Contains(metrics, "blobgc_persist_errors_total 0") {
		t.Fatalf("metrics with a full disk:\n%s", grepLines(metrics, "persist"))
	}
	if st, _ := healthOf(t, c, leader, ""); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("the leader, whose disk has room: %v", st)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	c.Eventually(time.Minute, "SERVING again once the disk has room", func() bool {
		write()
		st, _ := healthOf(t, c, full, "")
		return st == healthpb.HealthCheckResponse_SERVING
	})
	if code, body := httpGet(t, "http://"+full.MetricsAddr()+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after the disk has room: %d %q", code, body)
	}
	c.Eventually(time.Minute, "/readyz on the recovered server", func() bool {
		code, _ := httpGet(t, "http://"+full.MetricsAddr()+"/readyz")
		return code == http.StatusOK
	})
	c.WaitConverged()
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
