package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/fsm"
)

// shutdownTimeout bounds a graceful shutdown (leadership transfer, draining
// in-flight calls).
const shutdownTimeout = 10 * time.Second

// serverFlags holds the flags of `blobgc server`.
type serverFlags struct {
	id, dataDir, listen, advertise, peers string
	discardDamaged                        bool
	recoverFrom                           string
	recoverProbe                          time.Duration
	backupDir                             string
	backupInterval                        time.Duration
	backupKeep                            int
	join                                  []string
	tlsCert, tlsKey, tlsCA, trustDomain   string
	tokenFile                             string
	insecure                              bool
	timings                               timingFlags
	limits                                cluster.Limits
	gc                                    gcFlags
	metricsAddr                           string
	log                                   logFlags
	clockSkew                             time.Duration
	clockSkewFile                         string
	devCluster                            bool
}

// timingFlags are the raft and scheduler timings and raft's log settings
// (0 or empty = cluster defaults).
type timingFlags struct {
	heartbeat, election, leaderLease, commit time.Duration
	snapshotInterval, applyTO, cycle, join   time.Duration
	snapshotThreshold, trailingLogs          uint64
	maxAppendEntries                         int
	logStore                                 string
}

func (t *timingFlags) register(fs *pflag.FlagSet) {
	fs.DurationVar(&t.heartbeat, "heartbeat-timeout", 0, "raft heartbeat timeout (0: "+cluster.DefaultHeartbeatTimeout.String()+")")
	fs.DurationVar(&t.election, "election-timeout", 0, "raft election timeout (0: "+cluster.DefaultElectionTimeout.String()+")")
	fs.DurationVar(&t.leaderLease, "leader-lease-timeout", 0, "raft leader lease timeout (0: "+cluster.DefaultLeaderLeaseTimeout.String()+")")
	fs.DurationVar(&t.commit, "commit-timeout", 0, "raft commit timeout (0: "+cluster.DefaultCommitTimeout.String()+")")
	fs.Uint64Var(&t.snapshotThreshold, "snapshot-threshold", 0, "log entries between snapshots (0: default)")
	fs.DurationVar(&t.snapshotInterval, "snapshot-interval", 0, "how often to check whether to snapshot (0: default)")
	fs.Uint64Var(&t.trailingLogs, "trailing-logs", 0, "log entries kept after a snapshot (0: default)")
	fs.DurationVar(&t.applyTO, "apply-timeout", 0, "how long a write may wait for commit (0: "+cluster.DefaultApplyTimeout.String()+")")
	fs.DurationVar(&t.cycle, "cycle-interval", 0, "the leader runs a GC cycle this often (0: "+cluster.DefaultCycleInterval.String()+", negative: never)")
	fs.DurationVar(&t.join, "join-timeout", 0, "how long to keep trying to join (0: default)")
	fs.IntVar(&t.maxAppendEntries, "max-append-entries", 0, fmt.Sprintf("most entries per log write (group commit) and per AppendEntries (0: %d, at most 1024)", cluster.DefaultMaxAppendEntries))
	fs.StringVar(&t.logStore, "log-store", "", "raft log store: wal (segment files in DATA_DIR/wal) or boltdb (in raft.db); default: the one the data dir holds, wal for a new server")
}

func (t *timingFlags) apply(c *cluster.Config) {
	c.HeartbeatTimeout, c.ElectionTimeout = t.heartbeat, t.election
	c.LeaderLeaseTimeout, c.CommitTimeout = t.leaderLease, t.commit
	c.SnapshotThreshold, c.SnapshotInterval, c.TrailingLogs = t.snapshotThreshold, t.snapshotInterval, t.trailingLogs
	c.ApplyTimeout, c.CycleInterval, c.JoinTimeout = t.applyTO, t.cycle, t.join
	c.MaxAppendEntries, c.LogStore = t.maxAppendEntries, t.logStore
}

