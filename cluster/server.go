package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/transport"
)

// LeaderHealthService is the grpc.health.v1 service name that is SERVING only
// on the leader, so load balancers and clients can find it.
const LeaderHealthService = "blobgc.v1.Leader"

// gracefulStopWait bounds how long Shutdown lets in-flight API calls finish.
const gracefulStopWait = 2 * time.Second

// Server is one blobgc coordinator server: raft, the state machine, the gRPC
// API and metrics.
type Server struct {
	proposeMu sync.Mutex // orders stamping with enqueueing (propose)
	cfg       Config
	log       hclog.Logger
	fsm       *fsm.FSM
	repl      *replicated
	raft      *raft.Raft
	trans     *transport.Transport
	stores    *stores
	snaps     *privateSnapshots
	lis       net.Listener
	grpc      *grpc.Server
	health    *health.Server
	persist   *persistHealth
	addr      string         // advertised
	tls       *reloadableTLS // nil: plaintext
	peerIDs   memberCache    // cached raft membership for the peer check

	conns       *connCache
	reports     inflight
	leaderCheck leaderCheck // shared VerifyLeader rounds for linearizable reads
	metrics     *metrics
	heavy       *heavyReads
	authn       *authn
	audit       hclog.Logger

	metricsLis  net.Listener
	metricsHTTP *http.Server

	notifyCh   chan bool
	shutdownCh chan struct{}
	wg         sync.WaitGroup

	mu          sync.Mutex
	sess        *session
	sessChanged chan struct{} // closed and replaced when sess changes
	started     bool
	stopped     bool
}

// session is one leadership term of this server. The cluster clock runs only
// inside a ready session.
type session struct {
	term   uint64
	ready  chan struct{} // closed once the term barrier applied and the clock is set
	done   chan struct{} // closed when leadership is lost
	cancel context.CancelFunc

	// Set before ready is closed, read-only afterwards.
	t0   int64      // cluster time applied before this term
	m0   time.Time  // real time.Now() at t0: only its monotonic reading is used
	wall *WallClock // the server's wall-clock source (nil: the real clock)
}

// now returns the cluster time and wall time to stamp on a command. The
// cluster time is a difference of real monotonic readings, so a skewed or
// jumping wall clock changes only the wall time.
//
// Both come from one clock reading: two readings could be a scheduling
// delay apart on a busy machine, and the stamps of successive commands
// would then disagree about how much time passed between them.
func (ss *session) now() (cluster, wall int64) {
	t := time.Now()
	return ss.t0 + int64(t.Sub(ss.m0)), t.Round(0).Add(ss.wall.Skew()).UnixNano()
}

