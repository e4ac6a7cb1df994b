package fsm

import "fmt"

// Status of a blob.
type Status int

// Statuses. StatusNotFound is also the status of a hash that reports name
// but that was never registered or pinned.
const (
	StatusNotFound Status = iota
	StatusActive
	StatusPinned
	StatusUnreferenced
	StatusMarked
	StatusDeleting
	StatusCollected
	numStatus
)

func (s Status) String() string {
	switch s {
	case StatusNotFound:
		return "NOT_FOUND"
	case StatusActive:
		return "ACTIVE"
	case StatusPinned:
		return "PINNED"
	case StatusUnreferenced:
		return "UNREFERENCED"
	case StatusMarked:
		return "MARKED_FOR_COLLECTION"
	case StatusDeleting:
		return "DELETING"
	case StatusCollected:
		return "COLLECTED"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// ParseStatus is the inverse of Status.String.
func ParseStatus(s string) (Status, bool) {
	for st := StatusNotFound; st < numStatus; st++ {
		if st.String() == s {
			return st, true
		}
	}
	return 0, false
}

// Result is what Apply returns for every entry.
type Result struct {
	Index   uint64       // raft index applied
	Err     *Error       // domain error; the state is unchanged when set
	Cycle   *CycleResult // RunCycle
	Pruned  []string     // PruneStaleNodes (sorted)
	Claimed []Hash       // Claim: hashes granted (sorted)
	Changed int          // blobs whose state the command changed (register/pin/unpin/claim/confirm); informational
	// Duplicate is set when a report was recognised as already applied and
	// ignored (delta sequence number or chunk index not newer), and when a
	// RunCycle's request id was already run (Cycle is then the first run's
	// result, with Eligible as of now).
	Duplicate bool
}

// CycleResult is the outcome of RunCycle (or DryRunCycle).
type CycleResult struct {
	Time              int64    // cluster time of the cycle
	Eligible          []Hash   // sorted; every blob MARKED after the cycle
	NewlyMarked       []Hash   // sorted; marked by this cycle
	ActiveCount       int      // ACTIVE blobs after the cycle
	PinnedCount       int      // PINNED blobs after the cycle
	UnreferencedCount int      // UNREFERENCED blobs after the cycle (still in their grace period)
	StaleNodes        []string // sorted; dropped by this cycle (policy drop) or held (policy hold)
	NodesReporting    int      // nodes with a fresh report (held stale nodes are not counted)
	// Skipped says why nothing was marked: "", "below min_nodes_reporting",
	// or "max_eligible_fraction exceeded: ...".
	Skipped string
}

// BlobInfo is a blob's status with its explanation.
type BlobInfo struct {
	Hash           Hash
	Status         Status
	Since          int64 // UNREFERENCED since (cluster ns), 0 otherwise
	CoordinatorPin bool
	ReferencedBy   []string // node ids whose live report lists it as active, sorted
	PinnedBy       []string // node ids whose live report pins it, sorted
	Dangling       bool     // a live report names a DELETING or COLLECTED blob
	Registered     bool     // registered through RegisterBlobs (a blob can also become known by a Pin)
	Provenance              // who pinned, claimed and confirmed it (Blob only)
}

// Counts are the numbers of blobs by status and of nodes.
type Counts struct {
	Active, Pinned, Unreferenced, Marked, Deleting, Collected int
	Known                                                     int // all but COLLECTED
	DanglingRefs                                              int // DELETING or COLLECTED blobs that a live report names
	NodesReporting                                            int // nodes whose kept report is fresh at the current cluster time
	NodesStale                                                int // nodes whose kept report is stale (dropped at the next cycle under policy drop)
}

// NodeInfo describes one node's kept report.
type NodeInfo struct {
	ID             string
	LastReport     int64 // cluster ns
	LastWall       int64 // wall ns, display only
	Seq            uint64
	Active, Pinned int
	Stale          bool
}

// HistoryEvent is one recorded cycle: cycles that left something eligible,
// and cycles skipped by max_eligible_fraction.
type HistoryEvent struct {
	Seq            uint64
	Time, WallTime int64
	NewlyMarked    []Hash
	EligibleCount  int
	Preserved      int // ACTIVE + PINNED after the cycle
	NodesReporting int
	Skipped        string
	RunBy          string // principal of the RunCycle ("scheduler" for scheduled cycles)
}
