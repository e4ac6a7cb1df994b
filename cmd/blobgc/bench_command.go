package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/blobgc/blobgc/bench"
)

// benchCmd is `blobgc bench`: load from simulated VM nodes, operators and
// sweepers against any cluster, with throughput and latency percentiles.
func benchCmd() *cobra.Command {
	f := &clientFlags{}
	var (
		cfg      bench.Config
		mix      string
		scaling  string
		minRatio float64
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency with simulated VM nodes, operators and sweepers",
		Long: `bench drives the cluster at --servers through the Go client, as VM nodes,
operators and sweepers would, and prints throughput, latency percentiles and
a histogram (or JSON with -o json). Operations, mixed by weight with --mix:

  pin            coordinator pin of --batch fresh hashes
  register       RegisterBlobs of --batch fresh hashes
  full           a VM node's full report of --report-size hashes
  delta          a VM node's delta report: --delta-size added, the last delta's removed
  status         linearizable status of a hash the worker wrote
  status-stale   stale status, answered by whichever server gets it
  claim          a sweeper's claim of --batch hashes, then confirm of what was granted

--scaling 1,16 runs the same workload once per client count; with --min-ratio
the command fails unless the last run's throughput is at least that many times
the first's (a check that concurrent writes still share log writes).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.output != "table" && f.output != "json" {
				return fmt.Errorf("output format %q: want table or json", f.output)
			}
			opts, err := f.clientOptions()
			if err != nil {
				return err
			}
			if cfg.Mix, err = bench.ParseMix(mix); err != nil {
				return err
			}
			counts := []int{cfg.Clients}
			if scaling != "" {
				if counts, err = parseCounts(scaling); err != nil {
					return err
				}
			} else if minRatio > 0 {
				return errors.New("--min-ratio needs --scaling")
			}
			cfg.Servers, cfg.ClientOptions = f.serverList(), opts
			if f.output == "table" {
				cfg.Progress = cmd.ErrOrStderr()
			}
			var results []*bench.Result
			for _, n := range counts {
				run := cfg
				run.Clients = n
				if run.Conns == 0 {
					run.Conns = min(n, 4)
				}
				r, err := bench.Run(cmd.Context(), run)
				if err != nil {
					return err
				}
				results = append(results, r)
				if f.output == "table" {
					r.WriteText(cmd.OutOrStdout())
					fmt.Fprintln(cmd.OutOrStdout())
				}
			}
			if f.output == "json" {
				var v any = results[0]
				if len(results) > 1 {
					v = results
				}
				if err := writeJSON(cmd.OutOrStdout(), v); err != nil {
					return err
				}
			}
			if len(results) > 1 {
				first, last := results[0], results[len(results)-1]
				ratio := last.OpsPerSec / first.OpsPerSec
				fmt.Fprintf(cmd.ErrOrStderr(), "scaling: %d clients %.1f ops/s, %d clients %.1f ops/s: %.2fx\n",
					first.Clients, first.OpsPerSec, last.Clients, last.OpsPerSec, ratio)
				if minRatio > 0 && !(ratio >= minRatio) {
					return fmt.Errorf("concurrency does not pay: %d clients reached %.2fx the throughput of %d, want at least %.2fx",
						last.Clients, ratio, first.Clients, minRatio)
				}
			}
			for _, r := range results {
				if r.Errors > 0 {
					return fmt.Errorf("%d of %d operations failed", r.Errors, r.Ops)
				}
			}
			return nil
		},
	}
	f.register(cmd)
	fs := cmd.Flags()
	fs.IntVar(&cfg.Clients, "clients", 1, "concurrent clients (workers); each reporting client is one VM node")
	fs.IntVar(&cfg.Conns, "conns", 0, "client connections shared by the clients (0: min(clients, 4))")
	fs.DurationVar(&cfg.Duration, "duration", 0, "run this long (default 10s unless --total is given)")
	fs.IntVar(&cfg.Total, "total", 0, "run this many operations (0: only --duration)")
	fs.StringVar(&mix, "mix", "pin=1", "operations and their weights, e.g. pin=3,status=1 (pin, register, full, delta, status, status-stale, claim)")
	fs.IntVar(&cfg.Batch, "batch", 1, "hashes per pin, register and claim")
	fs.IntVar(&cfg.ReportSize, "report-size", 100, "hashes per full report")
	fs.IntVar(&cfg.DeltaSize, "delta-size", 100, "hashes added (and removed) per delta report")
	fs.StringVar(&scaling, "scaling", "", "comma-separated client counts to run one after another, e.g. 1,16")
	fs.Float64Var(&minRatio, "min-ratio", 0, "with --scaling: fail unless the last run's throughput is this many times the first's")
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if cfg.Duration == 0 && cfg.Total == 0 {
			cfg.Duration = defaultBenchDuration
		}
		return nil
	}
	return cmd
}

const defaultBenchDuration = 10 * time.Second

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--scaling: %q is not a client count above 0", part)
		}
		out = append(out, n)
	}
	return out, nil
}