// New opens the stores, creates raft and listens. It does not block; Start
// bootstraps or joins and serves.
func New(cfg Config) (_ *Server, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Server{
		cfg:         cfg,
		log:         cfg.Logger.With("server", cfg.ID),
		fsm:         fsm.New(),
		notifyCh:    make(chan bool, 16),
		shutdownCh:  make(chan struct{}),
		sessChanged: make(chan struct{}),
	}
	cfg.WallClock.SetLogger(s.log.Named("clock"))
	s.repl = newReplicated(s.fsm)
	s.leaderCheck.verify = s.confirmSince
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()

	if s.tls, err = loadTLS(cfg.TLS); err != nil {
		return nil, err
	}
	var serverTLS, clientTLS *tls.Config
	if s.tls != nil {
		serverTLS, clientTLS = s.tls.serverConfig(), s.tls.clientConfig()
	}
	s.conns = newConnCache(clientTLS)
	closers = append(closers, s.conns.closeAll)

	if err := makePrivateDir(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("cluster: data dir: %w", err)
	}
	s.lis = cfg.Listener
	if s.lis == nil {
		if s.lis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
			return nil, fmt.Errorf("cluster: listen: %w", err)
		}
	}
	closers = append(closers, func() { s.lis.Close() })
	s.metrics = newMetrics(s)
	closers = append(closers, s.metrics.close)
	s.lis = limitConns(s.lis, cfg.Limits.MaxConnections, s.metrics.refused.WithLabelValues("connections").Inc)
	s.heavy = &heavyReads{slots: make(chan struct{}, cfg.Limits.MaxHeavyReads), refused: s.metrics.refused.WithLabelValues("heavy_reads").Inc}
	s.addr = cfg.AdvertiseAddr
	if s.addr == "" {
		s.addr = advertisable(s.lis.Addr())
	}
	if len(cfg.Peers) > 0 {
		for _, p := range cfg.Peers {
			if p.ID == cfg.ID && p.Address != s.addr {
				return nil, fmt.Errorf("cluster: peer %s has address %s but this server advertises %s", p.ID, p.Address, s.addr)
			}
		}
	}

	if err := s.checkDataDir(); err != nil {
		return nil, err
	}
	s.stores, err = openStores(cfg.DataDir, cfg.LogStore, cfg.WALSegmentSize, s.log)
	if err != nil {
		// Some damage shows only once the stores are open (a WAL whose
		// segments are gone opens empty).
		if err = s.discardIfDamaged(err); err != nil {
			return nil, err
		}
		if s.stores, err = openStores(cfg.DataDir, cfg.LogStore, cfg.WALSegmentSize, s.log); err != nil {
			return nil, err
		}
	}
	closers = append(closers, func() { s.stores.closer() })
	s.snaps, err = newPrivateSnapshots(cfg.DataDir, 2, s.log.Named("snapshots")) // in DataDir/snapshots
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	s.trans, err = transport.New(transport.Config{
		LocalAddr:    raft.ServerAddress(s.addr),
		LocalID:      raft.ServerID(cfg.ID),
		TLS:          clientTLS,
		VerifyServer: s.verifyServer,
		// The API and raft share one message limit: raft batches are split
		// to fit, so it only needs to admit one command.
		MaxMessageSize: cfg.Limits.MaxMessageSize,
		Logger:         s.log.Named("transport"),
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: transport: %w", err)
	}
	closers = append(closers, func() { s.trans.Close() })
	var trans raft.Transport = s.trans
	if cfg.Faults != nil {
		trans = cfg.Faults.Wrap(s.trans)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	// A buffered apply channel is what lets the leader loop group commit:
	// proposals queue there while it writes the previous group, and it
	// takes up to MaxAppendEntries of them into the next log write. Raft
	// never answers futures still queued when it shuts down; propose stops
	// waiting for them when the session ends (waitApplied).
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	// A leader that commits its own removal steps down and stays up outside
	// the configuration until the server is stopped (as a removed follower
	// does). With raft's default it shut itself down without waiting for
	// its goroutines, and Shutdown, finding raft already stopped, closed
	// the stores under them.
	rc.ShutdownOnRemove = false
	rc.NotifyCh = s.notifyCh
	rc.Logger = s.log.Named("raft")
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("cluster: raft config: %w", err)
	}

	s.metrics.register(s.trans)
	if s.authn, err = newAuthn(cfg, s.log, s.metrics.reg); err != nil {
		return nil, err
	}
	s.audit = s.log.Named("audit")
	opts := append(transport.ServerOptions(cfg.Limits.MaxMessageSize, serverTLS), cfg.Limits.serverOptions()...)
	budgets := &refusals{rate: cfg.Limits.RefusalRate, burst: float64(cfg.Limits.RefusalBurst),
		throttled: s.metrics.refused.WithLabelValues("refusal_budget").Inc}
	opts = append(opts, budgets.serverOptions()...)
	// Stop waits for running handlers, so that none is left calling into
	// raft (the transport's heartbeat fast path writes the term) after the
	// stores are closed.
	opts = append(opts, grpc.WaitForHandlers(true))
	s.grpc = grpc.NewServer(append(append(opts, s.peerOptions()...),
		grpc.ChainUnaryInterceptor(s.authUnary, s.leaderHeaderInterceptor),
		grpc.ChainStreamInterceptor(s.authStream))...)
	s.trans.Register(s.grpc)
	blobgcv1.RegisterBlobGCServer(s.grpc, &api{s: s})
	s.health = health.NewServer()
	s.health.SetServingStatus(LeaderHealthService, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, &healthServer{Server: s.health, s: s})
	s.persist = s.newPersistHealth()
	logs, err := raft.NewLogCache(512, &observedLogStore{LogStore: s.stores.log, p: s.persist})
	if err != nil {
		return nil, err
	}
	reflection.Register(s.grpc)

	if len(cfg.RecoverPeers) > 0 {
		if err := s.recoverCluster(rc, logs, s.stores.bolt); err != nil {
			return nil, err
		}
	}
	s.raft, err = raft.NewRaft(rc, s.repl, logs, s.stores.bolt, s.snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft: %w", err)
	}
	closers = append(closers, func() { s.raft.Shutdown().Error() })

	if cfg.MetricsAddr != "" {
		if s.metricsLis, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("cluster: metrics listen: %w", err)
		}
		handler, err := s.httpHandler()
		if err != nil {
			return nil, err
		}
		s.metricsHTTP = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		if serverTLS != nil {
			// With TLS the metrics are served over HTTPS with the server's
			// certificate; scrapers need no client certificate.
			s.metricsHTTP.TLSConfig = serverTLS.Clone()
		}
	}

	s.wg.Add(1)
	go s.watchLeadership()
	return s, nil
}

