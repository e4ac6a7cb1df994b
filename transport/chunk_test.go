package transport

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	pb "github.com/blobgc/blobgc/transport/transportpb"
)

func bigBatch(n, size int) raft.AppendEntriesRequest {
	args := makeAppendRPC()
	args.Entries = nil
	args.LeaderCommitIndex = 1000
	for i := range n {
		args.Entries = append(args.Entries, &raft.Log{
			Index: uint64(101 + i), Term: uint64(4 + i/3), Type: raft.LogCommand,
			Data: []byte(fmt.Sprintf("%0*d", size, i)),
		})
	}
	return args
}

// checkChunks verifies that chunks carry args' entries in order, each chunk
// points at the previous one's last entry and fits in limit, and only the
// last chunk carries the leader's full commit index.
func checkChunks(t *testing.T, args *raft.AppendEntriesRequest, chunks []*raft.AppendEntriesRequest, limit int) {
	t.Helper()
	var got []*raft.Log
	prevIndex, prevTerm := args.PrevLogEntry, args.PrevLogTerm
	for i, c := range chunks {
		if c.PrevLogEntry != prevIndex || c.PrevLogTerm != prevTerm {
			t.Fatalf("chunk %d: prev (%d,%d), want (%d,%d)", i, c.PrevLogEntry, c.PrevLogTerm, prevIndex, prevTerm)
		}
		if len(c.Entries) == 0 {
			t.Fatalf("chunk %d is empty", i)
		}
		if size := encodeAppendEntriesRequest(c); protoSize(size) > limit {
			t.Fatalf("chunk %d is %d bytes, over %d", i, protoSize(size), limit)
		}
		last := c.Entries[len(c.Entries)-1]
		wantCommit := args.LeaderCommitIndex
		if i < len(chunks)-1 {
			wantCommit = min(wantCommit, last.Index)
		}
		if c.LeaderCommitIndex != wantCommit {
			t.Fatalf("chunk %d: commit %d, want %d", i, c.LeaderCommitIndex, wantCommit)
		}
		if c.Term != args.Term || string(c.Addr) != string(args.Addr) {
			t.Fatalf("chunk %d lost the header", i)
		}
		got = append(got, c.Entries...)
		prevIndex, prevTerm = last.Index, last.Term
	}
	sameEntries(t, args.Entries, got)
}

// sameEntries compares logs without go-cmp, which is slow on big payloads.
func sameEntries(t *testing.T, want, got []*raft.Log) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.Index != g.Index || w.Term != g.Term || w.Type != g.Type || !bytes.Equal(w.Data, g.Data) ||
			!bytes.Equal(w.Extensions, g.Extensions) || !w.AppendedAt.Equal(g.AppendedAt) {
			t.Fatalf("entry %d differs: index %d/%d term %d/%d", i, g.Index, w.Index, g.Term, w.Term)
		}
	}
}

func TestSplitAppend(t *testing.T) {
	const limit = 64 << 10
	small := bigBatch(10, 100)
	if chunks, err := splitAppend(&small, limit); err != nil || chunks != nil {
		t.Fatalf("small batch split: %v %v", len(chunks), err)
	}
	for _, size := range []int{1000, 10 << 10, 30 << 10, limit - requestOverhead - entryOverhead - 64} {
		args := bigBatch(64, size)
		chunks, err := splitAppend(&args, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(chunks) < 2 {
			t.Fatalf("entry size %d: %d chunks", size, len(chunks))
		}
		checkChunks(t, &args, chunks, limit)
	}
	tooBig := bigBatch(1, limit)
	if _, err := splitAppend(&tooBig, limit); err == nil {
		t.Fatal("an entry over the limit was accepted")
	}
}

// follower is a fake raft log for AppendEntries: it accepts a request only
// if it continues the log, as raft does.
type follower struct {
	mu      sync.Mutex
	log     []*raft.Log
	commits []uint64
}

func (f *follower) handle(rpc raft.RPC) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	req := rpc.Command.(*raft.AppendEntriesRequest)
	var lastIndex, lastTerm uint64 = 100, 4
	if n := len(f.log); n > 0 {
		lastIndex, lastTerm = f.log[n-1].Index, f.log[n-1].Term
	}
	if req.PrevLogEntry != lastIndex || req.PrevLogTerm != lastTerm {
		return &raft.AppendEntriesResponse{Term: req.Term, LastLog: lastIndex}, nil
	}
	f.log = append(f.log, req.Entries...)
	f.commits = append(f.commits, req.LeaderCommitIndex)
	return &raft.AppendEntriesResponse{Term: req.Term, LastLog: f.log[len(f.log)-1].Index, Success: true}, nil
}

