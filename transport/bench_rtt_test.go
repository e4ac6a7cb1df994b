package transport

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// transportPair returns a sender and a receiver of the given kind whose
// receiver answers every AppendEntries at once.
func transportPair(b *testing.B, kind string) (raft.Transport, raft.ServerAddress) {
	var recv, send raft.Transport
	for i := range 2 {
		var tr raft.Transport
		switch kind {
		case "grpc":
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			tr = newNodeOn(b, lis, Config{}, nil).trans
		case "tcp":
			nt, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = nt.Close() })
			tr = nt
		}
		if i == 0 {
			recv = tr
		} else {
			send = tr
		}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		resp := &raft.AppendEntriesResponse{Term: 1, Success: true}
		for {
			select {
			case rpc := <-recv.Consumer():
				rpc.Respond(resp, nil)
			case <-done:
				return
			}
		}
	}()
	b.Cleanup(func() { close(done); <-stopped })
	return send, recv.LocalAddr()
}

// BenchmarkPipelineRoundTrip measures pipelined AppendEntries (16 entries
// of 100 bytes) with an instant answer, isolating the transport from raft.
func BenchmarkPipelineRoundTrip(b *testing.B) {
	entries := make([]*raft.Log, 16)
	for i := range entries {
		entries[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: make([]byte, 100)}
	}
	args := &raft.AppendEntriesRequest{Term: 1, RPCHeader: raft.RPCHeader{Addr: []byte("x")}, PrevLogEntry: 1, Entries: entries}
	for _, kind := range []string{"grpc", "tcp"} {
		b.Run("transport="+kind, func(b *testing.B) {
			send, target := transportPair(b, kind)
			p, err := send.AppendEntriesPipeline("r", target)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			consumed := make(chan struct{})
			go func() {
				defer close(consumed)
				for range b.N {
					f := <-p.Consumer()
					if f.Error() != nil {
						b.Error(f.Error())
						return
					}
				}
			}()
			b.ResetTimer()
			for range b.N {
				if _, err := p.AppendEntries(args, new(raft.AppendEntriesResponse)); err != nil {
					b.Fatal(err)
				}
			}
			<-consumed
		})
		b.Run("unary/transport="+kind, func(b *testing.B) {
			send, target := transportPair(b, kind)
			b.ResetTimer()
			for range b.N {
				if err := send.AppendEntries("r", target, args, new(raft.AppendEntriesResponse)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
