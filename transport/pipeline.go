package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	pb "github.com/blobgc/blobgc/transport/transportpb"
)

// errPipelineStalled is the error of every future still pending when the
// oldest request waited longer than Config.Timeout for its answer.
var errPipelineStalled = errors.New("transport: pipeline stalled: no response within timeout")

// AppendEntriesPipeline implements raft.Transport: one bidirectional stream
// per pipeline on the replication connection. At most MaxInFlight requests
// are unanswered; AppendEntries returns only while fewer are (back-pressure).
// MaxInFlight 1 returns raft.ErrPipelineReplicationNotSupported.
func (t *Transport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if t.cfg.MaxInFlight < 2 {
		return nil, raft.ErrPipelineReplicationNotSupported
	}
	pc, err := t.peer(id, target)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(withTarget(t.ctx, id))
	// Opening a stream waits for a ready connection and has no deadline of
	// its own; bound it so a dead peer cannot hang raft's replication.
	opening := time.AfterFunc(t.cfg.Timeout, cancel)
	stream, err := pc.dataCli.AppendEntriesPipeline(ctx)
	if !opening.Stop() && err == nil {
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		return nil, t.clientError(target, err)
	}
	p := &pipeline{
		t:        t,
		id:       id,
		target:   target,
		stream:   stream,
		cancel:   cancel,
		room:     make(chan struct{}, t.cfg.MaxInFlight-1),
		inflight: make(chan *appendFuture, t.cfg.MaxInFlight),
		doneCh:   make(chan raft.AppendFuture, t.cfg.MaxInFlight),
		shutdown: make(chan struct{}),
	}
	p.watchdog = time.AfterFunc(time.Hour, p.stalled)
	p.watchdog.Stop()

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		cancel()
		return nil, ErrTransportShutdown
	}
	t.pipelines[p] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	go p.receive()
	return p, nil
}

type pipeline struct {
	t      *Transport
	id     raft.ServerID
	target raft.ServerAddress
	stream grpc.BidiStreamingClient[pb.AppendEntriesRequest, pb.AppendEntriesResponse]
	cancel context.CancelFunc
	// room holds a token for each sent, unanswered request but the newest:
	// a sender waits after its send while MaxInFlight are unanswered.
	room     chan struct{}
	inflight chan *appendFuture // sent, in order, not yet answered
	doneCh   chan raft.AppendFuture
	shutdown chan struct{}

	// sendMu serialises Send and the hand-off to inflight, and makes Close's
	// final drain see every future that was ever handed off.
	sendMu sync.Mutex
	closed bool

	errMu sync.Mutex
	err   error // first stream error; every later request fails with it

	watchdog *time.Timer
	armed    atomic.Bool
}

func (p *pipeline) failure() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

// fail records the first error and tears the stream down.
func (p *pipeline) fail(err error) {
	p.errMu.Lock()
	first := p.err == nil
	if first {
		p.err = err
	}
	p.errMu.Unlock()
	p.cancel()
	if first && !errors.Is(err, ErrTransportShutdown) {
		p.t.logger.Warn("pipeline to peer failed", "peer", p.target, "error", err)
	}
}

func (p *pipeline) stalled() {
	if p.armed.Load() {
		p.fail(errPipelineStalled)
	}
}

// AppendEntries implements raft.AppendPipeline. Like NetworkTransport's
// pipeline it sends first and then waits until fewer than MaxInFlight
// requests are unanswered: raft builds its next request only after that, so
// the request carries every entry that arrived meanwhile (blocking before
// the send would ship a batch built too early). Like raft, callers use one
// goroutine; concurrent callers could exceed MaxInFlight by their number.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	f := &appendFuture{start: time.Now(), args: args, resp: resp, done: make(chan struct{}), parts: 1}
	chunks, err := splitAppend(args, p.t.cfg.MaxMessageSize)
	if err != nil {
		return nil, err
	}
	if chunks == nil {
		chunks = []*raft.AppendEntriesRequest{args}
	} else {
		p.t.metrics.splits.Inc()
	}
	f.parts = len(chunks)
	if err := p.send(f, chunks); err != nil {
		return nil, err
	}
	select {
	case p.room <- struct{}{}:
		return f, nil
	case <-p.shutdown:
		return nil, raft.ErrPipelineShutdown
	}
}

