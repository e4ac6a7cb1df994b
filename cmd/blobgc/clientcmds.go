package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/client"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/sweeper"
)

// defaultServers is where `blobgc dev` listens.
const defaultServers = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"

// clientFlags are the flags every client command takes.
type clientFlags struct {
	servers                string
	output                 string
	stale                  bool
	timeout, dialTimeout   time.Duration
	tlsCA, tlsCert, tlsKey string
	token, tokenFile       string
	tokenWithoutTLS        bool
}

func (f *clientFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.servers, "servers", defaultServers, "comma-separated server addresses (any members)")
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table|json")
	fs.BoolVar(&f.stale, "stale", false, "let any server answer reads from its own, possibly stale, state")
	fs.DurationVar(&f.timeout, "timeout", 15*time.Second, "give up after this long (retries included)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "CA file (PEM) to verify the servers; enables TLS")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "client certificate file (PEM), with --tls-ca")
	fs.StringVar(&f.tlsKey, "tls-key", "", "client key file (PEM), with --tls-ca")
	fs.StringVar(&f.token, "token", "", "bearer token to authenticate with (prefer BLOBGC_TOKEN or --token-file: flags show in ps)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file whose first line is the bearer token")
	fs.BoolVar(&f.tokenWithoutTLS, "token-without-tls", false, "allow sending the token without TLS (a cluster run with --insecure)")
	fs.DurationVar(&f.dialTimeout, "dial-timeout", 2*time.Second, "give up when no server has answered for this long")
}

// clientOptions turns the flags into client options: retries, TLS and
// the bearer token.
func (f *clientFlags) clientOptions() ([]client.Option, error) {
	opts := []client.Option{client.WithRetryTimeout(f.timeout), client.WithDialTimeout(f.dialTimeout)}
	if f.tlsCA != "" {
		opts = append(opts, client.WithTLS(f.tlsCA, f.tlsCert, f.tlsKey))
	} else if f.tlsCert != "" || f.tlsKey != "" {
		return nil, errors.New("--tls-cert and --tls-key need --tls-ca")
	}
	switch {
	case f.token != "" && f.tokenFile != "":
		return nil, errors.New("give --token or --token-file, not both")
	case f.token != "":
		opts = append(opts, client.WithToken(f.token))
	case f.tokenFile != "":
		opts = append(opts, client.WithTokenFile(f.tokenFile))
	}
	if f.tokenWithoutTLS {
		opts = append(opts, client.AllowTokenWithoutTLS())
	}
	return opts, nil
}

func (f *clientFlags) serverList() []string { return strings.Split(f.servers, ",") }

// env is what a client command runs with.
type env struct {
	ctx  context.Context
	c    *client.Client
	f    *clientFlags
	in   io.Reader
	out  io.Writer
	errw io.Writer // notes for a person (nothing found, why nothing changed)
	json bool
}

func (e *env) read() []client.ReadOption {
	if e.f.stale {
		return []client.ReadOption{client.Stale()}
	}
	return nil
}

// emit prints v as JSON with -o json, else calls table with a tabwriter.
func (e *env) emit(v any, table func(w io.Writer)) error {
	if e.json {
		return writeJSON(e.out, v)
	}
	tw := tabwriter.NewWriter(controlEscaper{e.out}, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// clientCmd builds a client command around run.
func clientCmd(use, short string, args cobra.PositionalArgs, run func(e *env, cmd *cobra.Command, args []string) error) *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{Use: use, Short: short, Args: args}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if f.output != "table" && f.output != "json" {
			return fmt.Errorf("output format %q: want table or json", f.output)
		}
		opts, err := f.clientOptions()
		if err != nil {
			return err
		}
		c, err := client.New(f.serverList(), opts...)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
		defer cancel()
		return withServersHint(run(&env{ctx: ctx, c: c, f: f, in: cmd.InOrStdin(), out: cmd.OutOrStdout(), errw: cmd.ErrOrStderr(), json: f.output == "json"}, cmd, args))
	}
	f.register(cmd)
	return cmd
}

