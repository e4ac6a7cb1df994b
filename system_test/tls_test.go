package systemtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/blobgc/blobgc/client"
)

// tlsInit runs `blobgc tls init` for servers s1..s3 and an admin client.
func tlsInit(t *testing.T, dir string) {
	t.Helper()
	out, err := exec.Command(blobgcBin, "tls", "init", "--dir", dir, "--servers", "s1,s2,s3", "--clients", "admin:ops").CombinedOutput()
	if err != nil {
		t.Fatalf("tls init: %v\n%s", err, out)
	}
}

func adminTLS(dir string) client.Option {
	return client.WithTLS(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "admin-ops.pem"), filepath.Join(dir, "admin-ops-key.pem"))
}

// Server processes with certificates from `blobgc tls init` elect,
// replicate and fail over over TLS; on SIGHUP they take up rotated
// certificates from a new CA, and keep replicating with them.
func TestTLSProcessesFailoverAndReload(t *testing.T) {
	t.Parallel()
	pki := t.TempDir()
	tlsInit(t, pki)
	pc := startProcsWith(t, 3, testTimings, func(p *proc) []string {
		return []string{"--tls-ca", filepath.Join(pki, "ca.pem"),
			"--tls-cert", filepath.Join(pki, "server-"+p.id+".pem"), "--tls-key", filepath.Join(pki, "server-"+p.id+"-key.pem")}
	})
	pc.clientOpts = []client.Option{adminTLS(pki)}
	all := pc.newClient()
	leader := pc.waitLeader(all)
	ctx := ctxT(t, 2*time.Minute)
	if _, err := all.Pin(ctx, hashesN(0, 5)); err != nil {
		t.Fatal(err)
	}
	t.Logf("leader %s; killing it", leader)
	pc.kill(pc.index(leader))
	if _, err := all.Pin(ctx, hashesN(5, 5)); err != nil {
		t.Fatalf("pin after the leader was killed: %v", err)
	}
	if newLeader := pc.waitLeader(all); newLeader == leader {
		t.Fatalf("leader still %s after SIGKILL", leader)
	}
	pc.start(pc.index(leader))
	pc.waitConverged(all)
	t.Log("converged after failover")

	// Rotate every server to a new CA and send SIGHUP.
	rotated := t.TempDir()
	tlsInit(t, rotated)
	newCA, err := client.New(pc.addrs(), adminTLS(rotated), client.WithRetryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer newCA.Close()
	if _, err := newCA.Stats(ctxT(t, 2*time.Second)); err == nil {
		t.Fatal("a client of the new CA was served before the rotation")
	}
	for _, name := range []string{"ca.pem", "server-s1.pem", "server-s1-key.pem", "server-s2.pem", "server-s2-key.pem", "server-s3.pem", "server-s3-key.pem"} {
		b, err := os.ReadFile(filepath.Join(rotated, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pki, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pc.procs {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, time.Minute, "a client of the new CA to be served", func() bool {
		_, err := newCA.Stats(context.Background())
		return err == nil
	})
	t.Log("rotated")
	// New raft connections (after a restart) use the new certificates.
	pc.kill(0)
	pc.start(0)
	pc.clientOpts = []client.Option{adminTLS(rotated)}
	all = pc.newClient()
	if _, err := all.Pin(ctx, hashesN(10, 5)); err != nil {
		t.Fatal(err)
	}
	pc.waitConverged(all)
}
