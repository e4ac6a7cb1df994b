package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
)

// LeaderHeader is the response header in which every server names the
// leader's address.
const LeaderHeader = "blobgc-leader"

// MaxBatch is the most hashes the servers accept in one request.
const MaxBatch = 30000

// FullChunk is the most hashes (active and pinned together) a Reporter puts
// in one report request; a larger full report is sent in chunks.
const FullChunk = 20000

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("client: closed")

// Client talks to a blobgc cluster. It is safe for concurrent use.
type Client struct {
	cfg config
	log hclog.Logger

	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	servers []string // configured addresses, then learned ones
	leader  string
	next    int
	probe   int // the next server watchLeader asks
	closed  bool
	// down holds suspect servers, until when they are skipped: those that
	// refused the connection or let an attempt time out without a word.
	// Followers keep naming a crashed or frozen leader until they notice,
	// and following that hint would only hit the same server again.
	down map[string]time.Time
}

// downFor is how long a suspect server is skipped (unless nothing else is
// left).
const downFor = time.Second

// New returns a client of the cluster whose servers (host:port) are listed.
// Any subset of the servers will do: the client learns the leader from them.
// Connections are made lazily, so New does not fail when servers are down.
func New(servers []string, opts ...Option) (*Client, error) {
	cfg := config{
		callTimeout:  DefaultCallTimeout,
		retryTimeout: DefaultRetryTimeout,
		backoffBase:  DefaultBackoffBase,
		backoffMax:   DefaultBackoffMax,
		leaderCheck:  DefaultLeaderCheck,
		batch:        MaxBatch,
		chunk:        FullChunk,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.tlsErr != nil {
		return nil, cfg.tlsErr
	}
	if err := cfg.checkCredentials(); err != nil {
		return nil, err
	}
	if cfg.logger == nil {
		cfg.logger = hclog.NewNullLogger()
	}
	if cfg.batch <= 0 || cfg.batch > MaxBatch {
		cfg.batch = MaxBatch
	}
	if cfg.chunk <= 0 || cfg.chunk > FullChunk {
		cfg.chunk = FullChunk
	}
	if cfg.callTimeout <= 0 {
		cfg.callTimeout = DefaultCallTimeout
	}
	if cfg.retryTimeout <= 0 {
		cfg.retryTimeout = DefaultRetryTimeout
	}
	if cfg.backoffBase <= 0 {
		cfg.backoffBase = DefaultBackoffBase
	}
	if cfg.leaderCheck == 0 {
		cfg.leaderCheck = DefaultLeaderCheck
	}
	if cfg.backoffMax < cfg.backoffBase {
		cfg.backoffMax = cfg.backoffBase
	}
	c := &Client{cfg: cfg, log: cfg.logger, conns: map[string]*grpc.ClientConn{}, down: map[string]time.Time{}}
	for _, s := range servers {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("client: server address %q: %v", s, err)
		}
		if !contains(c.servers, s) {
			c.servers = append(c.servers, s)
		}
	}
	if len(c.servers) == 0 {
		return nil, errors.New("client: no server addresses")
	}
	// Clients start at different servers, so that after a failure they do
	// not all retry the same one.
	c.next = rand.IntN(len(c.servers))
	return c, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Close closes every connection. Calls in flight fail.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for a, cc := range c.conns {
		errs = append(errs, cc.Close())
		delete(c.conns, a)
	}
	return errors.Join(errs...)
}

// Leader returns the leader address the client currently believes in, or ""
// when it does not know one.
func (c *Client) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// Servers returns the addresses the client knows: the configured ones, then
// those it learned as leaders.
func (c *Client) Servers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.servers...)
}

// conn returns the connection to addr, dialing it on first use.
func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if cc := c.conns[addr]; cc != nil {
		return cc, nil
	}
	creds := insecure.NewCredentials()
	if c.cfg.tls != nil {
		creds = credentials.NewTLS(c.cfg.tls)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// A restarted server must be found again within about a second, not
		// after grpc's default backoff of up to two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
	}
	if c.cfg.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: c.cfg.token, requireTLS: !c.cfg.tokenPlaintext}))
	}
	opts = append(opts, c.cfg.dialOpts...)
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// pick chooses the server for the next attempt: the leader if known (and
// not spread), else the next one round-robin that has not just failed.
func (c *Client) pick(spread bool) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != "" && !spread {
		return c.leader
	}
	now := time.Now()
	for range c.servers {
		a := c.servers[c.next%len(c.servers)]
		c.next++
		if !now.Before(c.down[a]) {
			return a
		}
	}
	// Every server failed lately: try them anyway.
	a := c.servers[c.next%len(c.servers)]
	c.next++
	return a
}

