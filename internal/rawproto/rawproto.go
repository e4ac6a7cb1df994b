// Package rawproto puts bytes on a gRPC connection as they are, for tests
// that send malformed protobuf messages to a server.
package rawproto

import "google.golang.org/grpc/mem"

// Malformed is a protobuf message whose field 1 claims 127 bytes but has 1.
var Malformed = []byte{0x0a, 0x7f, 0x01}

// Codec sends a *[]byte as it is and receives into one. Use it per call:
// grpc.ForceCodecV2(rawproto.Codec{}).
type Codec struct{}

func (Codec) Name() string { return "proto" }

func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}
