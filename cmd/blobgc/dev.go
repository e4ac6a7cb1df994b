package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// devOwnFlags are the flags of `blobgc dev` that it does not pass on to its
// servers; every other one (timings, GC, logs) is also a server flag.
var devOwnFlags = map[string]bool{"data-dir": true, "host": true, "port": true, "metrics-port": true, "help": true}

func devCmd() *cobra.Command {
	var (
		dataDir           string
		host              string
		port, metricsPort int
		timings           timingFlags
		gc                gcFlags
		logs              logFlags
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a 3-server cluster on this machine, for trying blobgc out",
		Long: `Start three servers, each in its own process, on 127.0.0.1:7001-7003
(metrics on 127.0.0.1:9001-9003), with data in a temporary directory (removed
at exit) or in --data-dir (kept, so a second run restarts the same cluster).
The servers' logs come out here, each line prefixed with its server id. Runs
until Ctrl-C. The dev cluster speaks plaintext without authentication, so it
listens on loopback only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !isLoopbackHost(host) {
				return fmt.Errorf("--host %q: the dev cluster runs without TLS, so it listens on loopback addresses only", host)
			}
			// Bad flags are refused here, not three times by the servers.
			if _, err := gc.config(cmd.Flags()); err != nil {
				return err
			}
			if _, err := logs.logger(io.Discard, ""); err != nil {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the blobgc executable to run the servers: %v", err)
			}
			dir := dataDir
			if dir == "" {
				dir, err = os.MkdirTemp("", "blobgc-dev-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
			}
			var servers []*devServer
			var peers []string
			for i := 0; i < 3; i++ {
				s := &devServer{id: fmt.Sprintf("s%d", i+1), addr: net.JoinHostPort(host, fmt.Sprint(port+i))}
				s.dataDir = filepath.Join(dir, s.id)
				if metricsPort > 0 {
					s.metricsAddr = net.JoinHostPort(host, fmt.Sprint(metricsPort+i))
				}
				servers = append(servers, s)
				peers = append(peers, s.id+"="+s.addr)
			}
			passed := passedOnFlags(cmd.Flags())
			for _, s := range servers {
				s.args = append([]string{"server", "--dev-cluster", "--insecure", "--id", s.id, "--listen", s.addr,
					"--peers", strings.Join(peers, ","), "--data-dir", s.dataDir}, passed...)
				if s.metricsAddr != "" {
					s.args = append(s.args, "--metrics-addr", s.metricsAddr)
				}
			}
			out := cmd.OutOrStdout()
			return runDevServers(cmd.Context(), cmd.ErrOrStderr(), exe, servers, func(running []*devServer) {
				printDevBanner(out, dir, running)
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dataDir, "data-dir", "", "keep the servers' data here (default: a temporary directory)")
	fs.StringVar(&host, "host", "127.0.0.1", "loopback address to listen on")
	fs.IntVar(&port, "port", 7001, "API port of the first server; the others use the next two")
	fs.IntVar(&metricsPort, "metrics-port", 9001, "metrics port of the first server (0: off)")
	timings.register(fs)
	gc.register(fs)
	logs.register(fs, "warn")
	return cmd
}

// isLoopbackHost reports whether host names or is a loopback address, the
// only place a plaintext dev cluster may listen.
func isLoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// passedOnFlags returns dev's timing, GC and log flags as server flags:
// those given (on the command line or in the environment), and the log
// level always, since dev's default is quieter than a server's.
func passedOnFlags(fs *pflag.FlagSet) []string {
	var args []string
	fs.VisitAll(func(f *pflag.Flag) {
		if !devOwnFlags[f.Name] && (f.Changed || f.Name == "log-level") {
			args = append(args, "--"+f.Name+"="+f.Value.String())
		}
	})
	return args
}

// printDevBanner tells the user where the running servers are and what to
// try.
func printDevBanner(out io.Writer, dir string, running []*devServer) {
	var addrs []string
	fmt.Fprintf(out, "blobgc dev cluster: 3 servers, data in %s\n", dir)
	fmt.Fprintf(out, "Plaintext, no TLS, no authentication: for trying blobgc on this machine only (loopback).\n")
	for _, s := range running {
		addrs = append(addrs, s.addr)
		m, page := "off", ""
		if s.metricsAddr != "" {
			m, page = "http://"+s.metricsAddr+"/metrics", "  page http://"+s.metricsAddr+"/ui"
		}
		fmt.Fprintf(out, "  %s  api %s  metrics %s%s  data %s\n", s.id, s.addr, m, page, s.dataDir)
	}
	servers0 := ""
	if strings.Join(addrs, ",") != defaultServers {
		servers0 = " --servers " + strings.Join(addrs, ",")
	}
	fmt.Fprintf(out, "Try:\n")
	h := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	for _, ex := range []string{"members", "register " + h, "status " + h, "report --node vm-1 --full --active " + h, "cycle --dry-run", "stats", "digest"} {
		fmt.Fprintf(out, "  blobgc %s%s\n", ex, servers0)
	}
	fmt.Fprintf(out, "Ctrl-C stops the cluster.\n")
}