// send puts f's messages on the stream and hands f to the receiver.
func (p *pipeline) send(f *appendFuture, chunks []*raft.AppendEntriesRequest) error {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if p.closed {
		return raft.ErrPipelineShutdown
	}
	if err := p.failure(); err != nil {
		return err
	}
	for _, chunk := range chunks {
		if err := p.stream.Send(encodeAppendEntriesRequest(chunk)); err != nil {
			// Send reports io.EOF when the stream is gone; the receiver
			// sees the real status.
			err = fmt.Errorf("transport: pipeline send: %w", p.t.clientError(p.target, err))
			p.fail(err)
			return err
		}
	}
	p.inflight <- f // never blocks: at most MaxInFlight are unanswered
	return nil
}

// receive completes futures in order as answers arrive, and after a stream
// error completes the rest with that error. It exits on Close.
func (p *pipeline) receive() {
	defer p.t.wg.Done()
	defer p.watchdog.Stop()
	for {
		select {
		case f := <-p.inflight:
			err := p.await(f)
			p.t.metrics.observe(rpcPipelineAppend, f.start, err)
			f.respond(err)
			// Free the room its sender took (or is about to take).
			select {
			case <-p.room:
			case <-p.shutdown:
				p.drain()
				return
			}
			select {
			case p.doneCh <- f:
			case <-p.shutdown:
				p.drain()
				return
			}
		case <-p.shutdown:
			p.drain()
			return
		}
	}
}

// await reads the answers to f's messages (more than one if its batch was
// split). The result is the first failed part's, else the last part's.
func (p *pipeline) await(f *appendFuture) error {
	var result error
	failed := false
	for range f.parts {
		if err := p.failure(); err != nil {
			return err
		}
		p.armed.Store(true)
		p.watchdog.Reset(p.t.cfg.Timeout)
		msg, err := p.stream.Recv()
		p.armed.Store(false)
		p.watchdog.Stop()
		if err != nil {
			p.fail(fmt.Errorf("transport: pipeline receive: %w", p.t.clientError(p.target, err)))
			return p.failure()
		}
		if failed {
			continue // keep the stream in step: every part is answered
		}
		decodeAppendEntriesResponse(msg, f.resp)
		result = remoteError(msg.Error)
		failed = result != nil || !f.resp.Success
	}
	if result == nil {
		p.t.acks.record(p.id, f.args, f.resp, f.start)
	}
	return result
}

// drain completes the futures that will never get an answer.
func (p *pipeline) drain() {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	for {
		select {
		case f := <-p.inflight:
			f.respond(raft.ErrPipelineShutdown)
		default:
			return
		}
	}
}

// Consumer implements raft.AppendPipeline.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.doneCh }

// Close implements raft.AppendPipeline. It is idempotent and does not wait
// for the stream: cancelling it unblocks any Send or Recv in progress.
func (p *pipeline) Close() error {
	p.cancel()
	p.sendMu.Lock()
	if p.closed {
		p.sendMu.Unlock()
		return nil
	}
	p.closed = true
	close(p.shutdown)
	p.sendMu.Unlock()

	p.t.mu.Lock()
	delete(p.t.pipelines, p)
	p.t.mu.Unlock()
	return nil
}

// appendFuture implements raft.AppendFuture. The response is always
// non-nil: on error it is left as raft passed it (zeroed), which raft's
// pipeline decoder reads as a failure.
type appendFuture struct {
	start time.Time
	args  *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	err   error
	done  chan struct{}
	parts int // stream messages the request was split into
}

func (f *appendFuture) respond(err error) {
	f.err = err
	close(f.done)
}

func (f *appendFuture) Error() error {
	<-f.done
	return f.err
}

func (f *appendFuture) Start() time.Time                      { return f.start }
func (f *appendFuture) Request() *raft.AppendEntriesRequest   { return f.args }
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }
