package clustertest

import (
	"bytes"
	"io"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// SyncBuffer is a bytes.Buffer safe to read while servers or commands write
// to it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// LoggerTo returns an info-level text logger named name that writes to w,
// for tests that check what a server logs.
func LoggerTo(w io.Writer, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Info, Output: w})
}
