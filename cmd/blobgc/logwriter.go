package main

import (
	"io"
	"sync"
)

// batchWriter is a server's stderr: log lines are written in batches, like
// a raft group commit. A server logs an audit line for every write, so at
// thousands of writes a second it made a write system call for each, under
// the logger's lock. Write copies the line into a buffer and wakes the
// flusher, which hands everything buffered to the output in one call (no
// timer), so a killed process loses only the lines written since the
// flusher last took the buffer. Lines keep their order. When the output
// falls behind by maxBuffered bytes, Write writes itself and so waits for
// it, as an unbuffered writer would. Close flushes and stops the flusher;
// later writes go straight through.
type batchWriter struct {
	out   io.Writer
	outMu sync.Mutex // held while writing to out: batches go out in order
	spare []byte     // the last batch's buffer, reused (under outMu)

	mu     sync.Mutex
	buf    []byte
	closed bool

	wake chan struct{} // capacity 1: a flush is wanted
	done chan struct{} // closed when the flusher has stopped
}

const maxBuffered = 1 << 20

func newBatchWriter(out io.Writer) *batchWriter {
	w := &batchWriter{out: out, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *batchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.outMu.Lock()
		defer w.outMu.Unlock()
		return w.out.Write(p)
	}
	w.buf = append(w.buf, p...)
	full := len(w.buf) >= maxBuffered
	if !full {
		select { // under mu: Close closes wake only after setting closed
		case w.wake <- struct{}{}:
		default: // a flush is already wanted; it will take this line too
		}
	}
	w.mu.Unlock()
	if full {
		w.flush()
	}
	return len(p), nil
}

func (w *batchWriter) run() {
	defer close(w.done)
	for range w.wake {
		w.flush()
	}
}

// flush writes everything buffered so far, after any batch taken before.
func (w *batchWriter) flush() {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	w.mu.Lock()
	b := w.buf
	w.buf = w.spare[:0]
	w.mu.Unlock()
	if len(b) > 0 {
		w.out.Write(b) // as an unbuffered logger, a failed write of a log line is not reported
	}
	w.spare = b
}

// Close flushes what is buffered; Write then goes straight to the output.
func (w *batchWriter) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.wake)
	<-w.done
	w.flush()
	return nil
}
