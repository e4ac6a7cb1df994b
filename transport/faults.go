package transport

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// ErrFaultInjected is wrapped by every error a Faults-wrapped transport
// returns instead of making a call.
var ErrFaultInjected = errors.New("transport: fault injected")

// Faults is a table of network faults between raft server addresses, shared
// by every transport of a test cluster that is wrapped with Wrap. A fault
// applies to the calls a wrapped transport makes, keyed by (from, to) =
// (its LocalAddr, the target). All methods are safe for concurrent use and
// take effect for calls that start afterwards (and for calls hung in a
// black hole, which re-check on every change).
type Faults struct {
	mu       sync.Mutex
	links    map[link]linkFault
	isolated map[raft.ServerAddress]bool
	holes    map[raft.ServerAddress]bool
	changed  chan struct{} // closed and replaced on every change
}

type link struct{ from, to raft.ServerAddress }

type linkFault struct {
	cut   bool
	delay time.Duration
	drop  float64
}

// NewFaults returns an empty fault table: every call goes through.
func NewFaults() *Faults {
	return &Faults{
		links:    make(map[link]linkFault),
		isolated: make(map[raft.ServerAddress]bool),
		holes:    make(map[raft.ServerAddress]bool),
		changed:  make(chan struct{}),
	}
}

func (f *Faults) update(fn func()) {
	f.mu.Lock()
	fn()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// Partition cuts a and b apart in both directions: calls fail at once.
func (f *Faults) Partition(a, b raft.ServerAddress) {
	f.update(func() {
		f.setCut(a, b)
		f.setCut(b, a)
	})
}

// PartitionOneWay fails the calls from sends to, while to's calls to from
// still go through.
func (f *Faults) PartitionOneWay(from, to raft.ServerAddress) {
	f.update(func() { f.setCut(from, to) })
}

func (f *Faults) setCut(from, to raft.ServerAddress) {
	l := f.links[link{from, to}]
	l.cut = true
	f.links[link{from, to}] = l
}

// Isolate cuts a off from every other address, both ways.
func (f *Faults) Isolate(a raft.ServerAddress) {
	f.update(func() { f.isolated[a] = true })
}

// BlackHole makes every call to or from a hang, as if its packets vanished,
// until the call's deadline (the wrapped Transport's HeartbeatTimeout or
// Timeout) or until a heal, whichever comes first; then it fails.
func (f *Faults) BlackHole(a raft.ServerAddress) {
	f.update(func() { f.holes[a] = true })
}

// SetDelay delays every call from sends to by d before it is made (0 removes
// the delay).
func (f *Faults) SetDelay(from, to raft.ServerAddress, d time.Duration) {
	f.update(func() {
		l := f.links[link{from, to}]
		l.delay = d
		f.links[link{from, to}] = l
	})
}

// SetDropRate fails each call from sends to with probability p (0 to 1).
func (f *Faults) SetDropRate(from, to raft.ServerAddress, p float64) {
	f.update(func() {
		l := f.links[link{from, to}]
		l.drop = p
		f.links[link{from, to}] = l
	})
}

// Heal removes every fault.
func (f *Faults) Heal() {
	f.update(func() {
		clear(f.links)
		clear(f.isolated)
		clear(f.holes)
	})
}

// verdict is what happens to one call.
type verdict struct {
	fail  error
	hang  bool
	delay time.Duration
}

func (f *Faults) judge(from, to raft.ServerAddress) (verdict, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holes[from] || f.holes[to] {
		return verdict{hang: true}, f.changed
	}
	if from != to && (f.isolated[from] || f.isolated[to]) {
		return verdict{fail: fmt.Errorf("%w: %s is isolated from %s", ErrFaultInjected, from, to)}, f.changed
	}
	l := f.links[link{from, to}]
	if l.cut {
		return verdict{fail: fmt.Errorf("%w: %s is partitioned from %s", ErrFaultInjected, from, to)}, f.changed
	}
	if l.drop > 0 && rand.Float64() < l.drop {
		return verdict{fail: fmt.Errorf("%w: call from %s to %s dropped", ErrFaultInjected, from, to)}, f.changed
	}
	return verdict{delay: l.delay}, f.changed
}

// Wrap returns t with the fault table applied to its outbound calls. The
// result implements raft.WithClose and raft.WithPreVote exactly when t does.
func (f *Faults) Wrap(t raft.Transport) raft.Transport {
	ft := &faultyTransport{Transport: t, faults: f, closed: make(chan struct{}),
		shortDeadline: DefaultHeartbeatTimeout, longDeadline: DefaultTimeout}
	if gt, ok := t.(*Transport); ok {
		ft.shortDeadline, ft.longDeadline = gt.cfg.HeartbeatTimeout, gt.cfg.Timeout
	}
	if _, ok := t.(raft.WithPreVote); ok {
		return &faultyPreVoteTransport{ft}
	}
	return ft
}

type faultyTransport struct {
	raft.Transport
	faults        *Faults
	shortDeadline time.Duration
	longDeadline  time.Duration
	closeOnce     sync.Once
	closed        chan struct{}
}

type faultyPreVoteTransport struct{ *faultyTransport }

var (
	_ raft.WithClose   = (*faultyTransport)(nil)
	_ raft.WithPreVote = (*faultyPreVoteTransport)(nil)
)

// gate applies the faults to one call from this transport to target with
// the given deadline; a nil result means the call may proceed.
func (t *faultyTransport) gate(target raft.ServerAddress, deadline time.Duration) error {
	from := t.LocalAddr()
	var expire <-chan time.Time
	for {
		v, changed := t.faults.judge(from, target)
		switch {
		case v.fail != nil:
			return v.fail
		case v.hang:
			if expire == nil {
				timer := time.NewTimer(deadline)
				defer timer.Stop()
				expire = timer.C
			}
			select {
			case <-changed:
				continue // re-judge: the hole may be gone
			case <-expire:
				return fmt.Errorf("%w: call from %s to %s black-holed until its deadline", ErrFaultInjected, from, target)
			case <-t.closed:
				return ErrTransportShutdown
			}
		case v.delay > 0:
			timer := time.NewTimer(v.delay)
			select {
			case <-timer.C:
			case <-t.closed:
				timer.Stop()
				return ErrTransportShutdown
			}
		}
		return nil
	}
}

func (t *faultyTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	d := t.longDeadline
	if isHeartbeat(args) {
		d = t.shortDeadline
	}
	if err := t.gate(target, d); err != nil {
		return err
	}
	return t.Transport.AppendEntries(id, target, args, resp)
}

func (t *faultyTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if err := t.gate(target, t.shortDeadline); err != nil {
		return err
	}
	return t.Transport.RequestVote(id, target, args, resp)
}

func (t *faultyTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	if err := t.gate(target, t.shortDeadline); err != nil {
		return err
	}
	return t.Transport.TimeoutNow(id, target, args, resp)
}

func (t *faultyTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if err := t.gate(target, t.longDeadline); err != nil {
		return err
	}
	return t.Transport.InstallSnapshot(id, target, args, resp, data)
}

func (t *faultyTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if err := t.gate(target, t.longDeadline); err != nil {
		return nil, err
	}
	p, err := t.Transport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &faultyPipeline{AppendPipeline: p, t: t, target: target}, nil
}

// Close closes the wrapped transport if it has a Close, and releases calls
// hung in the fault layer.
func (t *faultyTransport) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	if c, ok := t.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

func (t *faultyPreVoteTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if err := t.gate(target, t.shortDeadline); err != nil {
		return err
	}
	return t.Transport.(raft.WithPreVote).RequestPreVote(id, target, args, resp)
}

// faultyPipeline applies the faults to each pipelined request; a failed
// request makes raft drop the pipeline and fall back to plain calls.
type faultyPipeline struct {
	raft.AppendPipeline
	t      *faultyTransport
	target raft.ServerAddress
}

func (p *faultyPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if err := p.t.gate(p.target, p.t.longDeadline); err != nil {
		return nil, err
	}
	return p.AppendPipeline.AppendEntries(args, resp)
}