// advertisable turns a listener address into one peers can dial: an
// unspecified host (":0", "[::]:7001") becomes 127.0.0.1.
func advertisable(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
}

// Start serves the API and raft, then bootstraps (only when there is no raft
// state yet and Peers are given) or joins through Cfg.Join. It returns once the
// server is serving and, when joining, once the join has been accepted. After
// an error the server must still be stopped with Shutdown or Close.
func (s *Server) Start() error {
	s.mu.Lock()
	if s.started || s.stopped {
		s.mu.Unlock()
		return errors.New("cluster: Start called twice or after Shutdown")
	}
	s.started = true
	s.mu.Unlock()

	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.grpc.Serve(s.lis); err != nil {
			s.log.Error("grpc serve", "error", err)
		}
	}()
	if s.metricsHTTP != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			serve := s.metricsHTTP.Serve
			if s.metricsHTTP.TLSConfig != nil {
				serve = func(l net.Listener) error { return s.metricsHTTP.ServeTLS(l, "", "") }
			}
			if err := serve(s.metricsLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("metrics serve", "error", err)
			}
		}()
	}

	if s.cfg.BackupDir != "" {
		s.wg.Add(1)
		go s.runBackups()
	}

	existing, err := raft.HasExistingState(s.stores.log, s.stores.bolt, s.snaps)
	if err != nil {
		return fmt.Errorf("cluster: check raft state: %w", err)
	}
	switch {
	case existing:
		s.log.Info("restarting from existing raft state")
	case len(s.cfg.Peers) > 0:
		var conf raft.Configuration
		for _, p := range s.cfg.Peers {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address)})
		}
		// Every server bootstraps the identical configuration; a second
		// bootstrap of the same data is refused and harmless.
		if err := s.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("cluster: bootstrap: %w", err)
		}
		s.log.Info("bootstrapped", "peers", len(s.cfg.Peers))
	case len(s.cfg.Join) > 0:
		if err := s.join(); err != nil {
			return err
		}
	default:
		return errors.New("cluster: no raft state: give Peers to bootstrap or Join to join a cluster")
	}
	return nil
}

