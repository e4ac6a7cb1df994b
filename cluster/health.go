package cluster

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// Health says what the server can do, not only that the process runs.
//
//   - "" (the server) is NOT_SERVING while the server cannot persist: the
//     last append to its raft log failed (a full disk, an I/O error). Raft
//     retries appends, so the first one that succeeds makes it SERVING again.
//     The reason goes into the response header HealthReasonHeader, the log
//     and the metrics blobgc_persist_errors_total and blobgc_can_persist.
//   - LeaderHealthService is SERVING only on a leader whose lease holds: a
//     quorum accepted, in this term, requests it sent less than
//     LeaderLeaseTimeout ago. Check confirms it again when they are older,
//     so a leader that was paused (SIGSTOP, a VM pause) and has not yet
//     heard of the newer term never answers SERVING, even though answers
//     to its requests from before the pause reach it after it resumes.
//   - HTTP /healthz on the metrics listener: 200 while the process serves and
//     can persist; /readyz: 200 while it also knows a leader (whose lease
//     holds, on the leader) and has applied what it knows to be committed,
//     up to readyLag entries.

// HealthReasonHeader is the response header of a NOT_SERVING health check
// that says why.
const HealthReasonHeader = "blobgc-health-reason"

// readyLag is how far behind the commit index the applied index may be for
// /readyz: a follower applying a steady stream of writes is ready.
const readyLag = 1024

// persistHealth records whether the raft log can be written.
type persistHealth struct {
	log     func(msg string, args ...any)
	onError func()
	set     func(ok bool)

	mu    sync.Mutex
	err   error
	since time.Time
}

// observe records the outcome of one write to the raft log.
func (p *persistHealth) observe(err error) {
	if err != nil {
		p.onError()
	}
	p.mu.Lock()
	was := p.err
	p.err = err
	if err != nil && was == nil {
		p.since = time.Now()
	}
	p.mu.Unlock()
	switch {
	case err != nil && was == nil:
		p.log("CANNOT PERSIST: writing the raft log failed; health is NOT_SERVING until a write succeeds", "error", err)
		p.set(false)
	case err == nil && was != nil:
		p.log("persisting again: a raft log write succeeded; health is SERVING", "failed_since", p.since)
		p.set(true)
	}
}

// reason returns why the server cannot persist ("" when it can).
func (p *persistHealth) reason() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		return ""
	}
	return fmt.Sprintf("cannot persist since %s: %v", p.since.UTC().Format(time.RFC3339), p.err)
}

// observedLogStore passes every log write to persistHealth.
type observedLogStore struct {
	raft.LogStore
	p *persistHealth
}

// IsMonotonic passes on whether the wrapped store needs raft to keep log
// indexes gap-free (a write-ahead log does), which the wrapper would hide.
func (o *observedLogStore) IsMonotonic() bool {
	m, ok := o.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (o *observedLogStore) StoreLog(l *raft.Log) error {
	err := o.LogStore.StoreLog(l)
	o.p.observe(err)
	return err
}

func (o *observedLogStore) StoreLogs(ls []*raft.Log) error {
	err := o.LogStore.StoreLogs(ls)
	o.p.observe(err)
	return err
}

// newPersistHealth wires persistHealth to the server's log, health service
// and metrics.
func (s *Server) newPersistHealth() *persistHealth {
	errs := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "blobgc_persist_errors_total",
		Help: "Writes to the raft log that failed (full disk, I/O errors).",
	})
	p := &persistHealth{
		log:     func(msg string, args ...any) { s.log.Error(msg, args...) },
		onError: errs.Inc,
		set: func(ok bool) {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ok {
				st = healthpb.HealthCheckResponse_SERVING
			}
			s.health.SetServingStatus("", st)
		},
	}
	canPersist := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "blobgc_can_persist",
		Help: "1 while the last write to the raft log succeeded, 0 after one failed.",
	}, func() float64 {
		if p.reason() != "" {
			return 0
		}
		return 1
	})
	s.metrics.register(errs)
	s.metrics.register(canPersist)
	return p
}

// healthServer answers grpc.health.v1 from the stored statuses, except that
// the leader service is decided at the time of the call.
type healthServer struct {
	*health.Server
	s *Server
}

func (h *healthServer) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	notServing := func(reason string) (*healthpb.HealthCheckResponse, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs(HealthReasonHeader, reason))
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}, nil
	}
	resp, err := h.Server.Check(ctx, req)
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		if r := h.s.persist.reason(); r != "" && req.Service == "" {
			return notServing(r)
		}
		return resp, err
	}
	if req.Service == LeaderHealthService && !h.s.leaseHolds(ctx) {
		return notServing("leadership not confirmed by a quorum within the lease")
	}
	return resp, nil
}

// leaseHolds reports whether this server leads in a ready session and a
// quorum accepted requests it sent less than LeaderLeaseTimeout ago,
// confirming it again (in a round shared with linearizable reads) if not.
// Followers wait at least HeartbeatTimeout after accepting a request before
// they vote for another server, and LeaderLeaseTimeout is at most that.
func (s *Server) leaseHolds(ctx context.Context) bool {
	s.mu.Lock()
	ss := s.sess
	s.mu.Unlock()
	if ss == nil || s.raft.State() != raft.Leader {
		return false
	}
	select {
	case <-ss.ready:
	default:
		return false
	}
	if s.quorumAckedSince(ss.term, time.Now().Add(-s.cfg.LeaderLeaseTimeout)) {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.HeartbeatTimeout)
	defer cancel()
	return s.leaderCheck.confirm(ctx) == nil && s.raft.CurrentTerm() == ss.term
}

// httpHandler serves /metrics, /healthz and /readyz.
func (s *Server) handleHealth(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if reason := s.healthz(); reason != "" {
			http.Error(w, reason, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		reason := s.healthz()
		if reason == "" {
			reason = s.readyz(r.Context())
		}
		if reason != "" {
			http.Error(w, reason, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// healthz returns why the server is unhealthy, or "".
func (s *Server) healthz() string {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return "shutting down"
	}
	return s.persist.reason()
}

// readyz returns why the server is not ready to serve reads and writes, or "".
func (s *Server) readyz(ctx context.Context) string {
	id, _ := s.Leader()
	switch {
	case id == "":
		return "no leader known"
	case id == s.cfg.ID && !s.leaseHolds(ctx):
		return "leader without a confirmed lease"
	}
	if commit, applied := s.raft.CommitIndex(), s.repl.Index(); commit > applied+readyLag {
		return fmt.Sprintf("applied index %d is behind the commit index %d", applied, commit)
	}
	return ""
}
