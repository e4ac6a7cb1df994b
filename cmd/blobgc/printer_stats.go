package main

import (
	"fmt"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
)

// lastCycle renders the last cycle the answering server applied: its age on
// the cluster clock and its outcome.
func lastCycle(s *blobgcv1.Stats) string {
	if s.LastCycleNs == 0 {
		return "- (none applied since the answering server started)"
	}
	when := clusterAge(s.LastCycleNs, s.ClusterTimeNs)
	if s.LastCycleSkipped != "" {
		return fmt.Sprintf("%s, skipped: %s", when, s.LastCycleSkipped)
	}
	return fmt.Sprintf("%s, %d newly marked, %d eligible", when, s.LastCycleNewlyMarked, s.LastCycleEligible)
}
