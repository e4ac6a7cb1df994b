package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/transport/transportpb"
)

// Defaults for Config fields left at zero.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultHeartbeatTimeout = time.Second
	DefaultMaxInFlight      = 2
	// DefaultMaxMessageSize admits a full batch of raft's default
	// MaxAppendEntries (64) entries of up to 1 MiB each, plus framing.
	DefaultMaxMessageSize = 128 << 20
	// MinMaxMessageSize leaves room for a request's header and snapshot
	// chunks of 256 KiB.
	MinMaxMessageSize = 1 << 20

	// snapshotChunkSize is the payload of one InstallSnapshot stream message.
	snapshotChunkSize = 256 << 10
	// snapshotTimeoutScale mirrors NetworkTransport: the snapshot deadline is
	// Timeout per started 256 KiB, at least Timeout.
	snapshotTimeoutScale = 256 << 10
	// reconnectMaxDelay caps gRPC's reconnect backoff (default 120 s) so that
	// a restarted peer is reachable again almost at once.
	reconnectMaxDelay = time.Second
)

// ErrTransportShutdown is returned by calls made after Close, and answered to
// peers whose requests were pending when the transport closed.
var ErrTransportShutdown = raft.ErrTransportShutdown

// Config configures a Transport.
type Config struct {
	// LocalAddr is the advertised host:port of this server's shared gRPC listener.
	LocalAddr raft.ServerAddress
	// LocalID, if set, is this server's raft ID. Every outgoing call names
	// the ID it is meant for, and a server with a LocalID refuses calls
	// meant for another: an address can come to point at a different
	// server (a restarted container that got another's old IP), and raft
	// itself never checks who answers. Empty: no check.
	LocalID raft.ServerID
	// TLS is the client-side TLS configuration for dialing peers (mTLS: set
	// Certificates and RootCAs); nil dials without TLS.
	TLS *tls.Config
	// VerifyServer, if set with TLS, checks the verified certificate of each
	// peer dialed against the raft ID the connection is for; an error fails
	// the handshake, so no request reaches a server that is not the one
	// raft meant (blobgc checks the certificate's server identity).
	VerifyServer func(id raft.ServerID, cert *x509.Certificate) error
	// Timeout is the per-RPC deadline of AppendEntries and the pipeline's stall
	// watchdog (default 10 s). InstallSnapshot gets Timeout per 256 KiB.
	Timeout time.Duration
	// HeartbeatTimeout is the deadline of heartbeats, votes, pre-votes and
	// TimeoutNow (default 1 s).
	HeartbeatTimeout time.Duration
	// MaxInFlight is the pipeline depth (default 2); 1 disables pipelining.
	MaxInFlight int
	// MaxMessageSize bounds a single gRPC message both ways (default 128 MiB,
	// at least MinMaxMessageSize); pass the same value to ServerOptions.
	// Batches above it are split into several requests; a single entry above
	// it cannot be sent, so the application must refuse such entries.
	MaxMessageSize int
	// Logger defaults to a null logger.
	Logger hclog.Logger
	// DialOptions are appended to the transport's own dial options (for
	// example a context dialer in tests).
	DialOptions []grpc.DialOption
}

func (c *Config) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
}

// Transport is a raft.Transport over gRPC. Outbound calls use two
// ClientConns per peer: one for log replication and snapshots, one for
// heartbeats, votes and TimeoutNow, so that a large batch or snapshot never
// delays a heartbeat behind it on the same HTTP/2 connection. Inbound calls
// arrive through the Raft gRPC service registered with Register.
type Transport struct {
	cfg       Config
	logger    hclog.Logger
	dialOpts  []grpc.DialOption
	consumeCh chan raft.RPC

	hbMu sync.Mutex
	hbFn func(raft.RPC)

	// ctx is cancelled by Close; every outbound call and inbound handler
	// derives from or watches it.
	ctx      context.Context
	cancel   context.CancelFunc
	shutdown chan struct{}

	mu        sync.Mutex
	closed    bool
	peers     map[raft.ServerAddress]*peerConns
	pipelines map[*pipeline]struct{}
	inbound   map[*inboundStream]struct{} // pipeline streams being served
	wg        sync.WaitGroup              // pipeline goroutines

	metrics *rpcMetrics
	acks    ackTable
}

type peerConns struct {
	id               raft.ServerID // the server the connections were made for
	data, ctrl       *grpc.ClientConn
	dataCli, ctrlCli pb.RaftClient
}

var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)

	_ prometheus.Collector = (*Transport)(nil)
)