// markDown records that addr did not answer; markUp that it did.
func (c *Client) markDown(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down[addr] = time.Now().Add(downFor)
	if c.leader == addr {
		c.leader = ""
	}
}

func (c *Client) markUp(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.down, addr)
}

// setLeader records addr as the leader, unless it just failed to answer.
func (c *Client) setLeader(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Now().Before(c.down[addr]) {
		return
	}
	if !contains(c.servers, addr) {
		c.servers = append(c.servers, addr)
	}
	if c.leader != addr {
		c.log.Debug("leader changed", "from", c.leader, "to", addr)
		c.leader = addr
	}
}

// forgetLeader forgets addr as the leader, if it still is the one recorded.
func (c *Client) forgetLeader(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader == addr {
		c.leader = ""
	}
}

// opKind says which errors an operation may be retried on.
type opKind int

const (
	// idempotent operations (all reads, most writes) are retried on
	// Unavailable and on an attempt's DeadlineExceeded.
	idempotent opKind = iota
	// once operations (TransferLeadership) are retried only on
	// Unavailable.
	once
	// staleRead is an idempotent read that any server may answer: it is
	// spread round-robin over the servers instead of sent to the leader.
	staleRead
)

// retryable reports whether err, from one attempt, may be retried for an
// operation of kind k. See the package documentation for the rule.
func retryable(k opKind, err error) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return true
	case codes.DeadlineExceeded:
		return k != once
	}
	return false
}

// LeaderHint returns the leader hint in err's status details, if any.
func LeaderHint(err error) (*blobgcv1.LeaderHint, bool) {
	s, ok := status.FromError(err)
	if !ok {
		return nil, false
	}
	for _, d := range s.Details() {
		if h, ok := d.(*blobgcv1.LeaderHint); ok {
			return h, true
		}
	}
	return nil, false
}

// FullReportRequired returns the FullReportRequired detail of err, if any: the
// cluster refused a delta report and wants a full one.
func FullReportRequired(err error) (*blobgcv1.FullReportRequired, bool) {
	s, ok := status.FromError(err)
	if !ok {
		return nil, false
	}
	for _, d := range s.Details() {
		if h, ok := d.(*blobgcv1.FullReportRequired); ok {
			return h, true
		}
	}
	return nil, false
}

// attemptFunc runs one attempt against api; it must pass opts to the RPC.
type attemptFunc func(ctx context.Context, api blobgcv1.BlobGCClient, opts ...grpc.CallOption) error

// call runs fn against the leader (or round-robin), retrying as the
// operation kind allows.
func (c *Client) call(ctx context.Context, method string, k opKind, fn attemptFunc) error {
	return c.callAt(ctx, method, k, "", fn)
}

