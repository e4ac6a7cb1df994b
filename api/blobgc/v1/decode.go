package blobgcv1

import "google.golang.org/protobuf/encoding/protowire"

// DecodeFast decodes b into m, which must be empty, as
// proto.UnmarshalOptions{DiscardUnknown: true} would, but with one
// allocation for all the hashes where proto.Unmarshal makes one per hash: a
// tenth of a leader's CPU under bulk registration. It returns false, having
// changed nothing, for anything it does not decode exactly like
// proto.Unmarshal (malformed input, a hashes field of another wire type);
// the caller then uses proto.Unmarshal, which gives the error or result.
func (m *HashesRequest) DecodeFast(b []byte) bool {
	n, size := 0, 0
	ok := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) bool {
		if num != 1 {
			return true
		}
		if typ != protowire.BytesType {
			return false
		}
		n, size = n+1, size+len(v)
		return true
	})
	if !ok {
		return false
	}
	buf := make([]byte, 0, size)
	hs := make([][]byte, 0, n)
	eachField(b, func(num protowire.Number, _ protowire.Type, v []byte) bool {
		if num == 1 {
			start := len(buf)
			buf = append(buf, v...)
			hs = append(hs, buf[start:len(buf):len(buf)]) // capped: an append must not reach the next hash
		}
		return true
	})
	m.Hashes = hs
	return true
}

// eachField calls fn with each field of the wire-format message b (v: a
// length-delimited field's contents, nil for other types) until fn returns
// false; it reports whether b was well formed and fn never refused.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber { // ConsumeTag checks only the low bound
			return false
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 || !fn(num, typ, v) {
			return false
		}
		b = b[n:]
	}
	return true
}
