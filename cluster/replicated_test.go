package cluster

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/blobgc/blobgc/fsm"
	"github.com/blobgc/blobgc/fsm/fsmpb"
)

func cmdLog(t *testing.T, index uint64, op any) *raft.Log {
	t.Helper()
	data, err := fsm.Encode(fsm.NewCommand(int64(index)*1000, 0, op))
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: data}
}

// The wrapper passes commands to the state machine, answers barrier and
// configuration entries itself, and tracks the index of every entry.
func TestReplicatedSkipsBarriersAndTracksIndex(t *testing.T) {
	f := fsm.New()
	r := newReplicated(f)
	h := make([]byte, 32)
	logs := []*raft.Log{
		{Index: 1, Type: raft.LogConfiguration},
		{Index: 2, Type: raft.LogCommand}, // term barrier
		cmdLog(t, 3, &fsmpb.RegisterBlobs{Hashes: h}),
		{Index: 4, Type: raft.LogCommand},
	}
	out := r.ApplyBatch(logs)
	if len(out) != 4 || out[0] != nil || out[1] != nil || out[3] != nil {
		t.Fatalf("responses %v", out)
	}
	res, ok := out[2].(*fsm.Result)
	if !ok || res.Err != nil || res.Index != 3 {
		t.Fatalf("command response %#v", out[2])
	}
	if r.Index() != 4 || f.AppliedIndex() != 3 {
		t.Fatalf("wrapper index %d, fsm index %d", r.Index(), f.AppliedIndex())
	}
	// All-command batches go straight through.
	out = r.ApplyBatch([]*raft.Log{cmdLog(t, 5, &fsmpb.Pin{Hashes: h}), cmdLog(t, 6, &fsmpb.Unpin{Hashes: h})})
	if len(out) != 2 || out[1].(*fsm.Result).Index != 6 || r.Index() != 6 {
		t.Fatalf("batch: %v, index %d", out, r.Index())
	}
	if res := r.Apply(&raft.Log{Index: 7, Type: raft.LogCommand}); res != nil || r.Index() != 7 {
		t.Fatalf("single barrier: %v, index %d", res, r.Index())
	}
}

func TestReplicatedWaitApplied(t *testing.T) {
	r := newReplicated(fsm.New())
	done := make(chan error, 1)
	go func() { done <- r.waitApplied(context.Background(), 3) }()
	r.ApplyBatch([]*raft.Log{{Index: 1, Type: raft.LogCommand}})
	select {
	case err := <-done:
		t.Fatalf("returned at index 1: %v", err)
	default:
	}
	r.ApplyBatch([]*raft.Log{{Index: 2, Type: raft.LogCommand}, {Index: 3, Type: raft.LogConfiguration}})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := r.waitApplied(ctx, 10); err == nil {
		t.Fatal("waited past an index never applied")
	}
}

// A restored snapshot resets the tracked index to the state machine's.
func TestReplicatedRestore(t *testing.T) {
	src := newReplicated(fsm.New())
	src.ApplyBatch([]*raft.Log{cmdLog(t, 5, &fsmpb.RegisterBlobs{Hashes: make([]byte, 32)})})
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	dst := newReplicated(fsm.New())
	if err := dst.Restore(sink); err != nil {
		t.Fatal(err)
	}
	if dst.Index() != 5 {
		t.Fatalf("index after restore %d", dst.Index())
	}
	_, d1 := src.f.Digest()
	_, d2 := dst.f.Digest()
	if d1 != d2 {
		t.Fatal("digest differs after restore")
	}
}

type memSink struct {
	buf []byte
	off int
}

func (m *memSink) Write(p []byte) (int, error) { m.buf = append(m.buf, p...); return len(p), nil }
func (m *memSink) Read(p []byte) (int, error) {
	if m.off >= len(m.buf) {
		return 0, io.EOF
	}
	n := copy(p, m.buf[m.off:])
	m.off += n
	return n, nil
}
func (m *memSink) Close() error  { return nil }
func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