// parseHashes reads hashes from args ("-": one per line from in) and from
// file (one per line); blank lines and lines starting with # are skipped.
func parseHashes(args []string, file string, in io.Reader) ([]client.Hash, error) {
	var texts, where []string
	addLines := func(r io.Reader, name string) error {
		sc := bufio.NewScanner(r)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			texts = append(texts, line)
			where = append(where, fmt.Sprintf("%s line %d", name, n))
		}
		return sc.Err()
	}
	for i, a := range args {
		if a == "-" {
			if err := addLines(in, "stdin"); err != nil {
				return nil, err
			}
			continue
		}
		texts = append(texts, a)
		where = append(where, fmt.Sprintf("argument %d", i+1))
	}
	if file != "" {
		fh, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		if err := addLines(fh, file); err != nil {
			return nil, err
		}
	}
	hs := make([]client.Hash, 0, len(texts))
	for i, t := range texts {
		h, err := client.ParseHash(t)
		if err != nil {
			var fe *fsm.Error
			if errors.As(err, &fe) {
				err = errors.New(fe.Message)
			}
			return nil, fmt.Errorf("bad hash %q (%s): %v", abbrev(t), where[i], err)
		}
		hs = append(hs, h)
	}
	if len(hs) == 0 {
		return nil, errors.New("no hashes given")
	}
	return hs, nil
}

func abbrev(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

func hexes(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = fmt.Sprintf("%x", b)
	}
	return out
}

// clusterTime renders a cluster time (ns since the cluster's clock started).
func clusterTime(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Duration(ns).Round(time.Millisecond).String()
}

func listOrDash(ss []string) string {
	if len(ss) == 0 {
		return "-"
	}
	return printable(strings.Join(ss, ","))
}

func stateName(s blobgcv1.BlobState) string {
	return strings.TrimPrefix(s.String(), "BLOB_STATE_")
}

func addClientCommands(root *cobra.Command) {
	root.AddCommand(
		statusCmd(), hashWriteCmd("pin", "Pin blobs (coordinator pins)", (*client.Client).Pin, "Pinned"),
		hashWriteCmd("unpin", "Remove coordinator pins", (*client.Client).Unpin, "Unpinned"),
		hashWriteCmd("register", "Register blobs (hashes as arguments, --file, or - for stdin)", (*client.Client).RegisterBlobs, "Registered"),
		hashWriteCmd("confirm", "Confirm that claimed blobs were deleted", (*client.Client).ConfirmCollected, "Confirmed"),
		claimCmd(), reportCmd(), cycleCmd(), historyCmd(), eligibleCmd(), nodesGroup(), statsCmd(), blobsCmd(),
		configCmd(), membersCmd(), joinCmd(), removeCmd(), transferCmd(), digestCmd(), healthCmd(), sweepCmd(),
	)
}

func statusCmd() *cobra.Command {
	var file string
	cmd := clientCmd("status HASH...", "Show blobs' status and who protects them", cobra.ArbitraryArgs, func(e *env, _ *cobra.Command, args []string) error {
		hs, err := parseHashes(args, file, e.in)
		if err != nil {
			return err
		}
		now, err := clusterNow(e)
		if err != nil {
			return err
		}
		var sts []*blobgcv1.BlobStatus
		for _, h := range hs {
			st, err := e.c.Status(e.ctx, h, e.read()...)
			if err != nil {
				return err
			}
			sts = append(sts, st)
		}
		js := make([]any, len(sts))
		for i, st := range sts {
			js[i] = toJSON(st)
		}
		return e.emit(js, func(w io.Writer) {
			fmt.Fprintln(w, "HASH\tSTATE\tREGISTERED\tCOORD_PIN\tREFERENCED_BY\tPINNED_BY\tUNREFERENCED_SINCE\tDANGLING")
			for _, st := range sts {
				fmt.Fprintf(w, "%x\t%s\t%t\t%t\t%s\t%s\t%s\t%t\n", st.Hash, stateName(st.State), st.Registered, st.CoordinatorPin,
					listOrDash(st.ReferencedBy), listOrDash(st.PinnedBy), clusterAge(st.UnreferencedSinceNs, now), st.Dangling)
			}
		})
	})
	cmd.Flags().StringVar(&file, "file", "", "read hashes from this file, one per line")
	return cmd
}

type hashWrite func(*client.Client, context.Context, []client.Hash) (*blobgcv1.WriteResponse, error)

func hashWriteCmd(name, short string, op hashWrite, verb string) *cobra.Command {
	var file string
	cmd := clientCmd(name+" HASH...", short, cobra.ArbitraryArgs, func(e *env, _ *cobra.Command, args []string) error {
		hs, err := parseHashes(args, file, e.in)
		if err != nil {
			return err
		}
		resp, err := op(e.c, e.ctx, hs)
		if err != nil {
			return err
		}
		if err := e.emit(toJSON(resp), func(w io.Writer) {
			fmt.Fprintf(w, "%s %d hash(es): %d changed, applied at index %d\n", verb, len(hs), resp.Changed, resp.AppliedIndex)
		}); err != nil {
			return err
		}
		if name == "confirm" {
			return confirmNote(e, hs, resp)
		}
		return nil
	})
	cmd.Flags().StringVar(&file, "file", "", "read hashes from this file, one per line")
	return cmd
}

func claimCmd() *cobra.Command {
	var file string
	cmd := clientCmd("claim HASH...", "Claim marked blobs for deletion; prints those granted", cobra.ArbitraryArgs, func(e *env, _ *cobra.Command, args []string) error {
		hs, err := parseHashes(args, file, e.in)
		if err != nil {
			return err
		}
		granted, idx, err := e.c.Claim(e.ctx, hs)
		if err != nil {
			return err
		}
		gs := make([]string, len(granted))
		for i, h := range granted {
			gs[i] = h.String()
		}
		if err := e.emit(map[string]any{"granted": gs, "applied_index": idx}, func(w io.Writer) {
			for _, g := range gs {
				fmt.Fprintln(w, g)
			}
		}); err != nil {
			return err
		}
		return claimNote(e, hs, granted)
	})
	cmd.Flags().StringVar(&file, "file", "", "read hashes from this file, one per line")
	return cmd
}

func reportCmd() *cobra.Command {
	var (
		node                                 string
		full, delta                          bool
		seq                                  uint64
		active, pinned, remActive, remPinned []string
	)
	cmd := clientCmd("report", "Send a VM node's report (full or delta)", cobra.NoArgs, func(e *env, cmd *cobra.Command, _ []string) error {
		if node == "" {
			return errors.New("--node is required")
		}
		if full == delta {
			return errors.New("give exactly one of --full and --delta")
		}
		parse := func(flag string, ss []string) ([][]byte, error) {
			if len(ss) == 0 {
				return nil, nil
			}
			hs, err := parseHashes(ss, "", e.in)
			if err != nil {
				return nil, fmt.Errorf("--%s: %v", flag, err)
			}
			out := make([][]byte, len(hs))
			for i := range hs {
				out[i] = hs[i][:]
			}
			return out, nil
		}
		a, err := parse("active", active)
		if err != nil {
			return err
		}
		p, err := parse("pinned", pinned)
		if err != nil {
			return err
		}
		ra, err := parse("removed-active", remActive)
		if err != nil {
			return err
		}
		rp, err := parse("removed-pinned", remPinned)
		if err != nil {
			return err
		}
		var resp *blobgcv1.ReportResponse
		switch {
		case full && (len(ra) > 0 || len(rp) > 0):
			return errors.New("--removed-active and --removed-pinned are for --delta")
		case full && !cmd.Flags().Changed("seq"):
			// The Reporter picks the sequence number after the cluster's
			// and chunks large reports.
			r := e.c.Reporter(node)
			ah, _ := hashesOf(a)
			ph, _ := hashesOf(p)
			if err := r.Full(e.ctx, ah, ph); err != nil {
				return err
			}
			resp = &blobgcv1.ReportResponse{Seq: r.Seq()}
		case full:
			resp, err = e.c.Report(e.ctx, &blobgcv1.ReportRequest{NodeId: node, Kind: blobgcv1.ReportKind_REPORT_KIND_FULL, Seq: seq, Active: a, Pinned: p})
		default:
			if !cmd.Flags().Changed("seq") {
				return errors.New("--delta needs --seq (the previous report's seq + 1)")
			}
			resp, err = e.c.Report(e.ctx, &blobgcv1.ReportRequest{NodeId: node, Kind: blobgcv1.ReportKind_REPORT_KIND_DELTA, Seq: seq,
				Active: a, Pinned: p, RemovedActive: ra, RemovedPinned: rp})
			if frr, ok := client.FullReportRequired(err); ok {
				return fmt.Errorf("%s (the cluster expects seq %d)", errorText(err), frr.ExpectedSeq)
			}
		}
		if err != nil {
			return err
		}
		kind := "Full"
		if delta {
			kind = "Delta"
		}
		return e.emit(toJSON(resp), func(w io.Writer) {
			if resp.Duplicate {
				fmt.Fprintf(w, "%s report of %s seq %d was applied before: nothing changed\n", kind, node, resp.Seq)
				return
			}
			fmt.Fprintf(w, "%s report of %s applied: seq %d, %d active, %d pinned", kind, node, resp.Seq, len(a), len(p))
			if delta {
				fmt.Fprintf(w, ", %d active and %d pinned removed", len(ra), len(rp))
			}
			if resp.AppliedIndex > 0 {
				fmt.Fprintf(w, ", index %d", resp.AppliedIndex)
			}
			fmt.Fprintln(w)
		})
	})
	fs := cmd.Flags()
	fs.StringVar(&node, "node", "", "VM node id (required)")
	fs.BoolVar(&full, "full", false, "a full report: replaces the node's sets")
	fs.BoolVar(&delta, "delta", false, "a delta report: adds and removes hashes (needs --seq)")
	fs.Uint64Var(&seq, "seq", 0, "sequence number (delta: previous + 1; full: default after the cluster's)")
	fs.StringSliceVar(&active, "active", nil, "active hashes (full: the whole set; delta: added)")
	fs.StringSliceVar(&pinned, "pinned", nil, "pinned hashes (full: the whole set; delta: added)")
	fs.StringSliceVar(&remActive, "removed-active", nil, "delta: hashes no longer active")
	fs.StringSliceVar(&remPinned, "removed-pinned", nil, "delta: hashes no longer pinned")
	return cmd
}

func hashesOf(bs [][]byte) ([]client.Hash, error) {
	out := make([]client.Hash, len(bs))
	for i, b := range bs {
		h, err := client.HashFromBytes(b)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

func cycleCmd() *cobra.Command {
	var dry bool
	cmd := clientCmd("cycle", "Run a GC cycle now (or --dry-run: show what it would do)", cobra.NoArgs, func(e *env, _ *cobra.Command, _ []string) error {
		res, err := e.c.RunCycle(e.ctx, dry)
		if err != nil {
			return err
		}
		return e.emit(toJSON(res), func(w io.Writer) {
			title := "Cycle"
			if res.DryRun {
				title = "Cycle (dry run, nothing applied)"
			}
			fmt.Fprintln(w, title)
			kv := [][2]string{
				{"Cluster time", clusterTime(res.TimeNs)},
				{"Nodes reporting", strconv.FormatInt(res.NodesReporting, 10)},
				{"Active", strconv.FormatInt(res.ActiveCount, 10)},
				{"Pinned", strconv.FormatInt(res.PinnedCount, 10)},
				{"Unreferenced", strconv.FormatInt(res.UnreferencedCount, 10)},
				{"Eligible", strconv.Itoa(len(res.Eligible))},
				{"Newly marked", strconv.Itoa(len(res.NewlyMarked))},
				{"Stale nodes", listOrDash(res.StaleNodes)},
				{"Skipped", orDash(res.Skipped)},
			}
			if !res.DryRun {
				kv = append(kv, [2]string{"Applied index", strconv.FormatUint(res.AppliedIndex, 10)})
			}
			for _, p := range kv {
				fmt.Fprintf(w, "  %s\t%s\n", p[0], p[1])
			}
			for _, h := range hexes(res.NewlyMarked) {
				fmt.Fprintf(w, "  marked\t%s\n", h)
			}
		})
	})
	cmd.Flags().BoolVar(&dry, "dry-run", false, "compute the cycle without applying it")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return printable(s)
}

func historyCmd() *cobra.Command {
	return clientCmd("history", "List past GC cycles, oldest first", cobra.NoArgs, func(e *env, _ *cobra.Command, _ []string) error {
		var evs []*blobgcv1.HistoryEvent
		for ev, err := range e.c.History(e.ctx, e.read()...) {
			if err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		js := make([]any, len(evs))
		for i, ev := range evs {
			js[i] = toJSON(ev)
		}
		return e.emit(map[string]any{"events": js}, func(w io.Writer) {
			fmt.Fprintln(w, "SEQ\tWHEN\tNEWLY_MARKED\tELIGIBLE\tPRESERVED\tNODES\tSKIPPED")
			for _, ev := range evs {
				fmt.Fprintf(w, "%d\t%s\t%d\t%d\t%d\t%d\t%s\n", ev.Seq, wallAge(ev.WallTimeNs),
					len(ev.NewlyMarked), ev.EligibleCount, ev.Preserved, ev.NodesReporting, orDash(ev.Skipped))
			}
		})
	})
}

func eligibleCmd() *cobra.Command {
	return clientCmd("eligible", "List blobs eligible for collection, one hash per line", cobra.NoArgs, func(e *env, _ *cobra.Command, _ []string) error {
		hs := []string{}
		for h, err := range e.c.ListEligible(e.ctx, e.read()...) {
			if err != nil {
				return err
			}
			hs = append(hs, h.String())
		}
		if !e.json && len(hs) == 0 {
			fmt.Fprintln(e.errw, "No blobs are eligible for collection.")
		}
		return e.emit(map[string]any{"hashes": hs}, func(w io.Writer) {
			for _, h := range hs {
				fmt.Fprintln(w, h)
			}
		})
	})
}

func nodesCmd() *cobra.Command {
	return clientCmd("nodes", "List the VM nodes that report", cobra.NoArgs, func(e *env, _ *cobra.Command, _ []string) error {
		nodes, err := e.c.Nodes(e.ctx, e.read()...)
		if err != nil {
			return err
		}
		js := make([]any, len(nodes))
		for i, n := range nodes {
			js[i] = toJSON(n)
		}
		return e.emit(js, func(w io.Writer) {
			fmt.Fprintln(w, "ID\tSEQ\tACTIVE\tPINNED\tSTALE\tLAST_REPORT")
			for _, n := range nodes {
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%t\t%s\n", printable(n.Id), n.Seq, n.Active, n.Pinned, n.Stale, wallAge(n.LastReportWallNs))
			}
		})
	})
}

func statsCmd() *cobra.Command {
	return clientCmd("stats", "Show blob counts by status and node counts", cobra.NoArgs, func(e *env, _ *cobra.Command, _ []string) error {
		s, err := e.c.Stats(e.ctx, e.read()...)
		if err != nil {
			return err
		}
		return e.emit(toJSON(s), func(w io.Writer) {
			for _, kv := range []struct {
				k string
				v any
			}{
				{"Known", s.Known}, {"Active", s.Active}, {"Pinned", s.Pinned}, {"Unreferenced", s.Unreferenced},
				{"Marked", s.Marked}, {"Deleting", s.Deleting}, {"Collected", s.Collected},
				{"Dangling refs", s.DanglingRefs}, {"Nodes reporting", s.NodesReporting}, {"Nodes stale", s.NodesStale},
				{"Cluster time", clusterTime(s.ClusterTimeNs)}, {"Applied index", s.AppliedIndex},
				{"Last cycle", lastCycle(s)},
			} {
				fmt.Fprintf(w, "%s\t%v\n", kv.k, kv.v)
			}
		})
	})
}

// configKeys are the keys of `config set`, in display order.
var configKeys = []string{"grace-period", "stale-threshold", "min-nodes", "history-limit", "stale-policy", "max-eligible-fraction", "tombstone-limit",
	"max-nodes", "max-staged-hashes-per-node", "max-staged-hashes"}

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Show or change the replicated GC configuration"}
	get := clientCmd("get", "Show the GC configuration", cobra.NoArgs, func(e *env, _ *cobra.Command, _ []string) error {
		c, err := e.c.GetConfig(e.ctx, e.read()...)
		if err != nil {
			return err
		}
		return printConfig(e, c)
	})
	set := clientCmd("set KEY=VALUE...", "Change GC configuration values (keys: "+strings.Join(configKeys, ", ")+")", cobra.MinimumNArgs(1), func(e *env, _ *cobra.Command, args []string) error {
		req, err := parseConfigSet(args)
		if err != nil {
			return err
		}
		c, err := e.c.SetConfig(e.ctx, req)
		if err != nil {
			return err
		}
		return printConfig(e, c)
	})
	cmd.AddCommand(get, set)
	return cmd
}

func printConfig(e *env, c *blobgcv1.Config) error {
	return e.emit(toJSON(c), func(w io.Writer) {
		vals := []string{
			time.Duration(c.GracePeriodNs).String(), time.Duration(c.StaleThresholdNs).String(),
			strconv.FormatInt(c.MinNodesReporting, 10), strconv.FormatInt(c.HistoryLimit, 10),
			strings.ToLower(strings.TrimPrefix(c.StalePolicy.String(), "STALE_POLICY_")),
			strconv.FormatFloat(c.MaxEligibleFraction, 'g', -1, 64), strconv.FormatInt(c.TombstoneLimit, 10),
			strconv.FormatInt(c.MaxNodes, 10), strconv.FormatInt(c.MaxStagedHashesPerNode, 10), strconv.FormatInt(c.MaxStagedHashes, 10),
		}
		for i, k := range configKeys {
			fmt.Fprintf(w, "%s\t%s\n", k, vals[i])
		}
		if c.SetBy != "" {
			fmt.Fprintf(w, "set-by\t%s\n", c.SetBy)
		}
	})
}

// parseConfigSet parses key=value pairs into a SetConfigRequest.
func parseConfigSet(args []string) (*blobgcv1.SetConfigRequest, error) {
	req := &blobgcv1.SetConfigRequest{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("%q: want key=value (keys: %s)", a, strings.Join(configKeys, ", "))
		}
		bad := func(err error) error { return fmt.Errorf("%s: %q: %v", k, v, err) }
		switch k {
		case "grace-period", "stale-threshold":
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, bad(err)
			}
			if k == "grace-period" {
				req.GracePeriodNs = proto.Int64(int64(d))
			} else {
				req.StaleThresholdNs = proto.Int64(int64(d))
			}
		case "min-nodes", "history-limit", "tombstone-limit", "max-nodes", "max-staged-hashes-per-node", "max-staged-hashes":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, bad(errors.New("want an integer"))
			}
			field := map[string]**int64{"min-nodes": &req.MinNodesReporting, "history-limit": &req.HistoryLimit,
				"tombstone-limit": &req.TombstoneLimit, "max-nodes": &req.MaxNodes,
				"max-staged-hashes-per-node": &req.MaxStagedHashesPerNode, "max-staged-hashes": &req.MaxStagedHashes}[k]
			*field = proto.Int64(n)
		case "stale-policy":
			p, err := parsePolicy(v)
			if err != nil {
				return nil, err
			}
			sp := blobgcv1.StalePolicy_STALE_POLICY_DROP
			if p == fsm.StaleHold {
				sp = blobgcv1.StalePolicy_STALE_POLICY_HOLD
			}
			req.StalePolicy = &sp
		case "max-eligible-fraction":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, bad(errors.New("want a number"))
			}
			req.MaxEligibleFraction = proto.Float64(f)
		default:
			return nil, fmt.Errorf("unknown config key %q (keys: %s)", k, strings.Join(configKeys, ", "))
		}
	}
	return req, nil
}