// callAt is call, pinned to one server when addr is not empty.
func (c *Client) callAt(ctx context.Context, method string, k opKind, addr string, fn attemptFunc) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.retryTimeout)
		defer cancel()
	}
	start := time.Now()
	// silent holds the servers that did not answer this call, and why; it is
	// nil once any server answered.
	silent := map[string]error{}
	var lastErr error
	for attempt := 0; ; attempt++ {
		target := addr
		if target == "" {
			target = c.pick(k == staleRead)
		}
		answered, err := c.attempt(ctx, target, addr == "", k != once, fn)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrClosed) {
			return err
		}
		if answered {
			silent = nil
		} else if silent != nil && (silent[target] == nil || !expired(ctx)) {
			if len(silent) == 0 && addr == "" {
				// Dial the other servers now, in parallel, so that the next
				// attempts find out at once whether they answer, instead of
				// each waiting out a connection timeout in turn.
				c.connectAll()
			}
			silent[target] = err
		}
		unreachable := silent != nil && c.noneAnswered(addr, silent)
		if unreachable && c.cfg.dialTimeout > 0 && time.Since(start) >= c.cfg.dialTimeout {
			return &UnreachableError{Errors: silent}
		}
		if expired(ctx) {
			// The caller's time is up: report what the servers said, if
			// anything, rather than the bare context error.
			if unreachable {
				return &UnreachableError{Errors: silent}
			}
			if lastErr == nil || status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Canceled {
				lastErr = err
			}
			return lastErr
		}
		if !retryable(k, err) {
			return c.explainAuth(err)
		}
		lastErr = err
		c.log.Debug("retrying", "method", method, "server", target, "attempt", attempt+1, "error", err)
		// A hint that names another server is followed at once; anything
		// else waits, since the cluster is probably electing.
		if h, ok := LeaderHint(err); ok && addr == "" && c.Leader() == h.GetLeaderAddress() && h.GetLeaderAddress() != target && h.GetLeaderAddress() != "" {
			continue
		}
		if err := sleep(ctx, c.backoff(attempt)); err != nil {
			if unreachable {
				return &UnreachableError{Errors: silent}
			}
			return lastErr
		}
	}
}

// connectAll starts connecting to every known server.
func (c *Client) connectAll() {
	for _, a := range c.Servers() {
		if cc, err := c.conn(a); err == nil {
			cc.Connect()
		}
	}
}

// noneAnswered reports whether every server a call may go to (addr, or all
// known servers) is in silent.
func (c *Client) noneAnswered(addr string, silent map[string]error) bool {
	if addr != "" {
		return silent[addr] != nil
	}
	for _, a := range c.Servers() {
		if silent[a] == nil {
			return false
		}
	}
	return true
}

// UnreachableError is returned by a call that no server answered: every
// address was tried and each refused, could not be reached or stayed silent.
// Its gRPC code is Unavailable.
type UnreachableError struct {
	// Errors holds each address tried and its last error.
	Errors map[string]error
}

func (e *UnreachableError) Error() string {
	addrs := make([]string, 0, len(e.Errors))
	for a := range e.Errors {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	parts := make([]string, len(addrs))
	for i, a := range addrs {
		parts[i] = a + " (" + reason(a, e.Errors[a]) + ")"
	}
	return "no blobgc server reachable; tried " + strings.Join(parts, ", ")
}

// reason shortens a connection error to what happened: grpc's
// `connection error: desc = "transport: Error while dialing: dial tcp
// ADDR: connect: connection refused"` becomes "connect: connection refused".
func reason(addr string, err error) string {
	st := status.Convert(err)
	if st.Code() == codes.DeadlineExceeded {
		return "no answer in time"
	}
	msg := st.Message()
	if i := strings.LastIndex(msg, addr+": "); i >= 0 {
		msg = strings.TrimSuffix(msg[i+len(addr)+2:], `"`)
	}
	return msg
}

// GRPCStatus makes the error an Unavailable status for status.Code.
func (e *UnreachableError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.Error())
}