// registerLimits adds the flags of the client limits, with their defaults.
func registerLimits(fs *pflag.FlagSet, l *cluster.Limits) {
	fs.IntVar(&l.MaxMessageSize, "max-message-size", cluster.DefaultMaxMessageSize, fmt.Sprintf("largest gRPC message in bytes, API and raft alike (at least %d)", cluster.MinMessageSize))
	fs.IntVar(&l.MaxBatch, "max-batch", cluster.MaxBatch, fmt.Sprintf("most hashes in one request (1 to %d; clients split at %d)", cluster.MaxBatch, cluster.MaxBatch))
	fs.Uint32Var(&l.MaxStreams, "max-streams-per-conn", cluster.DefaultMaxStreams, "concurrent calls on one connection")
	fs.IntVar(&l.MaxConnections, "max-connections", cluster.DefaultMaxConns, "open connections, peers included; more are closed at once")
	fs.IntVar(&l.MaxHeavyReads, "max-heavy-reads", cluster.DefaultMaxHeavyReads, fmt.Sprintf("concurrent expensive reads (Digest, pages over %d items); more get ResourceExhausted", cluster.DefaultPageSize))
	fs.Float64Var(&l.RefusalRate, "refusal-rate", cluster.DefaultRefusalRate, "refused calls per second a connection earns back; past its burst, its calls are refused before they are read")
	fs.IntVar(&l.RefusalBurst, "refusal-burst", cluster.DefaultRefusalBurst, "refused calls (bad input, no credentials, denied, over a limit) a connection may make at once")
}

// gcFlags are the initial GC configuration, proposed by the first leader of a
// new cluster. Later changes go through `blobgc config set`.
type gcFlags struct {
	grace, stale                       time.Duration
	minNodes, history, tomb            int
	policy                             string
	maxFraction                        float64
	maxNodes, stagedPerNode, stagedAll int
}

var gcFlagNames = []string{"grace-period", "stale-threshold", "min-nodes", "history-limit", "tombstone-limit", "stale-policy", "max-eligible-fraction",
	"max-nodes", "max-staged-hashes-per-node", "max-staged-hashes"}

func (g *gcFlags) register(fs *pflag.FlagSet) {
	d := fsm.DefaultConfig()
	fs.DurationVar(&g.grace, "grace-period", d.GracePeriod, "initial GC config: how long a blob stays unreferenced before it is marked")
	fs.DurationVar(&g.stale, "stale-threshold", d.StaleThreshold, "initial GC config: a node report older than this is stale")
	fs.IntVar(&g.minNodes, "min-nodes", d.MinNodesReporting, "initial GC config: below this many reporting nodes a cycle marks nothing")
	fs.IntVar(&g.history, "history-limit", d.HistoryLimit, "initial GC config: cycle events kept")
	fs.IntVar(&g.tomb, "tombstone-limit", d.TombstoneLimit, "initial GC config: collected tombstones kept")
	fs.StringVar(&g.policy, "stale-policy", d.StalePolicy.String(), "initial GC config: drop|hold: what a stale node's report does")
	fs.Float64Var(&g.maxFraction, "max-eligible-fraction", d.MaxEligibleFraction, "initial GC config: a cycle newly marking more than this fraction of known blobs marks nothing")
	fs.IntVar(&g.maxNodes, "max-nodes", d.MaxNodes, "initial GC config: reports from further nodes are refused")
	fs.IntVar(&g.stagedPerNode, "max-staged-hashes-per-node", d.MaxStagedHashesPerNode, "initial GC config: hashes one node may hold in an unfinished chunked report")
	fs.IntVar(&g.stagedAll, "max-staged-hashes", d.MaxStagedHashesTotal, "initial GC config: hashes all nodes together may hold in unfinished chunked reports")
}

// config returns the GC config when any GC flag was set, else nil (keep the
// cluster's).
func (g *gcFlags) config(fs *pflag.FlagSet) (*fsm.Config, error) {
	set := false
	for _, n := range gcFlagNames {
		set = set || fs.Changed(n)
	}
	if !set {
		return nil, nil
	}
	p, err := parsePolicy(g.policy)
	if err != nil {
		return nil, err
	}
	c := fsm.Config{
		GracePeriod: g.grace, StaleThreshold: g.stale, MinNodesReporting: g.minNodes,
		HistoryLimit: g.history, TombstoneLimit: g.tomb, StalePolicy: p, MaxEligibleFraction: g.maxFraction,
		MaxNodes: g.maxNodes, MaxStagedHashesPerNode: g.stagedPerNode, MaxStagedHashesTotal: g.stagedAll,
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("GC config: %v", err)
	}
	return &c, nil
}

func parsePolicy(s string) (fsm.StalePolicy, error) {
	switch strings.ToLower(s) {
	case "drop":
		return fsm.StaleDrop, nil
	case "hold":
		return fsm.StaleHold, nil
	}
	return 0, fmt.Errorf("stale policy %q: want drop or hold", s)
}

type logFlags struct{ format, level string }

func (l *logFlags) register(fs *pflag.FlagSet, level string) {
	fs.StringVar(&l.format, "log-format", "text", "log format: text|json")
	fs.StringVar(&l.level, "log-level", level, "log level: trace|debug|info|warn|error")
}

