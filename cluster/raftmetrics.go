package cluster

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"

	gometrics "github.com/armon/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// raftSink receives the go-metrics that raft and raft-boltdb emit through
// the process-wide go-metrics global and exposes them in Prometheus form:
// snake_case names with unit suffixes (raft's timers, in milliseconds,
// become _seconds histograms; counters end in _total), peer ids as a
// peer_id label (raft emits each per-peer metric twice, once with the peer
// id in the name and once as a label: the first is dropped) and HELP text
// from raftMetricSpecs.
//
// go-metrics has one global sink per process, so these metrics cannot tell
// in-process servers apart: a process running several servers (tests; `blobgc
// dev` runs each server in a process of its own) leaves them out (see
// servers), and each server's own gauges (blobgc_raft_state, _term, commit
// and applied index, last contact) cover what matters per server.
type raftSink struct {
	mu     sync.Mutex
	series map[string]*raftSeries // by name and label values
}

type raftSeries struct {
	desc    *prometheus.Desc
	kind    prometheus.ValueType // CounterValue or GaugeValue; samples use hist
	labels  []string
	value   float64
	hist    prometheus.Histogram
	isHisto bool
}

// raftMetricSpec describes one raft metric: its unit and what it means.
type raftMetricSpec struct {
	unit string // "seconds" (raft reports milliseconds), "bytes", or "" for a plain number
	help string
}