// New creates a Transport. It does not listen: call Register on the shared
// grpc.Server, which the caller starts and stops.
func New(cfg Config) (*Transport, error) {
	if cfg.LocalAddr == "" {
		return nil, errors.New("transport: LocalAddr is required")
	}
	if cfg.MaxInFlight < 0 {
		return nil, fmt.Errorf("transport: MaxInFlight %d < 0", cfg.MaxInFlight)
	}
	if cfg.MaxMessageSize != 0 && cfg.MaxMessageSize < MinMaxMessageSize {
		return nil, fmt.Errorf("transport: MaxMessageSize %d is below the minimum %d", cfg.MaxMessageSize, MinMaxMessageSize)
	}
	cfg.setDefaults()
	opts := []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  50 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   reconnectMaxDelay,
			},
			MinConnectTimeout: cfg.Timeout,
		}),
		// Keepalive detects a silently dead peer under a long-lived pipeline
		// stream; 10 s is grpc-go's minimum client ping interval.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                10 * time.Second,
			Timeout:             5 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(cfg.MaxMessageSize),
			grpc.MaxCallSendMsgSize(cfg.MaxMessageSize),
		),
		grpc.WithInitialWindowSize(1 << 20),
		grpc.WithInitialConnWindowSize(4 << 20),
	}
	opts = append(opts, cfg.DialOptions...)
	ctx, cancel := context.WithCancel(context.Background())
	return &Transport{
		cfg:       cfg,
		logger:    cfg.Logger.Named("transport"),
		dialOpts:  opts,
		consumeCh: make(chan raft.RPC),
		ctx:       ctx,
		cancel:    cancel,
		shutdown:  make(chan struct{}),
		peers:     make(map[raft.ServerAddress]*peerConns),
		pipelines: make(map[*pipeline]struct{}),
		inbound:   make(map[*inboundStream]struct{}),
		metrics:   newRPCMetrics(),
	}, nil
}

// Register registers the Raft service on s. The transport never stops s.
func (t *Transport) Register(s *grpc.Server) {
	pb.RegisterRaftServer(s, &raftServer{t: t})
}

// Consumer implements raft.Transport.
func (t *Transport) Consumer() <-chan raft.RPC { return t.consumeCh }

// LocalAddr implements raft.Transport.
func (t *Transport) LocalAddr() raft.ServerAddress { return t.cfg.LocalAddr }

// SetHeartbeatHandler implements raft.Transport.
func (t *Transport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	t.hbMu.Lock()
	t.hbFn = cb
	t.hbMu.Unlock()
}

func (t *Transport) heartbeatFn() func(raft.RPC) {
	t.hbMu.Lock()
	defer t.hbMu.Unlock()
	return t.hbFn
}

// EncodePeer implements raft.Transport.
func (t *Transport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}

// DecodePeer implements raft.Transport.
func (t *Transport) DecodePeer(buf []byte) raft.ServerAddress {
	return raft.ServerAddress(buf)
}

// Close cancels every outbound call and pipeline, fails inbound requests
// still waiting for raft with ErrTransportShutdown, and closes the client
// connections. It is idempotent and leaves the shared grpc.Server running.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.shutdown)
	t.cancel()
	peers := t.peers
	t.peers = nil
	pipes := make([]*pipeline, 0, len(t.pipelines))
	for p := range t.pipelines {
		pipes = append(pipes, p)
	}
	t.mu.Unlock()

	for _, p := range pipes {
		_ = p.Close()
	}
	for _, pc := range peers {
		_ = pc.data.Close()
		_ = pc.ctrl.Close()
	}
	t.wg.Wait()
	return nil
}

// CloseStreams drops the connections to every peer (they are re-dialed on
// the next call), aborts the outbound pipelines and ends the inbound
// pipeline streams, as NetworkTransport.CloseStreams does.
func (t *Transport) CloseStreams() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	peers := t.peers
	t.peers = make(map[raft.ServerAddress]*peerConns)
	pipes := make([]*pipeline, 0, len(t.pipelines))
	for p := range t.pipelines {
		pipes = append(pipes, p)
	}
	for s := range t.inbound {
		s.cancel()
	}
	t.mu.Unlock()
	for _, p := range pipes {
		_ = p.Close()
	}
	for _, pc := range peers {
		_ = pc.data.Close()
		_ = pc.ctrl.Close()
	}
}