func (l *logFlags) logger(w io.Writer, name string) (hclog.Logger, error) {
	return l.loggerAt(w, name, nil)
}

// loggerAt builds the logger with now, if set, as its source of log times.
func (l *logFlags) loggerAt(w io.Writer, name string, now hclog.TimeFunction) (hclog.Logger, error) {
	if l.format != "text" && l.format != "json" {
		return nil, fmt.Errorf("log format %q: want text or json", l.format)
	}
	lvl := hclog.LevelFromString(l.level)
	if lvl == hclog.NoLevel {
		return nil, fmt.Errorf("log level %q: want trace, debug, info, warn or error", l.level)
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: lvl, JSONFormat: l.format == "json", Output: w, TimeFn: now}), nil
}

func serverCmd() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run one blobgc server",
		Long: `Run one server of a blobgc cluster until SIGINT or SIGTERM, then shut down
gracefully (a leader hands leadership over first).

A new cluster starts with the same --peers list on every server; a restart
with existing data never bootstraps again. A server joins a running cluster
with --join (any member's address) instead of --peers.

TLS is required (--tls-cert, --tls-key, --tls-ca; make them with
"blobgc tls init") unless --insecure is given. Only servers whose certificate
names a member of the raft configuration may speak raft. SIGHUP re-reads the
certificate, key and CA files.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stderr := newBatchWriter(cmd.ErrOrStderr()) // log lines, an audit line per write among them
			defer stderr.Close()
			cmd.SetErr(stderr)
			cfg, err := f.config(cmd)
			if err != nil {
				return err
			}
			if cfg.TLS == (cluster.TLSFiles{}) {
				if f.devCluster {
					cfg.Logger.Info("plaintext on loopback, as a server of blobgc dev")
				} else {
					cfg.Logger.Warn("running without TLS (--insecure): anyone who can reach " + cfg.ListenAddr + " can act as a raft peer or client")
				}
			}
			return runServer(cmd.Context(), cmd.ErrOrStderr(), cfg, !f.devCluster, func(s *cluster.Server) {
				cfg.Logger.Info("serving", "id", s.ID(), "addr", s.Addr(), "metrics", s.MetricsAddr())
				reloadOnSIGHUP(cmd.Context(), s)
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.id, "id", "", "raft server id (required)")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for the raft log and snapshots (required)")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:7001", "host:port for the gRPC API and raft")
	fs.StringVar(&f.advertise, "advertise", "", "address peers and clients dial (default: the listen address)")
	fs.StringVar(&f.peers, "peers", "", `bootstrap peers "id=host:port,..." (identical on every server)`)
	fs.StringSliceVar(&f.join, "join", nil, "addresses of members to join through (instead of --peers)")
	fs.BoolVar(&f.discardDamaged, "discard-damaged-state", false, "if raft.db or the snapshots are damaged or do not fit together, move them aside (*.damaged-<time>) and start as a new, empty server instead of refusing to start")
	fs.StringVar(&f.recoverFrom, "recover-from-peers", "", `after losing quorum for good: replace the raft configuration with the servers in this peers.json file ([{"id":"s1","address":"host:port"},...]), refused if a quorum of the current configuration answers`)
	fs.DurationVar(&f.recoverProbe, "recover-probe-timeout", cluster.DefaultRecoverProbeTimeout, "with --recover-from-peers: how long to try reaching the current configuration's servers")
	fs.StringVar(&f.backupDir, "backup-dir", "", "write a backup file of this server's state here every --backup-interval (empty: off)")
	fs.DurationVar(&f.backupInterval, "backup-interval", cluster.DefaultBackupInterval, "how often to write a backup into --backup-dir")
	fs.IntVar(&f.backupKeep, "backup-keep", cluster.DefaultBackupKeep, "how many backups to keep in --backup-dir")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate file (PEM)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS key file (PEM)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "CA file (PEM) for peers and client certificates")
	fs.StringVar(&f.tokenFile, "token-file", "", "bearer tokens clients may authenticate with (see `blobgc token add`); reloaded on SIGHUP")
	fs.StringVar(&f.trustDomain, "trust-domain", auth.DefaultTrustDomain, "trust domain of the identities in certificates (spiffe://<trust-domain>/server/<id>)")
	fs.BoolVar(&f.insecure, "insecure", false, "run without TLS: anyone who reaches the port can act as a raft peer or client (testing only)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "host:port of the HTTP listener: /metrics, /healthz, /readyz, the JSON API under /v1/ and the page /ui (empty: off)")
	fs.DurationVar(&f.clockSkew, "clock-skew", 0, "fault injection: offset added to every wall-clock reading of this server (stamped wall times, log times); cluster time is unaffected")
	fs.BoolVar(&f.devCluster, "dev-cluster", false, "run as one of the servers blobgc dev starts: loopback only, and stop at once on SIGTERM since the whole cluster stops together")
	_ = fs.MarkHidden("dev-cluster")
	fs.StringVar(&f.clockSkewFile, "clock-skew-file", "", `fault injection: file whose skew ("DURATION" or "ID=DURATION" lines) is added to --clock-skew; re-read when it changes, so the wall clock jumps at runtime`)
	f.timings.register(fs)
	registerLimits(fs, &f.limits)
	f.gc.register(fs)
	f.log.register(fs, "info")
	return cmd
}

func (f *serverFlags) config(cmd *cobra.Command) (cluster.Config, error) {
	var c cluster.Config
	if f.id == "" {
		return c, fmt.Errorf("--id is required")
	}
	if f.dataDir == "" {
		return c, fmt.Errorf("--data-dir is required")
	}
	if err := cluster.ValidateServerID(f.id); err != nil {
		return c, fmt.Errorf("--id: %v", err)
	}
	if host, _, err := net.SplitHostPort(f.listen); f.devCluster && (err != nil || !isLoopbackHost(host)) {
		return c, fmt.Errorf("--listen %q: a server of blobgc dev listens on a loopback address only", f.listen)
	}
	if f.tlsCert == "" && f.tlsKey == "" && f.tlsCA == "" && !f.insecure {
		return c, fmt.Errorf("no TLS: give --tls-cert, --tls-key and --tls-ca (see blobgc tls init), or --insecure to run without")
	}
	peers, err := cluster.ParsePeers(f.peers)
	if err != nil {
		return c, fmt.Errorf("--peers: %v", err)
	}
	gc, err := f.gc.config(cmd.Flags())
	if err != nil {
		return c, err
	}
	var recoverPeers []cluster.Peer
	if f.recoverFrom != "" {
		if recoverPeers, err = cluster.ReadPeersFile(f.recoverFrom); err != nil {
			return c, fmt.Errorf("--recover-from-peers: %v", err)
		}
	}
	wall, err := cluster.NewWallClock(f.clockSkew, f.id, f.clockSkewFile)
	if err != nil {
		return c, fmt.Errorf("--clock-skew-file: %v", err)
	}
	log, err := f.log.loggerAt(cmd.ErrOrStderr(), "blobgc", wall.Now)
	if err != nil {
		return c, err
	}
	c = cluster.Config{
		ID: f.id, DataDir: f.dataDir, ListenAddr: f.listen, AdvertiseAddr: f.advertise,
		Peers: peers, Join: f.join, DiscardDamagedState: f.discardDamaged,
		RecoverPeers: recoverPeers, RecoverProbeTimeout: f.recoverProbe,
		BackupDir: f.backupDir, BackupInterval: f.backupInterval, BackupKeep: f.backupKeep,
		TLS:         cluster.TLSFiles{CertFile: f.tlsCert, KeyFile: f.tlsKey, CAFile: f.tlsCA},
		TokenFile:   f.tokenFile,
		TrustDomain: f.trustDomain,
		GC:          gc,
		MetricsAddr: f.metricsAddr,
		Limits:      f.limits,
		Logger:      log,
		WallClock:   wall,
	}
	f.timings.apply(&c)
	return c, nil
}

// runServer creates and starts the server, calls started (if set) once it
// runs, waits for ctx to end, then shuts it down: gracefully (handing
// leadership over), or at once when its whole cluster is stopping together
// (blobgc dev), since a transfer would only go to a server stopping too.
func runServer(ctx context.Context, stderr io.Writer, cfg cluster.Config, graceful bool, started func(*cluster.Server)) error {
	s, err := cluster.New(cfg)
	if err != nil {
		return fmt.Errorf("server %s: %w", cfg.ID, err)
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			if graceful {
				done <- s.Shutdown(sctx)
			} else {
				done <- s.Close()
			}
		}()
		// The process must exit even if a shutdown never returns.
		hard := time.NewTimer(shutdownTimeout + 5*time.Second)
		defer hard.Stop()
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintf(stderr, "shutdown %s: %v\n", s.ID(), err)
			}
		case <-hard.C:
			fmt.Fprintln(stderr, "shutdown did not finish in time; exiting anyway")
		}
	}
	if err := s.Start(); err != nil {
		stop()
		return err
	}
	if started != nil {
		started(s)
	}
	<-ctx.Done()
	stop()
	return nil
}
