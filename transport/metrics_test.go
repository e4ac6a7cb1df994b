package transport

import (
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestMetrics_PerRPCType(t *testing.T) {
	n1 := newNode(t, Config{})
	n2 := newNode(t, Config{})
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		return &raft.RequestVoteResponse{Granted: true}, nil
	})
	for range 3 {
		if err := n2.trans.RequestVote("n1", n1.addr, &raft.RequestVoteRequest{Term: 1}, new(raft.RequestVoteResponse)); err != nil {
			t.Fatal(err)
		}
	}
	_ = n2.trans.RequestVote("x", blackHoleAddrClosed(t), &raft.RequestVoteRequest{}, new(raft.RequestVoteResponse))
	if got := counterValue(n2.trans.metrics.ok[rpcRequestVote]); got != 3 {
		t.Fatalf("ok votes = %v", got)
	}
	if got := counterValue(n2.trans.metrics.failed[rpcRequestVote]); got != 1 {
		t.Fatalf("failed votes = %v", got)
	}
	if got := counterValue(n1.trans.metrics.served[rpcRequestVote]); got != 3 {
		t.Fatalf("votes served = %v", got)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(n2.trans); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), "blobgc_transport_rpc_duration_seconds") {
		t.Fatalf("gathered %v", names)
	}
}

// blackHoleAddrClosed returns an address nobody listens on.
func blackHoleAddrClosed(t *testing.T) raft.ServerAddress {
	n := newNode(t, Config{})
	n.stop()
	return n.addr
}

// counterValue sums the counters c collects.
func counterValue(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 64)
	c.Collect(ch)
	close(ch)
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err == nil && d.Counter != nil {
			sum += d.Counter.GetValue()
		}
	}
	return sum
}
