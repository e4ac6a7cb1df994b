package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// gateOutput records each Write; while gated, a Write first announces
// itself on entered and then waits for release.
type gateOutput struct {
	mu      sync.Mutex
	writes  []string
	gated   bool
	entered chan struct{}
	release chan struct{}
}

func (o *gateOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	gated := o.gated
	o.gated = false
	o.mu.Unlock()
	if gated {
		o.entered <- struct{}{}
		<-o.release
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.writes = append(o.writes, string(p))
	return len(p), nil
}

// Lines written while the output is busy go out together, in order.
func TestBatchWriterBatchesWhileTheOutputIsBusy(t *testing.T) {
	out := &gateOutput{gated: true, entered: make(chan struct{}), release: make(chan struct{})}
	w := newBatchWriter(out)
	fmt.Fprintln(w, "first")
	<-out.entered // the flusher is writing "first"
	for i := range 100 {
		fmt.Fprintf(w, "line %d\n", i)
	}
	close(out.release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(out.writes) != 2 || out.writes[0] != "first\n" {
		t.Fatalf("%d writes to the output, want the first line, then the other 100 in one", len(out.writes))
	}
	var want strings.Builder
	for i := range 100 {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if out.writes[1] != want.String() {
		t.Fatalf("second write is not the 100 lines in order: %q", out.writes[1])
	}
}

// Concurrent writers: every line arrives whole, each writer's in its order,
// all of them by Close; after Close, writes go straight through.
func TestBatchWriterKeepsEveryLine(t *testing.T) {
	var out bytes.Buffer
	var outMu sync.Mutex
	w := newBatchWriter(writerFunc(func(p []byte) (int, error) {
		outMu.Lock()
		defer outMu.Unlock()
		return out.Write(p)
	}))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				fmt.Fprintf(w, "writer %d line %d %s\n", g, i, strings.Repeat("x", i%300))
			}
		}()
	}
	wg.Wait()
	w.Close()
	fmt.Fprintln(w, "after close")
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 8*2000+1 || lines[len(lines)-1] != "after close" {
		t.Fatalf("%d lines, want %d and the line written after Close last", len(lines), 8*2000+1)
	}
	next := make(map[int]int)
	for _, l := range lines[:len(lines)-1] {
		var g, i int
		var pad string
		if n, err := fmt.Sscanf(l, "writer %d line %d %s", &g, &i, &pad); (err != nil && i%300 != 0) || n < 2 {
			t.Fatalf("torn line %q", l)
		}
		if i != next[g] || len(l) != len(fmt.Sprintf("writer %d line %d %s", g, i, strings.Repeat("x", i%300))) {
			t.Fatalf("writer %d: line %q, want line %d whole", g, l, next[g])
		}
		next[g]++
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