// raftMetricSpecs names, by raft's dotted key, the metrics raft v1.7,
// raft-boltdb v2 and raft-wal emit. Keys not listed are still exposed, named by the
// general rule, with a HELP that says where they come from.
var raftMetricSpecs = map[string]raftMetricSpec{
	"raft.apply":                           {"", "Log entries this server's raft accepted for appending as leader."},
	"raft.barrier":                         {"", "Barriers issued (each new leader issues one before serving reads)."},
	"raft.verify_leader":                   {"", "Leadership verifications (linearizable reads)."},
	"raft.restore":                         {"", "User snapshots restored."},
	"raft.state.candidate":                 {"", "Times this server became a candidate (started an election)."},
	"raft.state.follower":                  {"", "Times this server became a follower."},
	"raft.state.leader":                    {"", "Times this server became the leader."},
	"raft.transition.heartbeat_timeout":    {"", "Times a follower lost contact with the leader for a heartbeat timeout and started an election."},
	"raft.transition.leader_lease_timeout": {"", "Times a leader stepped down because it lost contact with a quorum for the lease timeout."},
	"raft.commitTime":                      {"seconds", "Time from appending an entry on the leader to its commit."},
	"raft.compactLogs":                     {"seconds", "Time to compact the log after a snapshot."},
	"raft.removeOldLogs":                   {"seconds", "Time to remove old log entries after restoring a snapshot."},
	"raft.restoreUserSnapshot":             {"seconds", "Time to restore a user snapshot."},
	"raft.commitNumLogs":                   {"", "Log entries committed in the last batch on the leader."},
	"raft.peers":                           {"", "Voters and non-voters in the leader's configuration."},
	"raft.candidate.electSelf":             {"seconds", "Time to request votes from the peers in an election."},
	"raft.candidate.preElectSelf":          {"seconds", "Time to request pre-votes from the peers."},
	"raft.fsm.apply":                       {"seconds", "Time the state machine took to apply one entry."},
	"raft.fsm.applyBatch":                  {"seconds", "Time the state machine took to apply one batch of entries."},
	"raft.fsm.applyBatchNum":               {"", "Entries per batch applied to the state machine."},
	"raft.fsm.enqueue":                     {"seconds", "Time a batch waited to be handed to the state machine."},
	"raft.fsm.restore":                     {"seconds", "Time the state machine took to restore a snapshot."},
	"raft.fsm.snapshot":                    {"seconds", "Time the state machine took to capture a snapshot."},
	"raft.fsm.store_config":                {"seconds", "Time to store a configuration change."},
	"raft.fsm.lastRestoreDuration":         {"seconds", "Duration of the last snapshot restore."},
	"raft.leader.dispatchLog":              {"seconds", "Time the leader took to write a batch of entries to its own log."},
	"raft.leader.dispatchNumLogs":          {"", "Entries in the last batch the leader wrote to its log."},
	"raft.leader.lastContact":              {"seconds", "Time since the leader last heard from a quorum (lease check)."},
	"raft.net.getRPCType":                  {"seconds", "Time to read an RPC's type from the network transport."},
	"raft.net.rpcDecode":                   {"seconds", "Time to decode an RPC from the network transport."},
	"raft.net.rpcEnqueue":                  {"seconds", "Time an RPC waited to be handled."},
	"raft.net.rpcRespond":                  {"seconds", "Time to answer an RPC on the network transport."},
	"raft.replication.appendEntries.rpc":   {"seconds", "Time of an AppendEntries RPC from the leader to a peer."},
	"raft.replication.appendEntries.logs":  {"", "Log entries the leader replicated to a peer."},
	"raft.replication.heartbeat":           {"seconds", "Time of a heartbeat from the leader to a peer."},
	"raft.replication.installSnapshot":     {"seconds", "Time to send a snapshot to a peer."},
	"raft.rpc.appendEntries":               {"seconds", "Time a follower took to handle an AppendEntries RPC."},
	"raft.rpc.appendEntries.processLogs":   {"seconds", "Time a follower took to process the entries of an AppendEntries RPC."},
	"raft.rpc.appendEntries.storeLogs":     {"seconds", "Time a follower took to store the entries of an AppendEntries RPC."},
	"raft.rpc.installSnapshot":             {"seconds", "Time a follower took to install a snapshot."},
	"raft.rpc.processHeartbeat":            {"seconds", "Time a follower took to process a heartbeat."},
	"raft.rpc.requestVote":                 {"seconds", "Time to handle a vote request."},
	"raft.snapshot.create":                 {"seconds", "Time to create a snapshot."},
	"raft.snapshot.persist":                {"seconds", "Time to write a snapshot to disk."},
	"raft.snapshot.takeSnapshot":           {"seconds", "Time to take a snapshot, capture and persist."},
	"raft.boltdb.getLog":                   {"seconds", "Time to read one log entry from raft.db."},
	"raft.boltdb.storeLogs":                {"seconds", "Time to write a batch of log entries to raft.db (includes fsync)."},
	"raft.boltdb.logBatchSize":             {"bytes", "Bytes per batch of log entries written to raft.db."},
	"raft.boltdb.logSize":                  {"bytes", "Bytes per log entry written to raft.db."},
	"raft.boltdb.logsPerBatch":             {"", "Log entries per batch written to raft.db."},
	"raft.boltdb.writeCapacity":            {"", "Log entries per second raft.db could write at the last batch's speed."},
	"raft.boltdb.totalReadTxn":             {"", "Read transactions on raft.db."},
	"raft.boltdb.openReadTxn":              {"", "Open read transactions on raft.db."},
	"raft.boltdb.freePageBytes":            {"bytes", "Bytes in free pages of raft.db."},
	"raft.boltdb.freelistBytes":            {"bytes", "Bytes of raft.db's freelist."},
	"raft.boltdb.numFreePages":             {"", "Free pages in raft.db."},
	"raft.boltdb.numPendingPages":          {"", "Pages of raft.db pending release."},
	"raft.boltdb.txstats.pageAlloc":        {"bytes", "Bytes allocated for pages by raft.db write transactions."},
	"raft.boltdb.txstats.pageCount":        {"", "Pages allocated by raft.db write transactions."},
	"raft.boltdb.txstats.rebalanceTime":    {"seconds", "Time raft.db spent rebalancing."},
	"raft.boltdb.txstats.spillTime":        {"seconds", "Time raft.db spent spilling."},
	"raft.boltdb.txstats.writeTime":        {"seconds", "Time raft.db spent writing."},
	"raft.boltdb.txstats.cursorCount":      {"", "Cursors raft.db created."},
	"raft.boltdb.txstats.nodeCount":        {"", "Nodes raft.db allocated."},
	"raft.boltdb.txstats.nodeDeref":        {"", "Node dereferences in raft.db."},
	"raft.boltdb.txstats.rebalance":        {"", "Node rebalances in raft.db."},
	"raft.boltdb.txstats.spill":            {"", "Nodes raft.db spilled."},
	"raft.boltdb.txstats.split":            {"", "Nodes raft.db split."},
	"raft.boltdb.txstats.write":            {"", "Writes raft.db performed."},
	// raft-wal, the default log store (wal/ in the data dir).
	"raft.wal.log_appends":              {"", "Batches of log entries appended to the WAL (one fsync each)."},
	"raft.wal.log_entries_written":      {"", "Log entries written to the WAL."},
	"raft.wal.log_entry_bytes_written":  {"", "Bytes of encoded log entries written to the WAL (headers and index not counted)."},
	"raft.wal.log_entries_read":         {"", "Log entries read from the WAL."},
	"raft.wal.log_entry_bytes_read":     {"", "Bytes of encoded log entries read from the WAL."},
	"raft.wal.segment_rotations":        {"", "Times the WAL moved on to a new segment file."},
	"raft.wal.head_truncations":         {"", "Log entries removed from the head of the WAL (the oldest, after a snapshot)."},
	"raft.wal.tail_truncations":         {"", "Log entries removed from the tail of the WAL (the newest, replaced by a new leader's)."},
	"raft.wal.stable_gets":              {"", "Reads of the WAL's stable store (unused: raft.db is the stable store)."},
	"raft.wal.stable_sets":              {"", "Writes of the WAL's stable store (unused: raft.db is the stable store)."},
	"raft.wal.last_segment_age_seconds": {"", "Seconds between the creation and sealing of the last full WAL segment: how fast writes fill the disk."},
}

