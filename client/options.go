package client

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
)

// Defaults of the options.
const (
	// DefaultCallTimeout bounds one attempt of an operation that may be
	// retried. A leader that is frozen (SIGSTOP, a VM pause) keeps its
	// connections open and answers nothing; after this long the client
	// tries another server, which by then knows the new leader. Operations
	// that are not retried on a timeout (RunCycle, TransferLeadership) get
	// the whole retry deadline for their one attempt.
	DefaultCallTimeout  = 2 * time.Second
	DefaultRetryTimeout = 30 * time.Second
	DefaultBackoffBase  = 10 * time.Millisecond
	// DefaultBackoffMax is small because the usual reason to wait is an
	// election, which takes well under a second: a client should notice the
	// new leader within a fraction of that.
	DefaultBackoffMax = 100 * time.Millisecond
	// DefaultLeaderCheck is how often an attempt that has not been
	// answered yet asks another server whom it follows; a new leader ends
	// the attempt, so a write to a frozen leader goes to its successor
	// within about this long of the election.
	DefaultLeaderCheck = 250 * time.Millisecond
)

type config struct {
	tls    *tls.Config
	tlsErr error
	// token, if set, goes with every call as a bearer token (WithToken).
	token          string
	tokenErr       error
	tokenPlaintext bool
	callTimeout    time.Duration
	retryTimeout   time.Duration
	backoffBase    time.Duration
	backoffMax     time.Duration
	leaderCheck    time.Duration
	dialTimeout    time.Duration
	logger         hclog.Logger
	dialOpts       []grpc.DialOption
	batch          int
	chunk          int
}

// Option configures a Client.
type Option func(*config)

// WithTLS makes the client speak TLS, trusting the servers whose certificates
// chain to the PEM file caFile. certFile and keyFile, when both non-empty,
// are the client's own certificate for servers that ask for one.
func WithTLS(caFile, certFile, keyFile string) Option {
	return func(c *config) {
		caPEM, err := os.ReadFile(caFile)
		if err != nil {
			c.tlsErr = fmt.Errorf("client: read CA file: %w", err)
			return
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			c.tlsErr = fmt.Errorf("client: CA file %s holds no PEM certificate", caFile)
			return
		}
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if certFile != "" || keyFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				c.tlsErr = fmt.Errorf("client: load client key pair: %w", err)
				return
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		c.tls = tc
	}
}

// WithTLSConfig makes the client speak TLS with tc.
func WithTLSConfig(tc *tls.Config) Option { return func(c *config) { c.tls = tc } }

// WithCallTimeout bounds one attempt of a call (default DefaultCallTimeout).
// An attempt that runs out of time has an unknown outcome and is retried
// only for idempotent operations.
func WithCallTimeout(d time.Duration) Option { return func(c *config) { c.callTimeout = d } }

// WithRetryTimeout bounds all attempts of a call whose context has no
// deadline (default DefaultRetryTimeout).
func WithRetryTimeout(d time.Duration) Option { return func(c *config) { c.retryTimeout = d } }

// WithLeaderCheck sets how often an attempt that is still waiting for its
// answer asks another server which leader it follows (default
// DefaultLeaderCheck); a new leader ends the attempt (its outcome is unknown,
// so only for operations retried on a timeout) and the call is retried
// there. A negative d turns the check off.
func WithLeaderCheck(d time.Duration) Option { return func(c *config) { c.leaderCheck = d } }

// WithDialTimeout makes a call fail with an *UnreachableError once no server
// has answered it for d: every address was tried and each refused the
// connection, could not be reached or stayed silent. Without it (d = 0, the
// default) the call keeps retrying until its deadline, which suits a
// long-running process riding out a full-cluster restart; a command-line
// tool wants to say at once that nothing answers.
func WithDialTimeout(d time.Duration) Option { return func(c *config) { c.dialTimeout = d } }

// WithBackoff sets the first and the largest wait between attempts; each
// wait doubles the previous one, with jitter.
func WithBackoff(base, max time.Duration) Option {
	return func(c *config) { c.backoffBase, c.backoffMax = base, max }
}

// WithLogger logs retries and leader changes (default: no logs).
func WithLogger(l hclog.Logger) Option { return func(c *config) { c.logger = l } }

// WithDialOptions adds gRPC dial options to every connection.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOpts = append(c.dialOpts, opts...) }
}

// WithBatchSize lowers the number of hashes sent in one request (default and
// maximum MaxBatch).
func WithBatchSize(n int) Option { return func(c *config) { c.batch = n } }

// WithChunkSize sets how many hashes a Reporter puts in one report request
// (default and maximum FullChunk); larger full reports are chunked.
func WithChunkSize(n int) Option { return func(c *config) { c.chunk = n } }

// ReadOption changes how a read is served.
type ReadOption func(*readConfig)

type readConfig struct{ stale bool }

// Stale lets any server answer the read from its own state, which may lag
// the leader's. Reads are linearizable without it.
func Stale() ReadOption { return func(r *readConfig) { r.stale = true } }