// join asks the given members (any of them; followers forward to the leader)
// to add this server as a voter, retrying until one accepts.
func (s *Server) join() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.JoinTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.shutdownCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := 50 * time.Millisecond
	var last error
	for {
		for _, addr := range s.cfg.Join {
			if addr == s.addr {
				continue
			}
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			conn, err := s.conns.get(addr)
			if err == nil {
				_, err = blobgcv1.NewBlobGCClient(conn).AddServer(cctx, &blobgcv1.AddServerRequest{Id: s.cfg.ID, Address: s.addr})
			}
			ccancel()
			if err == nil {
				s.log.Info("joined cluster", "through", addr)
				return nil
			}
			last = err
			s.log.Debug("join attempt failed", "through", addr, "error", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: join through %s: %w (last error: %v)", strings.Join(s.cfg.Join, ","), ctx.Err(), last)
		case <-time.After(backoff):
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
}

// Addr returns the advertised address of the gRPC listener.
func (s *Server) Addr() string { return s.addr }

// MetricsAddr returns the address of the /metrics listener ("" when off).
func (s *Server) MetricsAddr() string {
	if s.metricsLis == nil {
		return ""
	}
	return s.metricsLis.Addr().String()
}

// HTTPURL returns the base URL of the HTTP listener (metrics, health, the
// JSON API and /ui): https when the server has TLS; "" when it is off.
func (s *Server) HTTPURL() string {
	addr := s.MetricsAddr()
	switch {
	case addr == "":
		return ""
	case s.tls != nil:
		return "https://" + addr
	}
	return "http://" + addr
}

// ID returns the raft server id.
func (s *Server) ID() string { return s.cfg.ID }

// IsLeader reports whether this server is the raft leader.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// Raft returns the raft instance (tests, tools).
func (s *Server) Raft() *raft.Raft { return s.raft }

// FSM returns the state machine (tests, tools).
func (s *Server) FSM() *fsm.FSM { return s.fsm }

// Leader returns the leader known to this server, if any.
func (s *Server) Leader() (id, addr string) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// WaitForLeader blocks until this server knows a leader, and returns it.
func (s *Server) WaitForLeader(ctx context.Context) (id, addr string, err error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if id, addr = s.Leader(); id != "" {
			return id, addr, nil
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-s.shutdownCh:
			return "", "", raft.ErrRaftShutdown
		case <-t.C:
		}
	}
}

// Shutdown transfers leadership if this server leads, stops the scheduler and
// raft, closes the stores and stops gRPC (gracefully until ctx ends).
func (s *Server) Shutdown(ctx context.Context) error { return s.shutdown(ctx, true) }

// Close stops the server at once, without handing leadership over: to the
// rest of the cluster it looks like a crash (the data on disk is kept).
func (s *Server) Close() error { return s.shutdown(context.Background(), false) }

func (s *Server) shutdown(ctx context.Context, transfer bool) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()

	var errs []error
	if transfer && s.IsLeader() && s.hasOtherVoters() {
		f := s.raft.LeadershipTransfer()
		done := make(chan error, 1)
		go func() { done <- f.Error() }()
		select {
		case err := <-done:
			if err != nil {
				s.log.Warn("leadership transfer before shutdown failed", "error", err)
			}
		case <-ctx.Done():
		}
	}
	close(s.shutdownCh)
	s.endSession()
	if err := s.raft.Shutdown().Error(); err != nil {
		errs = append(errs, err)
	}
	s.health.Shutdown()
	s.metrics.close()
	if err := s.trans.Close(); err != nil {
		errs = append(errs, err)
	}
	if transfer {
		// Peers keep raft streams open to this server, so a graceful stop
		// is bounded: in-flight API calls get a moment to finish.
		grace := time.NewTimer(gracefulStopWait)
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
		case <-grace.C:
		}
		grace.Stop()
		s.grpc.Stop()
		<-stopped
	} else {
		s.grpc.Stop()
	}
	if s.metricsHTTP != nil {
		if err := s.metricsHTTP.Shutdown(ctx); err != nil {
			s.metricsHTTP.Close()
		}
	}
	if !s.started {
		s.lis.Close()
	}
	s.conns.closeAll()
	s.wg.Wait()
	if err := s.stores.closer(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Server) hasOtherVoters() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter && string(srv.ID) != s.cfg.ID {
			return true
		}
	}
	return false
}

