package cluster_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every server a test starts is stopped by its cleanup; nothing may keep
// running afterwards. The one exception: raft never answers a future that was
// still queued in one of its buffered channels (verify, leadership transfer)
// when it shut down, so a waiter on such a future stays blocked.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/blobgc/blobgc/cluster.waitFuture.func1"))
}