// attempt runs fn once against target and learns the leader from the reply.
// answered says whether the server replied at all: false when the
// connection failed or the attempt timed out without a word, which makes
// target suspect. A bounded attempt gives up after the call timeout, or as
// soon as another server names a new leader, so that a retry can go there;
// an unbounded one has the caller's whole deadline.
func (c *Client) attempt(ctx context.Context, target string, route, bounded bool, fn attemptFunc) (answered bool, err error) {
	cc, err := c.conn(target)
	if err != nil {
		return false, err
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if bounded {
		var stop context.CancelFunc
		actx, stop = context.WithTimeout(actx, c.cfg.callTimeout)
		defer stop()
		// Only an attempt on the leader is watched: a follower that
		// forwards gives up on a replaced leader by itself. The watcher
		// starts at its first check: most calls end before it, and then
		// cost neither its goroutine nor its ticker.
		if route && c.cfg.leaderCheck > 0 && c.Leader() == target {
			w := time.AfterFunc(c.cfg.leaderCheck, func() { c.watchLeader(actx, target, cancel) })
			defer w.Stop()
		}
	}
	var hdr, trl metadata.MD
	err = fn(actx, blobgcv1.NewBlobGCClient(cc), grpc.Header(&hdr), grpc.Trailer(&trl))
	var moved *leaderMoved
	if err != nil && errors.As(context.Cause(actx), &moved) {
		err = moved.status()
	}
	_, hinted := LeaderHint(err)
	code := status.Code(err)
	answered = hdr.Len() > 0 || trl.Len() > 0 || hinted ||
		code != codes.Unavailable && code != codes.DeadlineExceeded && code != codes.Canceled
	// Silent: refused the connection, or said nothing until the attempt's
	// own timeout (not the caller's).
	silent := !answered && (code == codes.Unavailable || code == codes.DeadlineExceeded && ctx.Err() == nil)
	if !route {
		return answered, err
	}
	// A server that refused the connection or said nothing until the
	// attempt's timeout is down or frozen: skip it for a while.
	if silent || moved != nil {
		c.markDown(target)
	}
	if !answered {
		return false, err
	}
	if err == nil {
		c.markUp(target)
	}
	leader := first(hdr.Get(LeaderHeader))
	if leader == "" {
		leader = first(trl.Get(LeaderHeader))
	}
	if h, ok := LeaderHint(err); ok {
		leader = h.GetLeaderAddress()
		if leader == "" {
			c.forgetLeader(target)
		}
	}
	failed := code == codes.Unavailable || code == codes.DeadlineExceeded
	switch {
	case failed && (leader == "" || leader == target):
		// A server that cannot serve is not a leader to come back to, even
		// if it still names itself.
		c.forgetLeader(target)
	case leader != "":
		c.setLeader(leader)
	}
	return true, err
}

// leaderMoved cancels an attempt when another server names a new leader.
type leaderMoved struct{ from, to string }

func (m *leaderMoved) Error() string {
	return fmt.Sprintf("%s did not answer and %s is the leader now; outcome unknown", m.from, m.to)
}

func (m *leaderMoved) status() error {
	st, err := status.New(codes.Unavailable, m.Error()).WithDetails(&blobgcv1.LeaderHint{LeaderAddress: m.to})
	if err != nil {
		return status.Error(codes.Unavailable, m.Error())
	}
	return st.Err()
}

// watchLeader runs beside an attempt on target, the leader as the client
// knows it. Every leader-check interval it asks another server (a cheap
// health check, answered locally) whom it follows; when that is another
// server, one this client can reach, the cluster elected a new leader while
// target was silent (frozen, partitioned), and the attempt is cancelled so
// that the retry goes to the new leader at once instead of after the call
// timeout.
func (c *Client) watchLeader(ctx context.Context, target string, cancel context.CancelCauseFunc) {
	t := time.NewTicker(c.cfg.leaderCheck)
	defer t.Stop()
	for ctx.Err() == nil {
		if peer := c.peerOf(target); peer != "" {
			if l := c.leaderSeenBy(ctx, peer); l != "" && l != target && !c.suspect(l) {
				cancel(&leaderMoved{from: target, to: l})
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// suspect reports whether addr is being skipped.
func (c *Client) suspect(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Before(c.down[addr])
}

// peerOf returns a server other than target that is not suspect, round-robin,
// or "" when there is none.
func (c *Client) peerOf(target string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for range c.servers {
		a := c.servers[c.probe%len(c.servers)]
		c.probe++
		if a != target && !now.Before(c.down[a]) {
			return a
		}
	}
	return ""
}

// leaderSeenBy returns the leader that the server at addr names in the
// header of a health check, or "" if it names none or does not answer
// within the leader-check interval.
func (c *Client) leaderSeenBy(ctx context.Context, addr string) string {
	cc, err := c.conn(addr)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.leaderCheck)
	defer cancel()
	var hdr metadata.MD
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr)); err != nil {
		return ""
	}
	return first(hdr.Get(LeaderHeader))
}

// expired reports whether ctx is done or its deadline has passed (an
// attempt's context may notice the shared deadline first).
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// backoff returns the wait before attempt+1: exponential, capped, with
// "equal jitter" (half fixed, half random) so that clients spread out but
// never hammer a recovering cluster.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.backoffBase
	for i := 0; i < attempt && d < c.cfg.backoffMax; i++ {
		d *= 2
	}
	if d > c.cfg.backoffMax {
		d = c.cfg.backoffMax
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
