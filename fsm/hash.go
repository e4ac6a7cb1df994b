package fsm

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"unsafe"
)

// HashSize is the length of a content hash in bytes.
const HashSize = 32

// Hash is a content hash (e.g. SHA-256 of a blob).
type Hash [HashSize]byte

// String returns the 64 lowercase hex characters of h.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Compare orders hashes bytewise; it is the order of every list the FSM returns.
func (h Hash) Compare(o Hash) int { return cmpHash(h, o) }

// ParseHash parses 64 hex characters (either case).
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*HashSize {
		return h, &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("hash must be %d hex characters, got %d", 2*HashSize, len(s))}
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("hash is not hex: %v", err)}
	}
	return h, nil
}

// HashFromBytes converts a 32-byte slice.
func HashFromBytes(b []byte) (Hash, error) {
	var h Hash
	if len(b) != HashSize {
		return h, &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("hash must be %d bytes, got %d", HashSize, len(b))}
	}
	copy(h[:], b)
	return h, nil
}

// PackHashes concatenates hashes into the packed form used by fsmpb fields.
func PackHashes(hs []Hash) []byte {
	out := make([]byte, 0, len(hs)*HashSize)
	for i := range hs {
		out = append(out, hs[i][:]...)
	}
	return out
}

// UnpackHashes splits a packed field; it fails if the length is not a
// multiple of HashSize.
func UnpackHashes(b []byte) ([]Hash, error) {
	if len(b)%HashSize != 0 {
		return nil, &Error{Code: CodeInvalidArgument, Message: fmt.Sprintf("packed hashes: length %d is not a multiple of %d", len(b), HashSize)}
	}
	out := make([]Hash, len(b)/HashSize)
	for i := range out {
		copy(out[i][:], b[i*HashSize:])
	}
	return out, nil
}

// hashesOf views a packed field whose length is known valid as hashes,
// without copying (a Hash is a byte array: any address is aligned for it).
// The view shares packed's memory and is only read.
func hashesOf(packed []byte) []Hash {
	return unsafe.Slice((*Hash)(unsafe.Pointer(unsafe.SliceData(packed))), len(packed)/HashSize)
}

// cmpHash orders hashes bytewise, comparing the leading 8 bytes as an
// integer first, which decides almost every comparison of content hashes.
func cmpHash(a, b Hash) int {
	x, y := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8])
	if x != y {
		if x < y {
			return -1
		}
		return 1
	}
	return bytes.Compare(a[8:], b[8:])
}

func sortHashes(hs []Hash) { slices.SortFunc(hs, cmpHash) }