func membersCmd() *cobra.Command {
	return clientCmd("members", "List the cluster's servers (like consul operator raft list-peers)", cobra.NoArgs, func(e *env, _ *cobra.Command, _ []string) error {
		m, err := e.c.Members(e.ctx)
		if err != nil {
			return err
		}
		return printMembers(e, m)
	})
}

func printMembers(e *env, m *blobgcv1.MembersResponse) error {
	return e.emit(toJSON(m), func(w io.Writer) {
		var leaderCommit uint64
		for _, mem := range m.Members {
			if mem.Leader {
				leaderCommit = mem.CommitIndex
			}
		}
		fmt.Fprintln(w, "ID\tADDRESS\tSTATE\tVOTER\tLAST_CONTACT\tCOMMIT_INDEX\tAPPLIED_INDEX\tTRAILS_LEADER_BY")
		for _, mem := range m.Members {
			contact := "-"
			if mem.LastContactMs >= 0 && !mem.Leader {
				contact = (time.Duration(mem.LastContactMs) * time.Millisecond).String()
			}
			trails := "-"
			if leaderCommit > 0 && mem.CommitIndex > 0 && !mem.Leader {
				trails = strconv.FormatUint(leaderCommit-min(leaderCommit, mem.CommitIndex), 10)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%t\t%s\t%d\t%d\t%s\n", printable(mem.Id), printable(mem.Address), printable(mem.State), mem.Voter, contact, mem.CommitIndex, mem.AppliedIndex, trails)
		}
		fmt.Fprintf(w, "term %d, leader %s at %s\n", m.Term, orDash(m.LeaderId), orDash(m.LeaderAddress))
	})
}

func joinCmd() *cobra.Command {
	var nonVoter bool
	cmd := clientCmd("join ID ADDRESS", "Add a server to the cluster", cobra.ExactArgs(2), func(e *env, _ *cobra.Command, args []string) error {
		m, err := e.c.AddServer(e.ctx, args[0], args[1], nonVoter)
		if err != nil {
			return err
		}
		return printMembers(e, m)
	})
	cmd.Flags().BoolVar(&nonVoter, "non-voter", false, "add as a non-voting member")
	return cmd
}

func removeCmd() *cobra.Command {
	return clientCmd("remove ID", "Remove a server from the cluster", cobra.ExactArgs(1), func(e *env, _ *cobra.Command, args []string) error {
		m, err := e.c.RemoveServer(e.ctx, args[0])
		if err != nil {
			return err
		}
		return printMembers(e, m)
	})
}

func transferCmd() *cobra.Command {
	return clientCmd("transfer-leader [ID]", "Move leadership to server ID (or let raft choose)", cobra.MaximumNArgs(1), func(e *env, _ *cobra.Command, args []string) error {
		target := ""
		if len(args) == 1 {
			target = args[0]
		}
		r, err := e.c.TransferLeadership(e.ctx, target)
		if err != nil {
			return err
		}
		return e.emit(toJSON(r), func(w io.Writer) {
			fmt.Fprintf(w, "Leader is now %s at %s\n", r.LeaderId, r.LeaderAddress)
		})
	})
}

// digestRow is one server's answer to `digest`.
type digestRow struct {
	Address      string `json:"address"`
	ServerID     string `json:"server_id,omitempty"`
	AppliedIndex uint64 `json:"applied_index,omitempty"`
	Digest       string `json:"digest,omitempty"`
	Error        string `json:"error,omitempty"`
}

func digestCmd() *cobra.Command {
	return clientCmd("digest", "Show every server's state digest and applied index", cobra.NoArgs, func(e *env, _ *cobra.Command, _ []string) error {
		var rows []digestRow
		answered := map[string]bool{} // server ids
		ok := 0
		ask := func(a string) {
			r := digestRow{Address: a}
			dctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
			d, err := e.c.DigestOf(dctx, a)
			cancel()
			if err != nil {
				r.Error = errorText(err)
			} else {
				ok++
				answered[d.ServerId] = true
				r.ServerID, r.AppliedIndex, r.Digest = d.ServerId, d.AppliedIndex, fmt.Sprintf("%x", d.Digest)
			}
			rows = append(rows, r)
		}
		given := strings.Split(e.f.servers, ",")
		for _, a := range given {
			ask(strings.TrimSpace(a))
		}
		// Members not given in --servers, asked at the address they
		// advertise; a member that answered through a --servers address
		// (as behind a NAT or compose port mapping) is not asked twice.
		mctx, cancel := context.WithTimeout(e.ctx, 3*time.Second)
		if m, err := e.c.Members(mctx); err == nil {
			for _, mem := range m.Members {
				if !answered[mem.Id] && !contains(given, mem.Address) {
					ask(mem.Address)
				}
			}
		}
		cancel()
		err := e.emit(map[string]any{"servers": rows}, func(w io.Writer) {
			fmt.Fprintln(w, "SERVER\tADDRESS\tAPPLIED_INDEX\tDIGEST")
			for _, r := range rows {
				if r.Error != "" {
					fmt.Fprintf(w, "-\t%s\t-\t%s\n", printable(r.Address), r.Error)
					continue
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", printable(r.ServerID), printable(r.Address), r.AppliedIndex, r.Digest)
			}
		})
		if err == nil && ok == 0 {
			err = errors.New("no server answered")
		}
		return err
	})
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// healthCmd checks one server, for container healthchecks and scripts: it
// exits non-zero unless the server is SERVING and knows a leader, so a server
// cut off from its cluster reports unhealthy.
func healthCmd() *cobra.Command {
	var addr string
	cmd := clientCmd("health", "Check that one server is serving and has a leader (exit status 1 if not)", cobra.NoArgs, func(e *env, _ *cobra.Command, _ []string) error {
		st, err := e.c.Health(e.ctx, addr, "")
		if err != nil {
			return fmt.Errorf("%s: %s", addr, errorText(err))
		}
		if st != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("%s: %s", addr, st)
		}
		m, err := e.c.MembersOf(e.ctx, addr)
		if err != nil {
			return fmt.Errorf("%s: %s", addr, errorText(err))
		}
		if m.LeaderId == "" {
			return fmt.Errorf("%s: serving, but no leader known", addr)
		}
		res := map[string]any{"address": addr, "status": st.String(), "leader_id": m.LeaderId, "leader_address": m.LeaderAddress, "term": m.Term}
		return e.emit(res, func(w io.Writer) {
			fmt.Fprintf(w, "%s\t%s\tleader %s at %s, term %d\n", printable(addr), st, printable(m.LeaderId), printable(m.LeaderAddress), m.Term)
		})
	})
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:7001", "the server to check (the default is the first server of blobgc dev)")
	return cmd
}

// sweepCmd deletes the blobs the cluster grants from a content-addressed
// directory store (DIR/ab/cdef...): list eligible, claim, delete, confirm.
func sweepCmd() *cobra.Command {
	var store string
	var dry bool
	var batch int
	cmd := clientCmd("sweep", "Delete granted blobs from a store laid out as DIR/ab/cdef... (claim, delete, confirm)", cobra.NoArgs, func(e *env, cmd *cobra.Command, _ []string) error {
		if store == "" {
			return errors.New("--store is required")
		}
		if fi, err := os.Stat(store); err != nil || !fi.IsDir() {
			return fmt.Errorf("--store %s: not a directory", store)
		}
		progress := func(s sweeper.Summary) { fmt.Fprintln(cmd.ErrOrStderr(), "sweep:", s) }
		sum, err := sweeper.Run(e.ctx, e.c, sweeper.Dir(store), sweeper.Options{DryRun: dry, Batch: batch, Progress: progress})
		res := map[string]any{
			"dry_run": dry, "eligible": sum.Eligible, "granted": sum.Granted, "deleted": sum.Deleted,
			"missing": sum.Missing, "confirmed": sum.Confirmed, "errors": sum.Errors,
		}
		if dry {
			res["would_claim"] = hashStrings(sum.WouldClaim)
		} else {
			res["deleted_hashes"] = hashStrings(sum.DeletedHashes)
		}
		if perr := e.emit(res, func(w io.Writer) {
			if dry {
				fmt.Fprintf(w, "Dry run: %d blob(s) would be claimed, nothing changed\n", sum.Eligible)
				for _, h := range sum.WouldClaim {
					fmt.Fprintf(w, "  %s\n", h)
				}
				return
			}
			fmt.Fprintf(w, "Sweep of %s\n", store)
			for _, kv := range [][2]any{{"Eligible", sum.Eligible}, {"Granted", sum.Granted}, {"Deleted", sum.Deleted},
				{"Missing", sum.Missing}, {"Confirmed", sum.Confirmed}, {"Errors", sum.Errors}} {
				fmt.Fprintf(w, "  %s\t%d\n", kv[0], kv[1])
			}
		}); perr != nil {
			return perr
		}
		return err
	})
	cmd.Flags().StringVar(&store, "store", "", "the blob store directory (required)")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "list what would be claimed; change nothing")
	cmd.Flags().IntVar(&batch, "batch", sweeper.DefaultBatch, "blobs per claim and per confirm")
	// A sweep of a large store outlives the usual per-command timeout.
	fl := cmd.Flags().Lookup("timeout")
	_ = fl.Value.Set("1h")
	fl.DefValue = "1h"
	return cmd
}

func hashStrings(hs []client.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	return out
}
