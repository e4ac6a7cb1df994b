package transport

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// transport, stream, pipeline and raft node must shut down completely.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