// peer returns the cached connections to server id at target, creating them
// lazily. grpc.NewClient does not connect; the first RPC does. Connections
// made for another id at the same address (it has been given to another
// server) are replaced, so that TLS checks the right server identity.
func (t *Transport) peer(id raft.ServerID, target raft.ServerAddress) (*peerConns, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrTransportShutdown
	}
	if pc, ok := t.peers[target]; ok {
		if pc.id == id {
			return pc, nil
		}
		_ = pc.data.Close()
		_ = pc.ctrl.Close()
		delete(t.peers, target)
	}
	creds := insecure.NewCredentials()
	if t.cfg.TLS != nil {
		creds = t.peerCredentials(id)
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, t.dialOpts...)
	// passthrough: ServerAddress is a literal host:port, never resolved
	// through gRPC's DNS resolver.
	dial := "passthrough:///" + string(target)
	data, err := grpc.NewClient(dial, opts...)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", target, err)
	}
	ctrl, err := grpc.NewClient(dial, opts...)
	if err != nil {
		_ = data.Close()
		return nil, fmt.Errorf("transport: dial %s: %w", target, err)
	}
	t.logger.Debug("created connections to peer", "peer", target, "id", id)
	pc := &peerConns{id: id, data: data, ctrl: ctrl, dataCli: pb.NewRaftClient(data), ctrlCli: pb.NewRaftClient(ctrl)}
	t.peers[target] = pc
	return pc, nil
}

// callContext returns a context with the given deadline that Close cancels,
// naming the server the call is meant for.
func (t *Transport) callContext(id raft.ServerID, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(t.ctx, d)
	return withTarget(ctx, id), cancel
}

// clientError turns a gRPC call error to target into the error handed to
// raft. A call that reached the wrong server drops the connections to
// target, so the next call dials (and resolves) the address again.
func (t *Transport) clientError(target raft.ServerAddress, err error) error {
	if err == nil {
		return nil
	}
	if t.ctx.Err() != nil {
		return ErrTransportShutdown
	}
	if isWrongServer(err) {
		t.logger.Warn("address answered by another server, reconnecting", "peer", target, "error", err)
		t.dropPeer(target)
	}
	return err
}

// dropPeer closes and forgets the connections to target.
func (t *Transport) dropPeer(target raft.ServerAddress) {
	t.mu.Lock()
	pc, ok := t.peers[target]
	delete(t.peers, target)
	t.mu.Unlock()
	if ok {
		_ = pc.data.Close()
		_ = pc.ctrl.Close()
	}
}

// remoteError turns the error string raft answered with into an error.
func remoteError(msg string) error {
	if msg == "" {
		return nil
	}
	return errors.New(msg)
}

func isHeartbeat(r *raft.AppendEntriesRequest) bool {
	leader := r.RPCHeader.Addr
	if len(leader) == 0 {
		leader = r.Leader
	}
	return r.Term != 0 && len(leader) != 0 &&
		r.PrevLogEntry == 0 && r.PrevLogTerm == 0 &&
		len(r.Entries) == 0 && r.LeaderCommitIndex == 0
}

// AppendEntries implements raft.Transport. Heartbeats travel on the control
// connection with the heartbeat deadline.
func (t *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	pc, err := t.peer(id, target)
	if err != nil {
		return err
	}
	cli, timeout, kind := pc.dataCli, t.cfg.Timeout, rpcAppendEntries
	if isHeartbeat(args) {
		cli, timeout, kind = pc.ctrlCli, t.cfg.HeartbeatTimeout, rpcHeartbeat
	}
	chunks, err := splitAppend(args, t.cfg.MaxMessageSize)
	if err != nil {
		return err
	}
	if chunks == nil {
		return t.appendEntries(id, target, cli, kind, timeout, args, resp)
	}
	t.metrics.splits.Inc()
	for _, chunk := range chunks {
		if err := t.appendEntries(id, target, cli, kind, timeout, chunk, resp); err != nil || !resp.Success {
			return err
		}
	}
	return nil
}

func (t *Transport) appendEntries(id raft.ServerID, target raft.ServerAddress, cli pb.RaftClient, kind rpcKind, timeout time.Duration, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	start := time.Now()
	ctx, cancel := t.callContext(id, timeout)
	defer cancel()
	out, err := cli.AppendEntries(ctx, encodeAppendEntriesRequest(args))
	t.metrics.observe(kind, start, err)
	if err != nil {
		return t.clientError(target, err)
	}
	decodeAppendEntriesResponse(out, resp)
	if err := remoteError(out.Error); err != nil {
		return err
	}
	t.acks.record(id, args, resp, start)
	return nil
}

// RequestVote implements raft.Transport.
func (t *Transport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	pc, err := t.peer(id, target)
	if err != nil {
		return err
	}
	start := time.Now()
	ctx, cancel := t.callContext(id, t.cfg.HeartbeatTimeout)
	defer cancel()
	out, err := pc.ctrlCli.RequestVote(ctx, encodeRequestVoteRequest(args))
	t.metrics.observe(rpcRequestVote, start, err)
	if err != nil {
		return t.clientError(target, err)
	}
	decodeRequestVoteResponse(out, resp)
	return remoteError(out.Error)
}

// unexpectedCommand is the text raft's pre-vote logic looks for to treat a
// peer without pre-vote support as granting.
const unexpectedCommand = "unexpected command"

