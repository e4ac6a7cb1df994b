package transport

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/transport/transportpb"
)

// The server side: each handler turns the request into a raft.RPC, hands it
// to raft through Consumer() (or to the heartbeat handler), and waits for the
// answer. Every wait also watches the call's context and Close, so a handler
// never outlives its caller or the transport.

// raftServer is the gRPC face of a Transport (its method names clash with
// raft.Transport's).
type raftServer struct {
	pb.UnimplementedRaftServer
	t *Transport
}

var _ pb.RaftServer = (*raftServer)(nil)

// errShutdownStatus is what a peer sees when this transport has closed.
var errShutdownStatus = status.Error(codes.Unavailable, ErrTransportShutdown.Error())

// dispatch hands cmd to raft and returns the channel its answer arrives on.
// Heartbeats go to the heartbeat handler directly, so they are answered even
// while raft's main loop is busy and Consumer() is not being read.
func (t *Transport) dispatch(ctx context.Context, cmd any, reader io.Reader, heartbeat bool) (<-chan raft.RPCResponse, error) {
	respCh := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{Command: cmd, Reader: reader, RespChan: respCh}
	if heartbeat {
		if fn := t.heartbeatFn(); fn != nil {
			fn(rpc)
			return respCh, nil
		}
	}
	if err := ctx.Err(); err != nil {
		// select would pick at random between a ready consumer and a done
		// context; a caller that is gone must not reach raft.
		return nil, status.FromContextError(err).Err()
	}
	select {
	case t.consumeCh <- rpc:
		return respCh, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-t.shutdown:
		return nil, errShutdownStatus
	}
}

// await waits for raft's answer to a dispatched RPC.
func (t *Transport) await(ctx context.Context, respCh <-chan raft.RPCResponse) (raft.RPCResponse, error) {
	select {
	case resp := <-respCh:
		return resp, nil
	case <-ctx.Done():
		return raft.RPCResponse{}, status.FromContextError(ctx.Err()).Err()
	case <-t.shutdown:
		return raft.RPCResponse{}, errShutdownStatus
	}
}

