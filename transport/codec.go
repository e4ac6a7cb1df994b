package transport

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// strictCodec is the server's protobuf codec. grpc-go turns every codec
// error into Internal ("failed to unmarshal"), which blames the server for a
// client's malformed bytes. So the codec keeps the decoding error aside,
// keyed by the message it was decoding into, and answers success; the
// interceptors that ServerOptions installs first take the error back and
// answer InvalidArgument before any handler sees the message. Unknown fields
// are dropped while decoding, so nothing a client adds travels further (a
// follower forwards the message it decoded).
type strictCodec struct {
	errs sync.Map // message pointer -> error
}

func (c *strictCodec) Name() string { return "proto" }

func (c *strictCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (c *strictCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return encoding.GetCodecV2("proto").Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	if f, ok := v.(fastDecoder); ok && f.DecodeFast(buf.ReadOnlyData()) {
		return nil
	}
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(buf.ReadOnlyData(), m); err != nil {
		proto.Reset(m)
		c.errs.Store(v, err)
	}
	return nil
}

// fastDecoder is a request with a hand-written decoder for its hot path,
// which declines (false, nothing changed) whatever it does not decode
// exactly as proto.Unmarshal with DiscardUnknown would.
type fastDecoder interface {
	DecodeFast(b []byte) bool
}

// take returns and forgets the decoding error of msg, as an InvalidArgument.
func (c *strictCodec) take(msg any) error {
	err, ok := c.errs.LoadAndDelete(msg)
	if !ok {
		return nil
	}
	return status.Errorf(codes.InvalidArgument, "malformed request: %v", err)
}

// serverOptions installs the codec and the interceptors that answer its
// decoding errors; they must run before any other interceptor.
func (c *strictCodec) serverOptions() []grpc.ServerOption {
	unary := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := c.take(req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &strictStream{ServerStream: ss, codec: c})
	}
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(c),
		grpc.ChainUnaryInterceptor(unary),
		grpc.ChainStreamInterceptor(stream),
	}
}

// strictStream answers a malformed streamed message as a receive error.
type strictStream struct {
	grpc.ServerStream
	codec *strictCodec
}

func (s *strictStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.codec.take(m)
}
