package cluster_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/blobgc/blobgc/cluster/clustertest"
)

// Every server a test starts is stopped by its cleanup; nothing may keep
// running afterwards, but for clustertest.UnansweredFutureWaiter.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction(clustertest.UnansweredFutureWaiter))
}
