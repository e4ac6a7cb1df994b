package cluster

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/blobgc/blobgc/auth"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/transport"
)

// Defaults for Config fields left at zero. The raft timings are tuned for a LAN:
// a follower starts an election 0.3-0.6 s after the leader's last contact
// (median failover about 0.7 s in BenchmarkFailover), while a leader that is
// starved of CPU for a moment (heartbeats go every 30 ms) keeps its lease.
const (
	DefaultHeartbeatTimeout   = 300 * time.Millisecond
	DefaultElectionTimeout    = 300 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 50 * time.Millisecond
	DefaultApplyTimeout       = 10 * time.Second
	DefaultCycleInterval      = 30 * time.Second
	DefaultSnapshotThreshold  = 8192
	DefaultSnapshotInterval   = 120 * time.Second
	DefaultTrailingLogs       = 10240
	// DefaultMaxAppendEntries bounds both a group commit (how many queued
	// proposals one log write takes) and one AppendEntries batch.
	DefaultMaxAppendEntries = 64
	DefaultJoinTimeout      = 2 * time.Minute

	// MaxBatch is the most hashes one request may carry (all fields of a report
	// together). 30,000 hashes encode to about 960 KB, inside fsm.MaxCommandSize.
	MaxBatch = 30000
	// MaxPageSize bounds one page of a list call; DefaultPageSize is used for 0.
	MaxPageSize     = 10000
	DefaultPageSize = 1000
)

// Config configures a Server.
type Config struct {
	ID            string // raft server id (required)
	DataDir       string // raft.db (log and stable store) and snapshots/ (required)
	ListenAddr    string // host:port of the one gRPC listener (raft + client API)
	AdvertiseAddr string // what peers dial; default: the listener's actual address
	// Listener, if set, is used instead of listening on ListenAddr (tests pick
	// addresses before the servers exist; socket activation).
	Listener net.Listener
	Peers    []Peer   // static bootstrap set, identical on every server; empty with Join
	Join     []string // addresses of existing members to join through (any member)
	// DiscardDamagedState moves a damaged raft.db and snapshots/ aside
	// (renamed *.damaged-<unix time>) and starts without raft state, instead
	// of refusing to start.
	DiscardDamagedState bool
	// RecoverPeers, if set, replaces the raft configuration with these
	// servers before raft starts, provided that no quorum of the current
	// configuration answers within RecoverProbeTimeout (default
	// DefaultRecoverProbeTimeout). For a cluster that lost quorum for good.
	RecoverPeers        []Peer
	RecoverProbeTimeout time.Duration
	// BackupDir, if set, receives a backup file of this server's applied
	// state every BackupInterval (default DefaultBackupInterval); the newest
	// BackupKeep (default DefaultBackupKeep) are kept.
	BackupDir      string
	BackupInterval time.Duration
	BackupKeep     int
	TLS            TLSFiles // empty = plaintext
	// TokenFile, if set, lists the bearer tokens clients may authenticate
	// with (package auth describes the format); ReloadTokens re-reads it.
	// With neither a token file nor TLS every caller is auth.Anonymous.
	TokenFile string
	// TrustDomain is the trust domain of the identities in certificates
	// (spiffe://<TrustDomain>/server/<id>, spiffe://<TrustDomain>/<role>/<name>);
	// default auth.DefaultTrustDomain.
	TrustDomain string

	// Raft timings; 0 = the LAN defaults above. LeaderLeaseTimeout is capped
	// at HeartbeatTimeout.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout, CommitTimeout time.Duration
	// Log compaction: snapshot after SnapshotThreshold new entries (checked
	// every SnapshotInterval), keeping TrailingLogs entries for slow followers.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// MaxAppendEntries is the most entries one log write (group commit) or
	// one AppendEntries call carries; 0 = DefaultMaxAppendEntries, at most
	// 1024 (raft's limit).
	MaxAppendEntries int
	// LogStore is where the raft log lives: LogStoreWAL (segment files in
	// DataDir/wal) or LogStoreBoltDB (in raft.db beside the stable store).
	// Empty means the store the data dir already holds, and DefaultLogStore
	// for a new server. A data dir keeps the store it was created with.
	LogStore string
	// WALSegmentSize is the size in bytes of the WAL's segment files, each
	// allocated in full when it is started; 0 = raft-wal's default (64 MiB).
	WALSegmentSize int

	ApplyTimeout  time.Duration // how long a write may wait for commit; default 10s
	CycleInterval time.Duration // the leader runs a GC cycle this often; 0 = 30s; <0 = off
	JoinTimeout   time.Duration // how long Start keeps retrying a join; default 2m
	// GC, if set, is proposed by the first leader that finds the replicated
	// configuration still at fsm.DefaultConfig().
	GC          *fsm.Config
	MetricsAddr string // host:port for HTTP /metrics; empty = off
	// Limits bound what clients can make this server hold or do.
	Limits Limits
	Logger hclog.Logger
	// WallClock, if set, is the source of every wall-clock reading the
	// server records (a fault-injection aid for skews and jumps; the
	// cluster clock never reads it). nil = the real clock.
	WallClock *WallClock

	// Faults, if set, wraps the raft transport with this fault table (tests).
	Faults *transport.Faults
}

