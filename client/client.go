package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
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
	closed  bool
	// down holds servers that just failed to answer at all, until when they
	// are skipped: followers keep naming a crashed leader until they notice,
	// and following that hint would only hit the dead server again.
	down map[string]time.Time
}

// downFor is how long a server that did not answer is skipped.
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
		batch:        MaxBatch,
		chunk:        FullChunk,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.tlsErr != nil {
		return nil, cfg.tlsErr
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
	var lastErr error
	for attempt := 0; ; attempt++ {
		target := addr
		if target == "" {
			target = c.pick(k == staleRead)
		}
		err := c.attempt(ctx, target, addr == "", k != once, fn)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrClosed) {
			return err
		}
		if expired(ctx) {
			// The caller's time is up: report what the servers said, if
			// anything, rather than the bare context error.
			if lastErr == nil || status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Canceled {
				lastErr = err
			}
			return lastErr
		}
		if !retryable(k, err) {
			return err
		}
		lastErr = err
		c.log.Debug("retrying", "method", method, "server", target, "attempt", attempt+1, "error", err)
		// A hint that names another server is followed at once; anything
		// else waits, since the cluster is probably electing.
		if h, ok := LeaderHint(err); ok && addr == "" && c.Leader() == h.GetLeaderAddress() && h.GetLeaderAddress() != target && h.GetLeaderAddress() != "" {
			continue
		}
		if err := sleep(ctx, c.backoff(attempt)); err != nil {
			return lastErr
		}
	}
}

// attempt runs fn once against target and learns the leader from the reply.
// A bounded attempt gives up after the call timeout, so that a retry can go
// elsewhere; an unbounded one has the caller's whole deadline.
func (c *Client) attempt(ctx context.Context, target string, route, bounded bool, fn attemptFunc) error {
	cc, err := c.conn(target)
	if err != nil {
		return err
	}
	actx, cancel := ctx, context.CancelFunc(func() {})
	if bounded {
		actx, cancel = context.WithTimeout(ctx, c.cfg.callTimeout)
	}
	defer cancel()
	var hdr, trl metadata.MD
	err = fn(actx, blobgcv1.NewBlobGCClient(cc), grpc.Header(&hdr), grpc.Trailer(&trl))
	if !route {
		return err
	}
	// An Unavailable without any header came from the connection, not from
	// a server: the server is down or unreachable.
	if status.Code(err) == codes.Unavailable && hdr.Len() == 0 && trl.Len() == 0 {
		if _, hinted := LeaderHint(err); !hinted {
			c.markDown(target)
			return err
		}
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
	failed := status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded
	switch {
	case failed && (leader == "" || leader == target):
		// A server that cannot serve is not a leader to come back to, even
		// if it still names itself.
		c.forgetLeader(target)
	case leader != "":
		c.setLeader(leader)
	}
	return err
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
