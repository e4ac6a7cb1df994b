package cluster

import (
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blobgc/blobgc/fsm"
)

// Defaults of Limits fields left at zero.
const (
	// DefaultMaxMessageSize admits the largest valid request (MaxBatch
	// hashes, about 1 MB) and one state machine command (fsm.MaxCommandSize)
	// in a raft message, with room to spare; raft batches over it are split.
	DefaultMaxMessageSize = 4 << 20
	// MinMessageSize is the smallest MaxMessageSize: one maximal command and
	// its raft header must fit into one AppendEntries request.
	MinMessageSize       = fsm.MaxCommandSize + 1<<20
	DefaultMaxStreams    = 32
	DefaultMaxConns      = 256
	DefaultMaxHeavyReads = 2
	// handshakeTimeout drops a connection that has not completed its TLS
	// and HTTP/2 handshake in this time (grpc's default is 2 minutes).
	handshakeTimeout = 10 * time.Second
)

// Limits bound what clients can make one server hold or do. Every limit is
// checked before anything is proposed; 0 means the default.
type Limits struct {
	// MaxMessageSize bounds one gRPC message in either direction, for the
	// API and raft alike (they share the listener; the raft transport
	// splits batches to fit). Default DefaultMaxMessageSize, at least
	// MinMessageSize. A larger request is refused with ResourceExhausted
	// before its body is read.
	MaxMessageSize int
	// MaxBatch is the most hashes one request may carry (all fields of a
	// report together); default and upper bound MaxBatch. Go clients split
	// larger batches at MaxBatch; with a lower value they need
	// client.WithBatchSize and client.WithChunkSize to match.
	MaxBatch int
	// MaxStreams bounds concurrent calls on one connection (HTTP/2
	// SETTINGS_MAX_CONCURRENT_STREAMS); grpc clients queue beyond it.
	// Default DefaultMaxStreams.
	MaxStreams uint32
	// MaxConnections bounds open connections to the listener, peers
	// included; a connection beyond it is closed at once. Default
	// DefaultMaxConns.
	MaxConnections int
	// MaxHeavyReads bounds the expensive reads (Digest, and list pages
	// larger than DefaultPageSize) that one server computes at once; one
	// more is refused with ResourceExhausted. Default DefaultMaxHeavyReads.
	MaxHeavyReads int
	// RefusalRate and RefusalBurst size each connection's budget of
	// refused calls (see refusals.go): a connection that used up
	// RefusalBurst refusals gets new calls refused before they are read
	// until it earns one back, at RefusalRate per second. Defaults
	// DefaultRefusalRate and DefaultRefusalBurst.
	RefusalRate  float64
	RefusalBurst int
}

func (l *Limits) setDefaults() {
	if l.MaxMessageSize == 0 {
		l.MaxMessageSize = DefaultMaxMessageSize
	}
	if l.MaxBatch == 0 {
		l.MaxBatch = MaxBatch
	}
	if l.MaxStreams == 0 {
		l.MaxStreams = DefaultMaxStreams
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = DefaultMaxConns
	}
	if l.MaxHeavyReads == 0 {
		l.MaxHeavyReads = DefaultMaxHeavyReads
	}
	if l.RefusalRate == 0 {
		l.RefusalRate = DefaultRefusalRate
	}
	if l.RefusalBurst == 0 {
		l.RefusalBurst = DefaultRefusalBurst
	}
}

func (l *Limits) validate() error {
	switch {
	case l.MaxMessageSize != 0 && l.MaxMessageSize < MinMessageSize:
		return fmt.Errorf("cluster: Limits.MaxMessageSize %d is below the minimum %d", l.MaxMessageSize, MinMessageSize)
	case l.MaxBatch < 0 || l.MaxBatch > MaxBatch:
		return fmt.Errorf("cluster: Limits.MaxBatch %d: want 1 to %d", l.MaxBatch, MaxBatch)
	case l.MaxConnections < 0:
		return fmt.Errorf("cluster: Limits.MaxConnections %d is negative", l.MaxConnections)
	case l.MaxHeavyReads < 0:
		return fmt.Errorf("cluster: Limits.MaxHeavyReads %d is negative", l.MaxHeavyReads)
	case l.RefusalRate < 0 || l.RefusalBurst < 0:
		return fmt.Errorf("cluster: Limits.RefusalRate %g and RefusalBurst %d must not be negative", l.RefusalRate, l.RefusalBurst)
	}
	return nil
}

// serverOptions are the grpc.Server options that enforce the limits on
// every connection (the message size goes to transport.ServerOptions).
func (l *Limits) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(l.MaxStreams),
		grpc.ConnectionTimeout(handshakeTimeout),
	}
}

// connLimit is a net.Listener that keeps at most max connections open. It
// closes a connection beyond the limit at once rather than leaving it in the
// accept queue: a queued peer would wait behind whoever holds the slots,
// while a closed one retries (raft and clients reconnect with backoff).
type connLimit struct {
	net.Listener
	slots   chan struct{}
	refused func()
}

func limitConns(l net.Listener, max int, refused func()) net.Listener {
	return &connLimit{Listener: l, slots: make(chan struct{}, max), refused: refused}
}

func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			c.Close()
			l.refused()
		}
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// heavyReads lets at most cap(slots) expensive reads run at once on this
// server and refuses more, so that they cannot take the CPU raft needs.
type heavyReads struct {
	slots   chan struct{}
	refused func()
}

// heavy wraps read so that it holds a slot while it runs, or fails with
// ResourceExhausted when none is free. It returns read as is when cheap.
func heavy[PR any](h *heavyReads, expensive bool, what string, read func() (PR, error)) func() (PR, error) {
	if !expensive {
		return read
	}
	return func() (PR, error) {
		select {
		case h.slots <- struct{}{}:
			defer func() { <-h.slots }()
			return read()
		default:
			h.refused()
			var zero PR
			return zero, status.Errorf(codes.ResourceExhausted,
				"%s: %d expensive reads (Digest, pages over %d items) are running on this server; retry later or ask for a smaller page",
				what, cap(h.slots), DefaultPageSize)
		}
	}
}
