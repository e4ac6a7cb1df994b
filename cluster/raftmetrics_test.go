package cluster_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

func scrapeMetrics(t *testing.T, s *cluster.Server) string {
	t.Helper()
	return scrape(t, s.HTTPURL())
}

// A server alone in its process exposes raft's and its log store's metrics
// under Prometheus conventions (checked by promlint, as promtool check
// metrics does): snake_case, unit suffixes, _total on counters, HELP text.
// Each store is started here, so the test does not depend on which other
// tests of the process ran first (go-metrics is one global).
func TestRaftMetricsFollowPrometheusConventions(t *testing.T) {
	for _, tc := range []struct {
		store string
		want  []string
	}{
		{cluster.LogStoreWAL, []string{
			"# HELP blobgc_raft_wal_log_appends_total Batches of log entries appended to the WAL (one fsync each).",
			"# TYPE blobgc_raft_wal_log_entries_written_total counter",
			"blobgc_raft_wal_log_entry_bytes_written_total",
		}},
		{cluster.LogStoreBoltDB, []string{
			"blobgc_raft_boltdb_store_logs_seconds_count",
			"# TYPE blobgc_raft_boltdb_log_batch_size_bytes histogram",
		}},
	} {
		t.Run(tc.store, func(t *testing.T) {
			c := clustertest.Start(t, clustertest.Options{N: 1, Configure: func(i int, cfg *cluster.Config) {
				cfg.MetricsAddr = "127.0.0.1:0"
				cfg.LogStore = tc.store
			}})
			s := c.Leader()
			cl := c.Client(s)
			try(cl.RegisterBlobs(ctxT(t, time.Minute), &pb.HashesRequest{Hashes: hashes(0, 5)})).must(t)
			body := scrapeMetrics(t, s)
			for _, want := range append([]string{
				"# HELP blobgc_raft_apply_total Log entries this server's raft accepted for appending as leader.",
				"# TYPE blobgc_raft_apply_total counter",
				"# TYPE blobgc_raft_commit_time_seconds histogram",
				"# TYPE blobgc_raft_state_leader_total counter",
			}, tc.want...) {
				if !strings.Contains(body, want) {
					t.Errorf("metrics lack %q", want)
				}
			}
			problems, err := promlint.New(strings.NewReader(body)).Lint()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				if strings.HasPrefix(p.Metric, "blobgc_") {
					t.Errorf("promlint: %s: %s", p.Metric, p.Text)
				}
			}
		})
	}
}

// Per-peer metrics name the peer in a label, never in the metric name.
func TestRaftMetricsPeerIDsAreLabels(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{N: 3, Configure: func(i int, cfg *cluster.Config) {
		cfg.MetricsAddr = "127.0.0.1:0"
	}})
	leader := c.Leader()
	try(c.Client(leader).RegisterBlobs(ctxT(t, time.Minute), &pb.HashesRequest{Hashes: hashes(0, 5)})).must(t)
	c.WaitConverged()
	// Two servers shut down: the leader is alone in the process again and
	// shows the process-wide metrics raft gathered while replicating.
	followers := c.Followers()
	for _, f := range followers {
		c.Stop(c.Index(f))
	}
	body := scrapeMetrics(t, leader)
	var peerLines int
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "blobgc_raft_replication_") {
			name := line[:strings.IndexAny(line, "{ ")]
			for _, f := range followers {
				if strings.Contains(name, f.ID()) {
					t.Errorf("peer id %s in a metric name: %s", f.ID(), line)
				}
			}
			if strings.Contains(line, `peer_id="`) {
				peerLines++
			}
		}
	}
	if peerLines == 0 {
		t.Errorf("no replication metric carries a peer_id label:\n%s", body)
	}
}