func (t *Transport) call(ctx context.Context, cmd any, reader io.Reader, heartbeat bool) (raft.RPCResponse, error) {
	respCh, err := t.dispatch(ctx, cmd, reader, heartbeat)
	if err != nil {
		return raft.RPCResponse{}, err
	}
	return t.await(ctx, respCh)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// unexpectedResponse is the error for a response of the wrong type, which
// would be a bug in raft; the peer sees it as an Internal status.
func unexpectedResponse(r any) error {
	return status.Errorf(codes.Internal, "transport: unexpected response type %T", r)
}

// AppendEntries implements pb.RaftServer for t.
func (s *raftServer) AppendEntries(ctx context.Context, req *pb.AppendEntriesRequest) (*pb.AppendEntriesResponse, error) {
	t := s.t
	cmd := decodeAppendEntriesRequest(req)
	if err := t.checkCall(ctx, cmd.RPCHeader); err != nil {
		return nil, err
	}
	hb := isHeartbeat(cmd)
	if hb {
		t.metrics.served1(rpcHeartbeat)
	} else {
		t.metrics.served1(rpcAppendEntries)
	}
	resp, err := t.call(ctx, cmd, nil, hb)
	if err != nil {
		return nil, err
	}
	return appendEntriesAnswer(resp)
}

func appendEntriesAnswer(resp raft.RPCResponse) (*pb.AppendEntriesResponse, error) {
	out := &pb.AppendEntriesResponse{}
	if resp.Response != nil {
		r, ok := resp.Response.(*raft.AppendEntriesResponse)
		if !ok {
			return nil, unexpectedResponse(resp.Response)
		}
		out = encodeAppendEntriesResponse(r)
	}
	out.Error = errString(resp.Error)
	return out, nil
}

// RequestVote implements pb.RaftServer for t.
func (s *raftServer) RequestVote(ctx context.Context, req *pb.RequestVoteRequest) (*pb.RequestVoteResponse, error) {
	t := s.t
	cmd := decodeRequestVoteRequest(req)
	if err := t.checkCall(ctx, cmd.RPCHeader); err != nil {
		return nil, err
	}
	t.metrics.served1(rpcRequestVote)
	resp, err := t.call(ctx, cmd, nil, false)
	if err != nil {
		return nil, err
	}
	out := &pb.RequestVoteResponse{}
	if resp.Response != nil {
		r, ok := resp.Response.(*raft.RequestVoteResponse)
		if !ok {
			return nil, unexpectedResponse(resp.Response)
		}
		out = encodeRequestVoteResponse(r)
	}
	out.Error = errString(resp.Error)
	return out, nil
}

// RequestPreVote implements pb.RaftServer for t.
func (s *raftServer) RequestPreVote(ctx context.Context, req *pb.RequestPreVoteRequest) (*pb.RequestPreVoteResponse, error) {
	t := s.t
	cmd := decodeRequestPreVoteRequest(req)
	if err := t.checkCall(ctx, cmd.RPCHeader); err != nil {
		return nil, err
	}
	t.metrics.served1(rpcRequestPreVote)
	resp, err := t.call(ctx, cmd, nil, false)
	if err != nil {
		return nil, err
	}
	out := &pb.RequestPreVoteResponse{}
	if resp.Response != nil {
		r, ok := resp.Response.(*raft.RequestPreVoteResponse)
		if !ok {
			return nil, unexpectedResponse(resp.Response)
		}
		out = encodeRequestPreVoteResponse(r)
	}
	out.Error = errString(resp.Error)
	return out, nil
}

// TimeoutNow implements pb.RaftServer for t.
func (s *raftServer) TimeoutNow(ctx context.Context, req *pb.TimeoutNowRequest) (*pb.TimeoutNowResponse, error) {
	t := s.t
	cmd := decodeTimeoutNowRequest(req)
	if err := t.checkCall(ctx, cmd.RPCHeader); err != nil {
		return nil, err
	}
	t.metrics.served1(rpcTimeoutNow)
	resp, err := t.call(ctx, cmd, nil, false)
	if err != nil {
		return nil, err
	}
	out := &pb.TimeoutNowResponse{}
	if resp.Response != nil {
		r, ok := resp.Response.(*raft.TimeoutNowResponse)
		if !ok {
			return nil, unexpectedResponse(resp.Response)
		}
		out = encodeTimeoutNowResponse(r)
	}
	out.Error = errString(resp.Error)
	return out, nil
}

// InstallSnapshot implements pb.RaftServer for t. raft reads the snapshot through
// rpc.Reader, which pulls chunks from the stream and enforces the declared
// size both ways.
func (s *raftServer) InstallSnapshot(stream grpc.ClientStreamingServer[pb.InstallSnapshotChunk, pb.InstallSnapshotResponse]) error {
	t := s.t
	if err := t.checkTarget(stream.Context()); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.Meta == nil {
		return status.Error(codes.InvalidArgument, "transport: first snapshot message has no metadata")
	}
	if first.Meta.Size < 0 {
		return status.Errorf(codes.InvalidArgument, "transport: negative snapshot size %d", first.Meta.Size)
	}
	cmd := decodeInstallSnapshotRequest(first.Meta)
	if err := checkSource(stream.Context(), cmd.RPCHeader); err != nil {
		return err
	}
	t.metrics.served1(rpcInstallSnapshot)
	r := &snapshotReader{stream: stream, remaining: cmd.Size, buf: first.Data}
	if int64(len(r.buf)) > r.remaining {
		return status.Errorf(codes.InvalidArgument, "transport: snapshot data longer than its size %d", cmd.Size)
	}
	r.remaining -= int64(len(r.buf))
	ctx := stream.Context()
	resp, err := t.call(ctx, cmd, r, false)
	if err != nil {
		return err
	}
	out := &pb.InstallSnapshotResponse{}
	if resp.Response != nil {
		rr, ok := resp.Response.(*raft.InstallSnapshotResponse)
		if !ok {
			return unexpectedResponse(resp.Response)
		}
		out = encodeInstallSnapshotResponse(rr)
	}
	out.Error = errString(resp.Error)
	return stream.SendAndClose(out)
}

// snapshotReader is the io.Reader raft installs a snapshot from. It returns
// io.EOF only once exactly the declared size has arrived and the sender has
// closed the stream; a short stream is io.ErrUnexpectedEOF and extra data
// is an error, so raft never installs a snapshot of the wrong size.
type snapshotReader struct {
	stream    grpc.ClientStreamingServer[pb.InstallSnapshotChunk, pb.InstallSnapshotResponse]
	buf       []byte
	remaining int64 // bytes still expected from the stream (not counting buf)
	err       error
}

func (r *snapshotReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.fill()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *snapshotReader) fill() {
	msg, err := r.stream.Recv()
	switch {
	case err == io.EOF && r.remaining == 0:
		r.err = io.EOF
	case err == io.EOF:
		r.err = fmt.Errorf("transport: snapshot stream ended %d bytes short: %w", r.remaining, io.ErrUnexpectedEOF)
	case err != nil:
		r.err = err
	case msg.Meta != nil:
		r.err = errors.New("transport: snapshot metadata sent twice")
	case int64(len(msg.Data)) > r.remaining:
		r.err = fmt.Errorf("transport: snapshot data exceeds its declared size by %d bytes", int64(len(msg.Data))-r.remaining)
	default:
		r.buf = msg.Data
		r.remaining -= int64(len(msg.Data))
	}
}

// inboundStream lets CloseStreams end a pipeline stream being served.
type inboundStream struct{ cancel context.CancelFunc }

// AppendEntriesPipeline implements pb.RaftServer for t. A receiver goroutine reads
// requests and hands them to raft in order while this goroutine sends the
// answers in the same order, so the next request is already decoded and
// queued while raft works on the current one.
func (s *raftServer) AppendEntriesPipeline(stream grpc.BidiStreamingServer[pb.AppendEntriesRequest, pb.AppendEntriesResponse]) error {
	if err := s.t.checkTarget(stream.Context()); err != nil {
		return err
	}
	t := s.t
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	in := &inboundStream{cancel: cancel}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return errShutdownStatus
	}
	t.inbound[in] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.inbound, in)
		t.mu.Unlock()
	}()
	pending := make(chan (<-chan raft.RPCResponse), t.cfg.MaxInFlight+1)
	recvErr := make(chan error, 1)
	go func() {
		defer close(pending)
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			cmd := decodeAppendEntriesRequest(req)
			if err := checkSource(ctx, cmd.RPCHeader); err != nil {
				recvErr <- err
				return
			}
			t.metrics.served1(rpcPipelineAppend)
			respCh, err := t.dispatch(ctx, cmd, nil, isHeartbeat(cmd))
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case pending <- respCh:
			case <-ctx.Done():
				recvErr <- status.FromContextError(ctx.Err()).Err()
				return
			}
		}
	}()
	for {
		var respCh <-chan raft.RPCResponse
		select {
		case ch, ok := <-pending:
			if !ok {
				if err := <-recvErr; err != io.EOF {
					return err
				}
				return nil
			}
			respCh = ch
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-t.shutdown:
			return errShutdownStatus
		}
		resp, err := t.await(ctx, respCh)
		if err != nil {
			return err
		}
		out, err := appendEntriesAnswer(resp)
		if err != nil {
			return err
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}
