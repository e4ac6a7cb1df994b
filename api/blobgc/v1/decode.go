package blobgcv1

import (
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// The server decodes the requests that carry many hashes with these instead
// of proto.Unmarshal, which allocates each hash on its own: a tenth of a
// leader's CPU under bulk registration, the largest source of allocations
// under reports. Each DecodeFast decodes b into its message, which must be
// empty, exactly as proto.UnmarshalOptions{DiscardUnknown: true} would, with
// one allocation for all the hashes. It returns false, having changed
// nothing, for anything it does not decode that way (malformed input, a
// known field of another wire type, a FULL_CHUNK report's chunk); the
// caller then uses proto.Unmarshal, which gives the error or the result.

// DecodeFast decodes a RegisterBlobs, Pin, Unpin, Claim or ConfirmCollected
// request.
func (m *HashesRequest) DecodeFast(b []byte) bool {
	lists, ok := decodeHashLists(b, []protowire.Number{1}, func(protowire.Number, protowire.Type, []byte) bool {
		return true // no other fields: unknown, dropped
	})
	if ok {
		m.Hashes = lists[0]
	}
	return ok
}

// DecodeFast decodes a report without a chunk.
func (m *ReportRequest) DecodeFast(b []byte) bool {
	var r ReportRequest
	lists, ok := decodeHashLists(b, []protowire.Number{4, 5, 6, 7}, func(num protowire.Number, typ protowire.Type, v []byte) bool {
		switch {
		case num == 1:
			if typ != protowire.BytesType || !utf8.Valid(v) {
				return false
			}
			r.NodeId = string(v)
		case num == 2 || num == 3:
			if typ != protowire.VarintType {
				return false
			}
			x, _ := protowire.ConsumeVarint(v)
			if num == 2 {
				r.Kind = ReportKind(int32(x))
			} else {
				r.Seq = x
			}
		case num == 8:
			return false // a chunk: proto.Unmarshal decodes the nested message
		}
		return true // unknown: dropped
	})
	if !ok {
		return false
	}
	m.NodeId, m.Kind, m.Seq = r.NodeId, r.Kind, r.Seq
	m.Active, m.Pinned, m.RemovedActive, m.RemovedPinned = lists[0], lists[1], lists[2], lists[3]
	return true
}

// decodeHashLists decodes the repeated bytes fields numbered hashes[i] into
// lists[i], all sharing one buffer. Every other field goes to other with
// its raw value (a varint's bytes, a length-delimited field's contents),
// which returns false to decline. It reports false for malformed input, a
// hash field of another wire type, or if other declined.
func decodeHashLists(b []byte, hashes []protowire.Number, other func(protowire.Number, protowire.Type, []byte) bool) (lists [4][][]byte, ok bool) {
	list := func(num protowire.Number) int { return slices.Index(hashes, num) }
	var count [4]int
	size := 0
	if !eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) bool {
		i := list(num)
		if i < 0 {
			return other(num, typ, v)
		}
		if typ != protowire.BytesType {
			return false
		}
		count[i]++
		size += len(v)
		return true
	}) {
		return lists, false
	}
	buf := make([]byte, 0, size)
	for i, n := range count {
		if n > 0 {
			lists[i] = make([][]byte, 0, n)
		}
	}
	eachField(b, func(num protowire.Number, _ protowire.Type, v []byte) bool {
		if i := list(num); i >= 0 {
			start := len(buf)
			buf = append(buf, v...)
			lists[i] = append(lists[i], buf[start:len(buf):len(buf)]) // capped: an append must not reach the next hash
		}
		return true
	})
	return lists, true
}

// eachField calls fn with each field of the wire-format message b (v: a
// length-delimited field's contents, a varint's bytes, nil otherwise) until
// fn returns false; it reports whether b was well formed and fn never
// refused.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber { // ConsumeTag checks only the low bound
			return false
		}
		b = b[n:]
		var v []byte
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n >= 0 {
				v = b[:n]
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 || !fn(num, typ, v) {
			return false
		}
		b = b[n:]
	}
	return true
}