// peerNamed are the keys raft also emits with the peer id appended to the
// name; those copies are dropped in favour of the labelled ones.
var peerNamed = []string{
	"raft.replication.appendEntries.rpc", "raft.replication.appendEntries.logs",
	"raft.replication.heartbeat", "raft.replication.installSnapshot",
}

var (
	secondsBuckets = prometheus.ExponentialBuckets(0.0001, 4, 10) // 0.1 ms .. 26 s
	numberBuckets  = prometheus.ExponentialBuckets(1, 4, 12)      // 1 .. 4M
)

// servers counts the servers running in this process; raft's process-wide
// metrics are exposed only while it is one.
var servers atomic.Int32

func newRaftSink() *raftSink { return &raftSink{series: map[string]*raftSeries{}} }

// promName turns raft's key (without the service prefix) into a Prometheus
// name: blobgc_ + snake_case parts + unit suffix, and _total for counters.
func promName(key string, spec raftMetricSpec, counter bool) string {
	var b strings.Builder
	b.WriteString("blobgc")
	for _, part := range strings.Split(key, ".") {
		b.WriteByte('_')
		b.WriteString(snake(part))
	}
	if spec.unit != "" {
		b.WriteString("_" + spec.unit)
	}
	if counter {
		b.WriteString("_total")
	}
	return b.String()
}

// snake converts camelCase to snake_case: appendEntries -> append_entries.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// record adds a value to the series of key and labels; it is where every
// sink method ends.
func (r *raftSink) record(key []string, val float32, labels []gometrics.Label, kind string) {
	// go-metrics prefixes the service name ("blobgc").
	if len(key) > 0 && key[0] == "blobgc" {
		key = key[1:]
	}
	name := strings.Join(key, ".")
	for _, p := range peerNamed {
		if strings.HasPrefix(name, p+".") {
			return
		}
	}
	spec, known := raftMetricSpecs[name]
	if !known {
		spec = raftMetricSpec{help: "raft metric " + name + "."}
		if kind == "sample" {
			spec.unit = "seconds" // most of raft's samples are timers
		}
	}
	v := float64(val)
	if spec.unit == "seconds" {
		v /= 1000 // raft reports milliseconds
	}
	labelNames := make([]string, len(labels))
	labelValues := make([]string, len(labels))
	for i, l := range labels {
		labelNames[i], labelValues[i] = snake(l.Name), l.Value
	}
	id := name + "\xff" + strings.Join(labelNames, ",") + "\xff" + strings.Join(labelValues, "\xff")
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.series[id]
	if s == nil {
		s = &raftSeries{labels: labelValues}
		pname := promName(name, spec, kind == "counter")
		switch kind {
		case "sample":
			buckets := numberBuckets
			if spec.unit == "seconds" {
				buckets = secondsBuckets
			}
			s.isHisto = true
			s.hist = prometheus.NewHistogram(prometheus.HistogramOpts{
				Name: pname, Help: spec.help, Buckets: buckets,
				ConstLabels: constLabels(labelNames, labelValues),
			})
		case "counter":
			s.kind = prometheus.CounterValue
			s.desc = prometheus.NewDesc(pname, spec.help, labelNames, nil)
		default:
			s.kind = prometheus.GaugeValue
			s.desc = prometheus.NewDesc(pname, spec.help, labelNames, nil)
		}
		r.series[id] = s
	}
	switch kind {
	case "sample":
		s.hist.Observe(v)
	case "counter":
		s.value += v
	default:
		s.value = v
	}
}

func constLabels(names, values []string) prometheus.Labels {
	if len(names) == 0 {
		return nil
	}
	l := prometheus.Labels{}
	for i, n := range names {
		l[n] = values[i]
	}
	return l
}

func (r *raftSink) SetGauge(key []string, val float32) { r.record(key, val, nil, "gauge") }
func (r *raftSink) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	r.record(key, val, labels, "gauge")
}
func (r *raftSink) EmitKey(key []string, val float32)     {}
func (r *raftSink) IncrCounter(key []string, val float32) { r.record(key, val, nil, "counter") }
func (r *raftSink) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	r.record(key, val, labels, "counter")
}
func (r *raftSink) AddSample(key []string, val float32) { r.record(key, val, nil, "sample") }
func (r *raftSink) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	r.record(key, val, labels, "sample")
}

// Describe sends nothing: the series appear as raft emits them, so the
// collector is unchecked.
func (r *raftSink) Describe(chan<- *prometheus.Desc) {}

func (r *raftSink) Collect(ch chan<- prometheus.Metric) {
	if servers.Load() > 1 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.series))
	for id := range r.series {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s := r.series[id]
		if s.isHisto {
			ch <- s.hist
			continue
		}
		ch <- prometheus.MustNewConstMetric(s.desc, s.kind, s.value, s.labels...)
	}
}