// RequestPreVote implements raft.WithPreVote. A peer that does not know the
// method answers Unimplemented, which is reported as raft's "unexpected
// command" so that raft falls back as it does with NetworkTransport.
func (t *Transport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	pc, err := t.peer(id, target)
	if err != nil {
		return err
	}
	start := time.Now()
	ctx, cancel := t.callContext(id, t.cfg.HeartbeatTimeout)
	defer cancel()
	out, err := pc.ctrlCli.RequestPreVote(ctx, encodeRequestPreVoteRequest(args))
	t.metrics.observe(rpcRequestPreVote, start, err)
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			return fmt.Errorf("%s: peer %s has no pre-vote: %w", unexpectedCommand, target, err)
		}
		return t.clientError(target, err)
	}
	decodeRequestPreVoteResponse(out, resp)
	return remoteError(out.Error)
}

// TimeoutNow implements raft.Transport.
func (t *Transport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	pc, err := t.peer(id, target)
	if err != nil {
		return err
	}
	start := time.Now()
	ctx, cancel := t.callContext(id, t.cfg.HeartbeatTimeout)
	defer cancel()
	out, err := pc.ctrlCli.TimeoutNow(ctx, encodeTimeoutNowRequest(args))
	t.metrics.observe(rpcTimeoutNow, start, err)
	if err != nil {
		return t.clientError(target, err)
	}
	decodeTimeoutNowResponse(out, resp)
	return remoteError(out.Error)
}

// snapshotTimeout scales the deadline with the snapshot size like
// NetworkTransport does.
func (t *Transport) snapshotTimeout(size int64) time.Duration {
	d := t.cfg.Timeout * time.Duration(size/snapshotTimeoutScale)
	if d < t.cfg.Timeout {
		d = t.cfg.Timeout
	}
	return d
}

// InstallSnapshot implements raft.Transport. It streams exactly args.Size
// bytes of data in chunks; data that is shorter or longer than args.Size
// fails the call, and the receiver checks the size again.
func (t *Transport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	pc, err := t.peer(id, target)
	if err != nil {
		return err
	}
	start := time.Now()
	ctx, cancel := t.callContext(id, t.snapshotTimeout(args.Size))
	defer cancel()
	err = t.sendSnapshot(ctx, target, pc.dataCli, args, resp, data)
	t.metrics.observe(rpcInstallSnapshot, start, err)
	return err
}

func (t *Transport) sendSnapshot(ctx context.Context, target raft.ServerAddress, cli pb.RaftClient, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if args.Size < 0 {
		return fmt.Errorf("transport: negative snapshot size %d", args.Size)
	}
	stream, err := cli.InstallSnapshot(ctx)
	if err != nil {
		return t.clientError(target, err)
	}
	if err := stream.Send(&pb.InstallSnapshotChunk{Meta: encodeInstallSnapshotRequest(args)}); err != nil {
		return t.streamSendError(target, stream, err, resp)
	}
	var sent int64
	for sent < args.Size {
		// A fresh buffer per message: gRPC does not allow reusing a sent
		// message's memory.
		buf := make([]byte, min(snapshotChunkSize, args.Size-sent))
		n, rerr := io.ReadFull(data, buf)
		if n > 0 {
			if err := stream.Send(&pb.InstallSnapshotChunk{Data: buf[:n]}); err != nil {
				return t.streamSendError(target, stream, err, resp)
			}
			sent += int64(n)
		}
		if rerr != nil {
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				return fmt.Errorf("transport: snapshot data ended after %d of %d bytes", sent, args.Size)
			}
			return fmt.Errorf("transport: reading snapshot: %w", rerr)
		}
	}
	// The data must end where Size says; a longer snapshot means the size in
	// the request is wrong and the receiver would install a truncated one.
	var one [1]byte
	if n, _ := io.ReadFull(data, one[:]); n > 0 {
		return fmt.Errorf("transport: snapshot data longer than its size %d", args.Size)
	}
	out, err := stream.CloseAndRecv()
	if err != nil {
		return t.clientError(target, err)
	}
	decodeInstallSnapshotResponse(out, resp)
	return remoteError(out.Error)
}

// streamSendError returns the real outcome of a failed snapshot stream:
// Send reports io.EOF when the receiver has already answered (raft refused
// the snapshot before reading all of it) or failed the call.
func (t *Transport) streamSendError(target raft.ServerAddress, stream grpc.ClientStreamingClient[pb.InstallSnapshotChunk, pb.InstallSnapshotResponse], err error, resp *raft.InstallSnapshotResponse) error {
	if err != io.EOF {
		return t.clientError(target, err)
	}
	out, err := stream.CloseAndRecv()
	if err != nil {
		return t.clientError(target, err)
	}
	decodeInstallSnapshotResponse(out, resp)
	if out.Error != "" {
		return remoteError(out.Error)
	}
	return errors.New("transport: snapshot receiver answered before the whole snapshot was sent")
}
