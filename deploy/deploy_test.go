package deploy_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/cluster"
	"github.com/blobgc/blobgc/cluster/clustertest"
)

// persistMetrics are exposed by a server's raft-log write check only once a
// write has failed or been checked; the scrape of a fresh server below may
// not show them.
var persistMetrics = []string{"blobgc_persist_errors_total", "blobgc_can_persist"}

// metricNames returns the metric names expr selects.
func metricNames(t *testing.T, where, expr string) []string {
	t.Helper()
	e, err := parser.ParseExpr(expr)
	if err != nil {
		t.Fatalf("%s: %v\n%s", where, err, expr)
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// exposed returns the names of the series blobgc servers expose
// (histograms by their _bucket, _sum and _count): those of a 3-server
// cluster that served a forwarded report and a cycle, and those of a
// server alone in its process, which adds raft's process-wide metrics.
func exposed(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	three := clustertest.Start(t, clustertest.Options{N: 3, Configure: withMetrics})
	follower := three.Followers()[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	api := three.Client(follower)
	hash := make([]byte, 32)
	if _, err := api.RegisterBlobs(ctx, &pb.HashesRequest{Hashes: [][]byte{hash}}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Report(ctx, &pb.ReportRequest{NodeId: "vm-1", Kind: pb.ReportKind_REPORT_KIND_FULL, Seq: 1, Active: [][]byte{hash}}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.RunCycle(ctx, &pb.RunCycleRequest{}); err != nil {
		t.Fatal(err)
	}
	scrape(t, follower, names)
	scrape(t, three.Leader(), names)
	three.Close()
	one := clustertest.Start(t, clustertest.Options{N: 1, Configure: withMetrics})
	scrape(t, one.Leader(), names)
	return names
}

func withMetrics(_ int, cfg *cluster.Config) { cfg.MetricsAddr = "127.0.0.1:0" }

// scrape adds the metric names s exposes to names.
func scrape(t *testing.T, s *cluster.Server, names map[string]bool) {
	t.Helper()
	resp, err := http.Get("http://" + s.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "# TYPE ") {
			f := strings.Fields(line)
			names[f[2]] = true
			if f[3] == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[f[2]+s] = true
				}
			}
		}
	}
}

func checkExposed(t *testing.T, have map[string]bool, where string, names []string) {
	t.Helper()
	for _, n := range names {
		if !have[n] && !slices.Contains(persistMetrics, n) {
			t.Errorf("%s uses %s, which a blobgc server does not expose", where, n)
		}
	}
}

// The alerting rules parse as Prometheus would load them (rulefmt checks
// the file's structure, the PromQL of every expression and the templates
// of labels and annotations), and name only metrics a server exposes.
func TestAlertRules(t *testing.T) {
	groups, errs := rulefmt.ParseFile("prometheus/blobgc-alerts.yml", false)
	for _, err := range errs {
		t.Errorf("blobgc-alerts.yml: %v", err)
	}
	if len(errs) > 0 {
		return
	}
	have := exposed(t)
	var alerts []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			checkExposed(t, have, "alert "+r.Alert, metricNames(t, r.Alert, r.Expr))
		}
	}
	for _, want := range []string{"BlobgcNoLeader", "BlobgcLeaderFlapping", "BlobgcServerNotApplying", "BlobgcDiskErrors", "BlobgcCycleSkipped", "BlobgcEligibleSpike"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s", want)
		}
	}
}

// The dashboard is valid JSON whose every query is valid PromQL (once
// Grafana's variables are filled in) over metrics a server exposes.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/blobgc-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if len(dash.Panels) == 0 {
		t.Fatal("dashboard has no panels")
	}
	have := exposed(t)
	vars := strings.NewReplacer("$__rate_interval", "5m", "$job", ".*")
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			where := "panel " + p.Title
			checkExposed(t, have, where, metricNames(t, where, vars.Replace(tg.Expr)))
		}
	}
}
