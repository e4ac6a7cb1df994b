package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/blobgc/blobgc/cluster"
)

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
		Short: "Run a 3-server cluster in this process, for trying blobgc out",
		Long: `Start three servers in one process on 127.0.0.1:7001-7003 (metrics on
127.0.0.1:9001-9003), with data in a temporary directory (removed at exit) or
in --data-dir (kept, so a second run restarts the same cluster). Runs until
Ctrl-C. The dev cluster speaks plaintext without authentication, so it
listens on loopback only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return fmt.Errorf("--host %q: the dev cluster runs without TLS, so it listens on loopback addresses only", host)
			}
			gcCfg, err := gc.config(cmd.Flags())
			if err != nil {
				return err
			}
			log, err := logs.logger(cmd.ErrOrStderr(), "blobgc-dev")
			if err != nil {
				return err
			}
			dir := dataDir
			if dir == "" {
				dir, err = os.MkdirTemp("", "blobgc-dev-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
			}
			var peers []cluster.Peer
			for i := 0; i < 3; i++ {
				peers = append(peers, cluster.Peer{ID: fmt.Sprintf("s%d", i+1), Address: fmt.Sprintf("%s:%d", host, port+i)})
			}
			var cfgs []cluster.Config
			for i, p := range peers {
				c := cluster.Config{
					ID: p.ID, DataDir: filepath.Join(dir, p.ID), ListenAddr: p.Address,
					Peers: peers, GC: gcCfg, Logger: log.Named(p.ID),
				}
				if metricsPort > 0 {
					c.MetricsAddr = fmt.Sprintf("%s:%d", host, metricsPort+i)
				}
				timings.apply(&c)
				cfgs = append(cfgs, c)
			}
			out := cmd.OutOrStdout()
			return runServers(cmd.Context(), cmd.ErrOrStderr(), cfgs, func(servers []*cluster.Server) {
				var addrs []string
				fmt.Fprintf(out, "blobgc dev cluster: 3 servers, data in %s\n", dir)
				fmt.Fprintf(out, "Plaintext, no TLS, no authentication: for trying blobgc on this machine only (loopback).\n")
				for _, s := range servers {
					addrs = append(addrs, s.Addr())
					m, page := s.MetricsAddr(), ""
					if m == "" {
						m = "off"
					} else {
						m, page = "http://"+m+"/metrics", "  page http://"+m+"/ui"
					}
					fmt.Fprintf(out, "  %s  api %s  metrics %s%s  data %s\n", s.ID(), s.Addr(), m, page, filepath.Join(dir, s.ID()))
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
