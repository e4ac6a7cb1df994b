// Package backup is the file format of a saved blobgc snapshot.
//
// A backup file is a fixed 84-byte header followed by the state machine's
// canonical snapshot stream (which has its own CRC-32C trailer):
//
//	magic        "BLOBGCBK" (8 bytes)
//	version      uint32 LE (1)
//	index        uint64 LE: raft index of the last entry the snapshot holds
//	term         uint64 LE: the leader's term when it was taken
//	cluster time int64 LE (ns) of the last applied command
//	wall time    int64 LE (ns, display only)
//	size         uint64 LE: bytes of snapshot stream that follow
//	sha256       [32]byte of those bytes
//	snapshot stream
//
// A Writer writes the stream into a temporary file beside the destination,
// then fills in the header, syncs and renames: the destination is either
// absent or complete (mode 0600, since it holds the whole state). Verify
// re-reads a file and checks its size and checksum.
package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
)

const (
	magic      = "BLOBGCBK"
	version    = 1
	headerSize = 8 + 4 + 5*8 + sha256.Size
)

// Header describes the snapshot a backup file holds.
type Header struct {
	Index       uint64
	Term        uint64
	ClusterTime int64 // ns
	WallTime    int64 // ns, display only
	Size        uint64
	SHA256      [sha256.Size]byte
}

func (h *Header) marshal() []byte {
	b := make([]byte, 0, headerSize)
	b = append(b, magic...)
	b = binary.LittleEndian.AppendUint32(b, version)
	for _, v := range []uint64{h.Index, h.Term, uint64(h.ClusterTime), uint64(h.WallTime), h.Size} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return append(b, h.SHA256[:]...)
}

func unmarshal(b []byte) (Header, error) {
	var h Header
	if len(b) < headerSize || string(b[:8]) != magic {
		return h, errors.New("not a blobgc backup file (bad magic)")
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != version {
		return h, fmt.Errorf("backup format version %d, this blobgc reads %d", v, version)
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(b[12+8*i:]) }
	h.Index, h.Term, h.ClusterTime, h.WallTime, h.Size = u(0), u(1), int64(u(2)), int64(u(3)), u(4)
	copy(h.SHA256[:], b[12+40:])
	return h, nil
}

// Writer writes a backup file atomically. Write the snapshot stream to it,
// then Commit; Reset starts the stream over (a retried transfer).
type Writer struct {
	path string
	f    *os.File
	bw   *bufio.Writer
	sum  hash.Hash
	n    uint64
}

// Create starts a backup file that will appear at path on Commit.
func Create(path string) (*Writer, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	w := &Writer{path: path, f: f, bw: bufio.NewWriterSize(f, 1<<20), sum: sha256.New()}
	if err := w.Reset(); err != nil {
		w.Abort()
		return nil, err
	}
	return w, nil
}

// Reset discards what was written so far.
func (w *Writer) Reset() error {
	w.bw.Reset(w.f)
	w.sum.Reset()
	w.n = 0
	if err := w.f.Truncate(0); err != nil {
		return err
	}
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := w.bw.Write(make([]byte, headerSize)) // filled in by Commit
	return err
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.bw.Write(p)
	w.sum.Write(p[:n])
	w.n += uint64(n)
	return n, err
}

// Sum returns the SHA-256 of the stream written so far.
func (w *Writer) Sum() []byte { return w.sum.Sum(nil) }

// Commit fills in the header (h's Size and SHA256 are set from what was
// written), syncs the file and renames it to its destination.
func (w *Writer) Commit(h Header) (Header, error) {
	h.Size = w.n
	copy(h.SHA256[:], w.sum.Sum(nil))
	err := w.bw.Flush()
	if err == nil {
		_, err = w.f.WriteAt(h.marshal(), 0)
	}
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.f.Name(), w.path)
	}
	if err != nil {
		os.Remove(w.f.Name())
		return h, fmt.Errorf("backup: writing %s: %w", w.path, err)
	}
	if d, err := os.Open(filepath.Dir(w.path)); err == nil {
		_ = d.Sync() // make the rename durable
		d.Close()
	}
	return h, nil
}

// Abort removes the temporary file.
func (w *Writer) Abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// Open reads the header of the backup file at path and returns it with the
// snapshot stream, unchecked; Verify checks it.
func Open(path string) (Header, io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, nil, err
	}
	b := make([]byte, headerSize)
	if _, err := io.ReadFull(f, b); err != nil {
		f.Close()
		return Header{}, nil, fmt.Errorf("%s: not a blobgc backup file (%d-byte header: %v)", path, headerSize, err)
	}
	h, err := unmarshal(b)
	if err != nil {
		f.Close()
		return h, nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, f, nil
}

// Verify reads the whole backup file at path and checks that the snapshot
// stream has the size and SHA-256 its header records.
func Verify(path string) (Header, error) {
	h, body, err := Open(path)
	if err != nil {
		return h, err
	}
	defer body.Close()
	sum := sha256.New()
	n, err := io.Copy(sum, body)
	if err != nil {
		return h, fmt.Errorf("%s: %w", path, err)
	}
	if uint64(n) != h.Size {
		return h, fmt.Errorf("%s: holds %d bytes of snapshot, its header says %d: the file is truncated or extended", path, n, h.Size)
	}
	if !bytes.Equal(sum.Sum(nil), h.SHA256[:]) {
		return h, fmt.Errorf("%s: checksum mismatch: the file is damaged", path)
	}
	return h, nil
}
