package fsm

import (
	"github.com/blobgc/blobgc/fsm/fsmpb"
)

func runCycle() *fsmpb.RunCycle { return &fsmpb.RunCycle{} }

// sampleCommands returns one valid command of every kind.
func sampleCommands() []*fsmpb.Command {
	a, b := PackHashes([]Hash{hn(1), hn(2)}), PackHashes([]Hash{hn(3)})
	g, n := int64(0), int64(2)
	return []*fsmpb.Command{
		NewCommand(1, 1, &fsmpb.RegisterBlobs{Hashes: a}),
		NewCommand(2, 2, &fsmpb.Pin{Hashes: b}),
		NewCommand(3, 3, &fsmpb.Unpin{Hashes: b}),
		NewCommand(4, 4, &fsmpb.Report{NodeId: "a", Kind: fsmpb.ReportKind_REPORT_KIND_FULL, Seq: 5, Active: a, Pinned: b}),
		NewCommand(5, 5, &fsmpb.Report{NodeId: "a", Kind: fsmpb.ReportKind_REPORT_KIND_DELTA, Seq: 2, Active: b, RemovedActive: a}),
		NewCommand(6, 6, &fsmpb.Report{NodeId: "z", Kind: fsmpb.ReportKind_REPORT_KIND_CHUNK, Seq: 1, ReportId: 9, LastChunk: true, Active: a}),
		NewCommand(7, 7, &fsmpb.DeregisterNode{NodeId: "b"}),
		NewCommand(8, 8, &fsmpb.RunCycle{}),
		NewCommand(9, 9, &fsmpb.PruneStaleNodes{}),
		NewCommand(10, 10, &fsmpb.Claim{Hashes: a}),
		NewCommand(11, 11, &fsmpb.ConfirmCollected{Hashes: a}),
		NewCommand(12, 12, &fsmpb.SetConfig{GracePeriodNs: &g, StalePolicy: fsmpb.StalePolicy_STALE_POLICY_HOLD}),
		withPrincipal("operator:o", NewCommand(13, 13, &fsmpb.RunCycle{RequestId: "r-1"})),
		withPrincipal("sweeper:s", NewCommand(14, 14, &fsmpb.Pin{Hashes: a})),
		NewCommand(15, 15, &fsmpb.Report{NodeId: "y", Kind: fsmpb.ReportKind_REPORT_KIND_CHUNK, Seq: 1, ReportId: 3, Active: b}),
		NewCommand(16, 16, &fsmpb.SetConfig{MaxNodes: &n, MaxStagedHashesPerNode: &n, MaxStagedHashes: &n}),
	}
}

func withPrincipal(p string, c *fsmpb.Command) *fsmpb.Command {
	c.Principal = p
	return c
}