func TestTransport_OversizedBatchIsSplit(t *testing.T) {
	const limit = 1 << 20
	for _, pipelined := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelined=%v", pipelined), func(t *testing.T) {
			n1 := newNode(t, Config{MaxMessageSize: limit})
			n2 := newNode(t, Config{MaxMessageSize: limit})
			fol := &follower{}
			respondAll(t, n1.trans.Consumer(), fol.handle)
			args := bigBatch(20, 300<<10) // 6 MB in 20 entries
			var resp raft.AppendEntriesResponse
			if pipelined {
				p, err := n2.trans.AppendEntriesPipeline("id1", n1.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				if _, err := p.AppendEntries(&args, &resp); err != nil {
					t.Fatal(err)
				}
				f := <-p.Consumer()
				if err := f.Error(); err != nil {
					t.Fatal(err)
				}
				// The stream stays in step: a following small request works.
				next := makeAppendRPC()
				next.PrevLogEntry, next.PrevLogTerm = 120, args.Entries[19].Term
				next.Entries = []*raft.Log{{Index: 121, Term: 10}}
				if _, err := p.AppendEntries(&next, new(raft.AppendEntriesResponse)); err != nil {
					t.Fatal(err)
				}
				if f := <-p.Consumer(); f.Error() != nil || !f.Response().Success {
					t.Fatalf("request after a split batch: %v %+v", f.Error(), f.Response())
				}
			} else if err := n2.trans.AppendEntries("id1", n1.addr, &args, &resp); err != nil {
				t.Fatal(err)
			}
			if !resp.Success || resp.LastLog != 120 {
				t.Fatalf("response %+v", resp)
			}
			fol.mu.Lock()
			defer fol.mu.Unlock()
			sameEntries(t, args.Entries, fol.log[:20])
			batch := len(fol.commits)
			if pipelined {
				batch-- // the small request after the batch
			}
			if batch < 6 {
				t.Fatalf("batch sent in %d requests", batch)
			}
			for i, c := range fol.commits[:batch-1] {
				if c > fol.log[len(fol.log)-1].Index {
					t.Fatalf("request %d let the follower commit %d past its log", i, c)
				}
			}
		})
	}
}

func TestTransport_SplitStopsAtFirstRejection(t *testing.T) {
	const limit = 1 << 20
	n1 := newNode(t, Config{MaxMessageSize: limit})
	n2 := newNode(t, Config{MaxMessageSize: limit})
	var calls int
	respondAll(t, n1.trans.Consumer(), func(rpc raft.RPC) (any, error) {
		calls++
		return &raft.AppendEntriesResponse{Term: 4, LastLog: 50}, nil // log mismatch
	})
	args := bigBatch(20, 300<<10)
	var resp raft.AppendEntriesResponse
	if err := n2.trans.AppendEntries("id1", n1.addr, &args, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Success || resp.LastLog != 50 {
		t.Fatalf("response %+v", resp)
	}
	if calls != 1 {
		t.Fatalf("%d requests sent after the first was rejected", calls)
	}
}

func protoSize(m *pb.AppendEntriesRequest) int { return proto.Size(m) }