// watchLeadership drains raft's NotifyCh (raft blocks while it is full) and
// starts or ends the leader session. It also refreshes the cached
// membership of the peer check.
func (s *Server) watchLeadership() {
	defer s.wg.Done()
	refresh := time.NewTicker(memberRefresh)
	defer refresh.Stop()
	for {
		select {
		case <-refresh.C:
			s.peerIDs.refresh(s.raft)
		case leader := <-s.notifyCh:
			s.endSession()
			if leader {
				s.startSession()
			}
		case <-s.shutdownCh:
			return
		}
	}
}

func (s *Server) startSession() {
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{ready: make(chan struct{}), done: make(chan struct{}), cancel: cancel, wall: s.cfg.WallClock}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		cancel()
		return
	}
	s.sess = ss
	close(s.sessChanged)
	s.sessChanged = make(chan struct{})
	s.mu.Unlock()
	s.log.Info("became leader")
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runSession(ctx, ss)
	}()
}

func (s *Server) endSession() {
	s.mu.Lock()
	ss := s.sess
	s.sess = nil
	if ss != nil {
		close(s.sessChanged)
		s.sessChanged = make(chan struct{})
	}
	s.mu.Unlock()
	if ss != nil {
		ss.cancel()
		close(ss.done)
		s.health.SetServingStatus(LeaderHealthService, healthpb.HealthCheckResponse_NOT_SERVING)
		s.log.Info("leadership lost")
	}
}

// runSession is the leader's work for one term: the term barrier, the cluster
// clock, the initial GC config, and the cycle scheduler.
func (s *Server) runSession(ctx context.Context, ss *session) {
	// The barrier is an empty command entry rather than raft.Barrier: it has
	// an index, and once the FSM has processed it every entry of earlier terms
	// has been applied, so the cluster time read next is the last one stamped.
	for {
		term := s.raft.CurrentTerm()
		err := waitFuture(ctx, s.raft.Apply(nil, s.cfg.ApplyTimeout))
		if err == nil && s.raft.CurrentTerm() == term {
			ss.term = term
			break
		}
		if ctx.Err() != nil || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
			return
		}
		s.log.Warn("term barrier failed, retrying", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	ss.t0 = s.fsm.ClusterTime()
	ss.m0 = time.Now()
	close(ss.ready)
	s.health.SetServingStatus(LeaderHealthService, healthpb.HealthCheckResponse_SERVING)
	s.log.Info("leader ready", "term", ss.term, "cluster_time", time.Duration(ss.t0))

	if s.cfg.GC != nil && s.fsm.Config() == fsm.DefaultConfig() && *s.cfg.GC != fsm.DefaultConfig() {
		if _, err := s.propose(ctx, ss, s.cfg.GC.SetConfigCommand()); err != nil {
			s.log.Error("proposing the configured GC settings", "error", err)
		} else {
			s.log.Info("applied the configured GC settings")
		}
	}

	if s.cfg.CycleInterval < 0 {
		return
	}
	t := time.NewTicker(s.cfg.CycleInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.runCycle(scheduled(ctx), ss, ""); err != nil && ctx.Err() == nil {
				s.log.Warn("scheduled cycle failed", "error", err)
			}
		}
	}
}

// readySession returns this server's leader session once its barrier has
// applied, or errNotLeader. It waits at most until ctx ends.
func (s *Server) readySession(ctx context.Context) (*session, error) {
	for {
		s.mu.Lock()
		ss, changed := s.sess, s.sessChanged
		s.mu.Unlock()
		if ss != nil {
			select {
			case <-ss.ready:
				return ss, nil
			case <-ss.done:
				continue
			case <-ctx.Done():
				return nil, ctxError(ctx, "waiting for the new leader's barrier")
			}
		}
		if s.raft.State() != raft.Leader {
			return nil, errNotLeader
		}
		// raft leads but its notification has not been handled yet.
		select {
		case <-changed:
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctxError(ctx, "waiting for leadership")
		}
	}
}
