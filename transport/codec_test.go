package transport

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/blobgc/blobgc/internal/rawproto"
	pb "github.com/blobgc/blobgc/transport/transportpb"
)

func TestMalformedMessageIsInvalidArgument(t *testing.T) {
	n := newNode(t, Config{})
	cc, err := grpc.NewClient("passthrough:///"+string(n.addr), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for _, method := range []string{pb.Raft_AppendEntries_FullMethodName, pb.Raft_RequestVote_FullMethodName, "/grpc.health.v1.Health/Check"} {
		var out []byte
		err := cc.Invoke(ctx, method, &rawproto.Malformed, &out, grpc.ForceCodecV2(rawproto.Codec{}))
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: got %v, want InvalidArgument", method, err)
		}
	}

	// A streamed message is checked as it is received.
	st, err := cc.NewStream(ctx, &pb.Raft_ServiceDesc.Streams[0], pb.Raft_AppendEntriesPipeline_FullMethodName, grpc.ForceCodecV2(rawproto.Codec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(&rawproto.Malformed); err != nil {
		t.Fatal(err)
	}
	var out []byte
	if err := st.RecvMsg(&out); status.Code(err) != codes.InvalidArgument {
		t.Errorf("pipeline stream: got %v, want InvalidArgument", err)
	}
}

func TestUnknownFieldsAreDropped(t *testing.T) {
	c := &strictCodec{}
	b := protowire.AppendTag(nil, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, 7) // term
	b = protowire.AppendTag(b, 999, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("smuggled"))
	var m pb.RequestVoteRequest
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &m); err != nil {
		t.Fatal(err)
	}
	if err := c.take(&m); err != nil {
		t.Fatal(err)
	}
	if u := m.ProtoReflect().GetUnknown(); len(u) != 0 {
		t.Fatalf("unknown fields kept: %x", u)
	}
	if m.GetTerm() != 7 {
		t.Fatalf("known field lost: %v", &m)
	}
}
