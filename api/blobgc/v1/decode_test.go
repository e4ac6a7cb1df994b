package blobgcv1

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// FuzzHashesRequestDecodeFast: wherever DecodeFast decodes, proto.Unmarshal
// (DiscardUnknown) succeeds with an equal message; where it declines, it
// changed nothing.
func FuzzHashesRequestDecodeFast(f *testing.F) {
	hashes := func(n int) *HashesRequest {
		r := &HashesRequest{}
		for i := range n {
			r.Hashes = append(r.Hashes, bytes.Repeat([]byte{byte(i)}, 32))
		}
		return r
	}
	for _, m := range []*HashesRequest{{}, hashes(1), hashes(3), {Hashes: [][]byte{{}, {1, 2}, nil}}} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("abc"))
	b = protowire.AppendTag(b, 2, protowire.VarintType) // unknown: dropped
	b = protowire.AppendVarint(b, 7)
	b = protowire.AppendTag(b, 9, protowire.StartGroupType) // unknown group
	b = protowire.AppendTag(b, 9, protowire.EndGroupType)
	f.Add(b)
	f.Add(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5)) // hashes as a varint
	f.Add([]byte{0x0a, 0x05, 1})                                                        // truncated
	f.Add([]byte{0x00})                                                                 // field 0
	f.Fuzz(func(t *testing.T, b []byte) { checkDecodeFast(t, b, &HashesRequest{}, &HashesRequest{}) })
}

// FuzzReportRequestDecodeFast: as for HashesRequest.
func FuzzReportRequestDecodeFast(f *testing.F) {
	h := bytes.Repeat([]byte{7}, 32)
	for _, m := range []*ReportRequest{
		{},
		{NodeId: "vm-1", Kind: ReportKind_REPORT_KIND_FULL, Seq: 3, Active: [][]byte{h, h}, Pinned: [][]byte{h}},
		{NodeId: "vm-2", Kind: ReportKind_REPORT_KIND_DELTA, Seq: 1 << 40, Active: [][]byte{h}, RemovedActive: [][]byte{h}, RemovedPinned: [][]byte{{}}},
		{NodeId: "vm-3", Kind: ReportKind_REPORT_KIND_FULL_CHUNK, Active: [][]byte{h}, Chunk: &Chunk{ReportId: 5, Index: 1, Last: true}},
		{Kind: ReportKind(-3)},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x02, 0xff, 0xfe})                                                     // node_id not UTF-8
	f.Add(protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 1<<40))   // kind beyond int32
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), []byte{1})) // seq as bytes
	f.Add(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))      // unknown field
	f.Fuzz(func(t *testing.T, b []byte) { checkDecodeFast(t, b, &ReportRequest{}, &ReportRequest{}) })
}

type fastMessage interface {
	proto.Message
	DecodeFast([]byte) bool
}

// checkDecodeFast: wherever DecodeFast decodes b, proto.Unmarshal
// (DiscardUnknown) succeeds with an equal message; where it declines, the
// message is unchanged. Decoded hashes are capped, so no append overwrites
// another.
func checkDecodeFast(t *testing.T, b []byte, fast, want fastMessage) {
	t.Helper()
	ok := fast.DecodeFast(b)
	err := proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, want)
	if !ok {
		if !proto.Equal(fast, want.ProtoReflect().Type().New().Interface()) {
			t.Fatalf("declined but changed the message: %v", fast)
		}
		return
	}
	if err != nil {
		t.Fatalf("DecodeFast accepted what proto.Unmarshal refuses (%v)", err)
	}
	if !proto.Equal(fast, want) {
		t.Fatalf("DecodeFast = %v, proto.Unmarshal = %v", fast, want)
	}
	var lists [][][]byte
	switch m := fast.(type) {
	case *HashesRequest:
		lists = [][][]byte{m.Hashes}
	case *ReportRequest:
		lists = [][][]byte{m.Active, m.Pinned, m.RemovedActive, m.RemovedPinned}
	}
	for _, l := range lists {
		for i, h := range l {
			if cap(h) != len(h) {
				t.Fatalf("hash %d: cap %d > len %d: an append would overwrite the next", i, cap(h), len(h))
			}
		}
	}
}

func TestHashesRequestDecodeFastDeclinesOtherWireTypes(t *testing.T) {
	b := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5)
	var m HashesRequest
	if m.DecodeFast(b) {
		t.Fatal("decoded hashes sent as a varint; proto.Unmarshal keeps them as an unknown field")
	}
}

// BenchmarkHashesRequestDecode: a RegisterBlobs of 1,000 hashes.
func BenchmarkHashesRequestDecode(b *testing.B) {
	m := &HashesRequest{}
	for i := range 1000 {
		m.Hashes = append(m.Hashes, bytes.Repeat([]byte{byte(i)}, 32))
	}
	data, _ := proto.Marshal(m)
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var r HashesRequest
			if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var r HashesRequest
			if !r.DecodeFast(data) {
				b.Fatal("declined")
			}
		}
	})
}
