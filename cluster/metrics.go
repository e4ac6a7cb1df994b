package cluster

import (
	"net/http"
	"strings"
	"sync"
	"time"

	gometrics "github.com/armon/go-metrics"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics is one server's Prometheus registry. Several servers in one process
// (tests, `blobgc dev`) each get their own; only raft's go-metrics sink is
// process-wide, because raft emits through a global (see raftSink).
type metrics struct {
	reg           *prometheus.Registry
	reports       *prometheus.CounterVec
	cycles        *prometheus.CounterVec
	cycleDuration prometheus.Histogram
	newlyMarked   prometheus.Counter
	forwarded     *prometheus.CounterVec
	closeOnce     sync.Once
	refused       *prometheus.CounterVec
}

var (
	raftSinkOnce sync.Once
	theRaftSink  *raftSink
)

// raftMetrics installs, once per process, raftSink as the global
// armon/go-metrics sink: raft v1.7.3 and raft-boltdb/v2 emit through
// hashicorp/go-metrics/compat, which forwards to armon/go-metrics unless the
// binary is built with -tags hashicorpmetrics.
func raftMetrics() prometheus.Collector {
	raftSinkOnce.Do(func() {
		sink := newRaftSink()
		cfg := gometrics.DefaultConfig("blobgc")
		cfg.EnableHostname = false
		cfg.EnableRuntimeMetrics = false
		if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
			return
		}
		theRaftSink = sink
	})
	if theRaftSink == nil {
		return nil
	}
	return theRaftSink
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blobgc_reports_applied_total",
			Help: "Reports this server proposed as leader and the state machine applied, by kind.",
		}, []string{"kind"}),
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blobgc_cycles_total",
			Help: "GC cycles this server proposed as leader, by outcome (ok, skipped, error).",
		}, []string{"outcome"}),
		cycleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "blobgc_cycle_duration_seconds",
			Help:    "Time from proposing a RunCycle to its applied result on the leader.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		newlyMarked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "blobgc_newly_marked_total",
			Help: "Blobs newly marked for collection by cycles this server proposed.",
		}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blobgc_forwarded_requests_total",
			Help: "Requests this server forwarded to the leader, by method and result code.",
		}, []string{"method", "code"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blobgc_limit_refusals_total",
			Help: "Connections, expensive reads and calls of connections over their refusal budget that this server refused because a limit was reached, by limit.",
		}, []string{"limit"}),
	}
	m.reg.MustRegister(m.reports, m.cycles, m.cycleDuration, m.newlyMarked, m.forwarded, m.refused,
		&stateCollector{s: s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if rm := raftMetrics(); rm != nil {
		m.reg.MustRegister(rm)
	}
	servers.Add(1)
	return m
}

// close tells the process-wide raft metrics that this server is gone.
func (m *metrics) close() { m.closeOnce.Do(func() { servers.Add(-1) }) }

// register adds another collector (the transport's) to this registry.
func (m *metrics) register(c prometheus.Collector) { m.reg.MustRegister(c) }

func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return mux
}

// stateCollector reads the state machine and raft at scrape time.
type stateCollector struct{ s *Server }

var (
	descBlobs        = prometheus.NewDesc("blobgc_blobs", "Known blobs by status.", []string{"status"}, nil)
	descEligible     = prometheus.NewDesc("blobgc_eligible_blobs", "Blobs marked for collection (eligible).", nil, nil)
	descDangling     = prometheus.NewDesc("blobgc_dangling_references", "Deleting or collected blobs that a live report still names.", nil, nil)
	descNodes        = prometheus.NewDesc("blobgc_nodes_reporting", "VM nodes with a kept report.", nil, nil)
	descNodesStale   = prometheus.NewDesc("blobgc_nodes_stale", "VM nodes whose last report is older than the stale threshold.", nil, nil)
	descClusterTime  = prometheus.NewDesc("blobgc_cluster_time_seconds", "Cluster time after the last applied command.", nil, nil)
	descApplied      = prometheus.NewDesc("blobgc_applied_index", "Raft index of the last entry the state machine processed.", nil, nil)
	descCommit       = prometheus.NewDesc("blobgc_commit_index", "Raft commit index known to this server.", nil, nil)
	descTerm         = prometheus.NewDesc("blobgc_raft_term", "Current raft term.", nil, nil)
	descRaftState    = prometheus.NewDesc("blobgc_raft_state", "1 for this server's raft state.", []string{"state"}, nil)
	descLeader       = prometheus.NewDesc("blobgc_is_leader", "1 if this server is the leader.", nil, nil)
	descLeaderKnown  = prometheus.NewDesc("blobgc_leader_known", "1 if this server knows a leader.", nil, nil)
	descLastContactS = prometheus.NewDesc("blobgc_raft_last_contact_seconds", "Time since this follower last heard from the leader (0 on the leader).", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBlobs, descEligible, descDangling, descNodes, descNodesStale,
		descClusterTime, descApplied, descCommit, descTerm, descRaftState, descLeader, descLeaderKnown, descLastContactS} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	n := s.fsm.Counts()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descBlobs, float64(n.Active), "active")
	gauge(descBlobs, float64(n.Pinned), "pinned")
	gauge(descBlobs, float64(n.Unreferenced), "unreferenced")
	gauge(descBlobs, float64(n.Marked), "marked_for_collection")
	gauge(descBlobs, float64(n.Deleting), "deleting")
	gauge(descBlobs, float64(n.Collected), "collected")
	gauge(descEligible, float64(n.Marked))
	gauge(descDangling, float64(n.DanglingRefs))
	gauge(descNodes, float64(n.NodesReporting))
	gauge(descNodesStale, float64(n.NodesStale))
	gauge(descClusterTime, float64(s.fsm.ClusterTime())/1e9)
	gauge(descApplied, float64(s.repl.Index()))
	if s.raft == nil {
		return
	}
	gauge(descCommit, float64(s.raft.CommitIndex()))
	gauge(descTerm, float64(s.raft.CurrentTerm()))
	st := s.raft.State()
	for _, x := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if x == st {
			v = 1
		}
		gauge(descRaftState, v, strings.ToLower(x.String()))
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge(descLeader, b2f(st == raft.Leader))
	id, _ := s.Leader()
	gauge(descLeaderKnown, b2f(id != ""))
	lc := 0.0
	if st != raft.Leader {
		if t := s.raft.LastContact(); !t.IsZero() {
			lc = time.Since(t).Seconds()
		}
	}
	gauge(descLastContactS, lc)
}