// TLSFiles names PEM files. With all three set, the server speaks TLS, verifies
// client certificates from CAFile when given (peers must present one for the
// raft service) and dials peers with CertFile as its client certificate.
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
}

// Peer is one member of the static bootstrap configuration.
type Peer struct{ ID, Address string }

func validatePeer(p Peer) error {
	if err := ValidateServerID(p.ID); err != nil {
		return err
	}
	if err := ValidateServerAddress(p.Address); err != nil {
		return fmt.Errorf("server %q: %v", p.ID, err)
	}
	return nil
}

// ParsePeers parses "id1=host:port,id2=host:port,...". Ids and addresses must
// be unique.
func ParsePeers(s string) ([]Peer, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var peers []Peer
	ids := map[string]bool{}
	addrs := map[string]bool{}
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		id, addr, ok := strings.Cut(part, "=")
		id, addr = strings.TrimSpace(id), strings.TrimSpace(addr)
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("peer %d %q: want id=host:port", i+1, part)
		}
		if err := validatePeer(Peer{ID: id, Address: addr}); err != nil {
			return nil, err
		}
		if ids[id] {
			return nil, fmt.Errorf("peer id %q listed twice", id)
		}
		if addrs[addr] {
			return nil, fmt.Errorf("peer address %q listed twice", addr)
		}
		ids[id], addrs[addr] = true, true
		peers = append(peers, Peer{ID: id, Address: addr})
	}
	return peers, nil
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	def(&c.ElectionTimeout, DefaultElectionTimeout)
	def(&c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	def(&c.CommitTimeout, DefaultCommitTimeout)
	def(&c.ApplyTimeout, DefaultApplyTimeout)
	def(&c.CycleInterval, DefaultCycleInterval)
	def(&c.SnapshotInterval, DefaultSnapshotInterval)
	def(&c.JoinTimeout, DefaultJoinTimeout)
	def(&c.RecoverProbeTimeout, DefaultRecoverProbeTimeout)
	def(&c.BackupInterval, DefaultBackupInterval)
	if c.BackupKeep <= 0 {
		c.BackupKeep = DefaultBackupKeep
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.MaxAppendEntries == 0 {
		c.MaxAppendEntries = DefaultMaxAppendEntries
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		c.LeaderLeaseTimeout = c.HeartbeatTimeout
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.TrustDomain == "" {
		c.TrustDomain = auth.DefaultTrustDomain
	}
	c.Limits.setDefaults()
}

func (c *Config) validate() error {
	if c.ID == "" {
		return errors.New("cluster: ID is required")
	}
	if err := ValidateServerID(c.ID); err != nil {
		return fmt.Errorf("cluster: ID: %v", err)
	}
	if c.DataDir == "" {
		return errors.New("cluster: DataDir is required")
	}
	if c.ListenAddr == "" && c.Listener == nil {
		return errors.New("cluster: ListenAddr is required")
	}
	if len(c.Peers) > 0 && len(c.Join) > 0 {
		return errors.New("cluster: set either Peers (bootstrap) or Join, not both")
	}
	seen := map[string]bool{}
	for _, p := range c.Peers {
		if err := validatePeer(p); err != nil {
			return fmt.Errorf("cluster: peer: %v", err)
		}
		if seen[p.ID] {
			return fmt.Errorf("cluster: peer id %q listed twice", p.ID)
		}
		seen[p.ID] = true
	}
	if len(c.Peers) > 0 && !seen[c.ID] {
		return fmt.Errorf("cluster: this server's id %q is not among the peers", c.ID)
	}
	switch c.LogStore {
	case "", LogStoreBoltDB, LogStoreWAL:
	default:
		return fmt.Errorf("cluster: log store %q: want %s or %s", c.LogStore, LogStoreBoltDB, LogStoreWAL)
	}
	if c.MaxAppendEntries < 0 || c.MaxAppendEntries > 1024 {
		return fmt.Errorf("cluster: MaxAppendEntries %d: want 1 to 1024 (0: default)", c.MaxAppendEntries)
	}
	t := c.TLS
	if (t.CertFile != "" || t.KeyFile != "" || t.CAFile != "") && (t.CertFile == "" || t.KeyFile == "" || t.CAFile == "") {
		return errors.New("cluster: TLS needs CertFile, KeyFile and CAFile together")
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if c.GC != nil {
		if err := c.GC.Validate(); err != nil {
			return fmt.Errorf("cluster: GC config: %w", err)
		}
	}
	return nil
}
