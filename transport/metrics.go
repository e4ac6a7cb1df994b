package transport

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rpcKind is an RPC type as it appears in the "rpc" metric label.
type rpcKind int

const (
	rpcAppendEntries rpcKind = iota
	rpcHeartbeat
	rpcPipelineAppend
	rpcRequestVote
	rpcRequestPreVote
	rpcTimeoutNow
	rpcInstallSnapshot
	numRPCKinds
)

var rpcKindNames = [numRPCKinds]string{
	"append_entries", "heartbeat", "pipeline_append_entries", "request_vote",
	"request_pre_vote", "timeout_now", "install_snapshot",
}

// rpcMetrics counts calls per RPC type, both ways, and records outbound
// latency; the Transport exposes them as a prometheus.Collector. The label
// values are resolved once, so recording costs no map lookups.
type rpcMetrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inbound  *prometheus.CounterVec
	splits   prometheus.Counter

	ok, failed [numRPCKinds]prometheus.Counter
	latency    [numRPCKinds]prometheus.Observer
	served     [numRPCKinds]prometheus.Counter
}

func newRPCMetrics() *rpcMetrics {
	m := &rpcMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blobgc", Subsystem: "transport", Name: "rpcs_total",
			Help: "Outbound raft RPCs by type and result (ok or error).",
		}, []string{"rpc", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "blobgc", Subsystem: "transport", Name: "rpc_duration_seconds",
			Help:    "Latency of outbound raft RPCs by type.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
		}, []string{"rpc"}),
		inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blobgc", Subsystem: "transport", Name: "inbound_rpcs_total",
			Help: "Inbound raft RPCs by type (pipelined AppendEntries counted per request).",
		}, []string{"rpc"}),
		splits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blobgc", Subsystem: "transport", Name: "append_entries_split_total",
			Help: "AppendEntries batches over the message size limit that were sent as several requests.",
		}),
	}
	for k, name := range rpcKindNames {
		m.ok[k] = m.calls.WithLabelValues(name, "ok")
		m.failed[k] = m.calls.WithLabelValues(name, "error")
		m.latency[k] = m.duration.WithLabelValues(name)
		m.served[k] = m.inbound.WithLabelValues(name)
	}
	return m
}

func (m *rpcMetrics) observe(kind rpcKind, start time.Time, err error) {
	if err != nil {
		m.failed[kind].Inc()
	} else {
		m.ok[kind].Inc()
	}
	m.latency[kind].Observe(time.Since(start).Seconds())
}

func (m *rpcMetrics) served1(kind rpcKind) { m.served[kind].Inc() }

// Describe implements prometheus.Collector.
func (t *Transport) Describe(ch chan<- *prometheus.Desc) {
	t.metrics.calls.Describe(ch)
	t.metrics.duration.Describe(ch)
	t.metrics.inbound.Describe(ch)
	t.metrics.splits.Describe(ch)
}

// Collect implements prometheus.Collector.
func (t *Transport) Collect(ch chan<- prometheus.Metric) {
	t.metrics.calls.Collect(ch)
	t.metrics.duration.Collect(ch)
	t.metrics.inbound.Collect(ch)
	t.metrics.splits.Collect(ch)
}
