package fsm

import (
	"fmt"
	"math"
	"time"

	"github.com/blobgc/blobgc/fsm/fsmpb"
)

// StalePolicy says what a cycle does with a node whose last report is older
// than Config.StaleThreshold.
type StalePolicy int

const (
	// StaleDrop drops the stale node's report at the next cycle, so its sets
	// stop protecting blobs (the seed's behaviour).
	StaleDrop StalePolicy = iota
	// StaleHold keeps a stale node's sets protecting its blobs until the node
	// is deregistered. Stale nodes are still listed in cycle results.
	StaleHold
)

func (p StalePolicy) String() string {
	switch p {
	case StaleDrop:
		return "drop"
	case StaleHold:
		return "hold"
	}
	return fmt.Sprintf("StalePolicy(%d)", int(p))
}

// Limits of the configuration values (inclusive).
const (
	MaxGracePeriod       = 10 * 365 * 24 * time.Hour
	MaxStaleThreshold    = 10 * 365 * 24 * time.Hour
	MaxMinNodesReporting = 1 << 20
	MaxHistoryLimit      = 1 << 20
	MaxTombstoneLimit    = 1 << 30
	MaxMaxNodes          = 1 << 20
	// MaxStagedHashes bounds both staging budgets: what one node, and what
	// all nodes together, may hold staged in chunks of full reports.
	MaxStagedHashes = 1 << 28
)

// Config is the replicated GC configuration.
type Config struct {
	GracePeriod         time.Duration // how long a blob stays UNREFERENCED before it is marked
	StaleThreshold      time.Duration // a report older than this is stale
	MinNodesReporting   int           // below this many reporting nodes a cycle marks nothing
	HistoryLimit        int           // cycle events kept
	TombstoneLimit      int           // COLLECTED tombstones kept (oldest forgotten first)
	StalePolicy         StalePolicy
	MaxEligibleFraction float64 // a cycle newly marking more than this fraction of known blobs marks nothing; 1 = off
	// MaxNodes bounds the nodes with a report or a staged chunked report: a
	// report from a further node is refused (ResourceExhausted). Lowering it
	// below the current count keeps the nodes already known.
	MaxNodes int
	// MaxStagedHashesPerNode bounds the hashes one node holds staged in an
	// unfinished chunked full report; MaxStagedHashesTotal bounds all nodes'
	// staged hashes together. A chunk beyond either is refused
	// (ResourceExhausted).
	MaxStagedHashesPerNode int
	MaxStagedHashesTotal   int
	// SetBy is the principal of the last SetConfig ("" for the defaults).
	// It is recorded, not validated, and SetConfig cannot set it directly.
	SetBy string
}

// DefaultConfig returns the seed's defaults plus lenient safety valves.
func DefaultConfig() Config {
	return Config{
		GracePeriod:         5 * time.Minute,
		StaleThreshold:      10 * time.Minute,
		MinNodesReporting:   1,
		HistoryLimit:        1000,
		TombstoneLimit:      100000,
		StalePolicy:         StaleDrop,
		MaxEligibleFraction: 1.0,
		MaxNodes:            10000,
		// 4M hashes (128 MiB) per node, 16M (512 MiB) in all.
		MaxStagedHashesPerNode: 1 << 22,
		MaxStagedHashesTotal:   1 << 24,
	}
}

// Validate reports the first field out of range, as an *Error with
// CodeInvalidArgument.
func (c Config) Validate() error {
	switch {
	case c.GracePeriod < 0 || c.GracePeriod > MaxGracePeriod:
		return errf(CodeInvalidArgument, "grace_period %v out of range [0, %v]", c.GracePeriod, MaxGracePeriod)
	case c.StaleThreshold <= 0 || c.StaleThreshold > MaxStaleThreshold:
		return errf(CodeInvalidArgument, "stale_threshold %v out of range (0, %v]", c.StaleThreshold, MaxStaleThreshold)
	case c.MinNodesReporting < 0 || c.MinNodesReporting > MaxMinNodesReporting:
		return errf(CodeInvalidArgument, "min_nodes_reporting %d out of range [0, %d]", c.MinNodesReporting, MaxMinNodesReporting)
	case c.HistoryLimit < 1 || c.HistoryLimit > MaxHistoryLimit:
		return errf(CodeInvalidArgument, "history_limit %d out of range [1, %d]", c.HistoryLimit, MaxHistoryLimit)
	case c.TombstoneLimit < 0 || c.TombstoneLimit > MaxTombstoneLimit:
		return errf(CodeInvalidArgument, "tombstone_limit %d out of range [0, %d]", c.TombstoneLimit, MaxTombstoneLimit)
	case c.StalePolicy != StaleDrop && c.StalePolicy != StaleHold:
		return errf(CodeInvalidArgument, "stale_policy %d unknown (drop or hold)", int(c.StalePolicy))
	case math.IsNaN(c.MaxEligibleFraction) || c.MaxEligibleFraction <= 0 || c.MaxEligibleFraction > 1:
		return errf(CodeInvalidArgument, "max_eligible_fraction %v out of range (0, 1]", c.MaxEligibleFraction)
	case c.MaxNodes < 1 || c.MaxNodes > MaxMaxNodes:
		return errf(CodeInvalidArgument, "max_nodes %d out of range [1, %d]", c.MaxNodes, MaxMaxNodes)
	case c.MaxStagedHashesPerNode < 1 || c.MaxStagedHashesPerNode > MaxStagedHashes:
		return errf(CodeInvalidArgument, "max_staged_hashes_per_node %d out of range [1, %d]", c.MaxStagedHashesPerNode, MaxStagedHashes)
	case c.MaxStagedHashesTotal < 1 || c.MaxStagedHashesTotal > MaxStagedHashes:
		return errf(CodeInvalidArgument, "max_staged_hashes %d out of range [1, %d]", c.MaxStagedHashesTotal, MaxStagedHashes)
	}
	return nil
}

// StalePolicyFromProto converts the wire enum; UNSPECIFIED and unknown values
// report ok=false.
func StalePolicyFromProto(p fsmpb.StalePolicy) (StalePolicy, bool) {
	switch p {
	case fsmpb.StalePolicy_STALE_POLICY_DROP:
		return StaleDrop, true
	case fsmpb.StalePolicy_STALE_POLICY_HOLD:
		return StaleHold, true
	}
	return 0, false
}

// Proto returns the wire enum of p.
func (p StalePolicy) Proto() fsmpb.StalePolicy {
	if p == StaleHold {
		return fsmpb.StalePolicy_STALE_POLICY_HOLD
	}
	return fsmpb.StalePolicy_STALE_POLICY_DROP
}

// SetConfigCommand returns a SetConfig that sets every field of c.
func (c Config) SetConfigCommand() *fsmpb.SetConfig {
	g, s := int64(c.GracePeriod), int64(c.StaleThreshold)
	m, h, t := int64(c.MinNodesReporting), int64(c.HistoryLimit), int64(c.TombstoneLimit)
	f := c.MaxEligibleFraction
	n, sn, st := int64(c.MaxNodes), int64(c.MaxStagedHashesPerNode), int64(c.MaxStagedHashesTotal)
	return &fsmpb.SetConfig{
		GracePeriodNs: &g, StaleThresholdNs: &s, MinNodesReporting: &m,
		HistoryLimit: &h, TombstoneLimit: &t, StalePolicy: c.StalePolicy.Proto(),
		MaxEligibleFraction: &f, MaxNodes: &n, MaxStagedHashesPerNode: &sn, MaxStagedHashes: &st,
	}
}

// Merge returns c with the fields that sc sets replaced. The result is not
// validated.
func (c Config) Merge(sc *fsmpb.SetConfig) Config {
	if sc.GracePeriodNs != nil {
		c.GracePeriod = time.Duration(*sc.GracePeriodNs)
	}
	if sc.StaleThresholdNs != nil {
		c.StaleThreshold = time.Duration(*sc.StaleThresholdNs)
	}
	if sc.MinNodesReporting != nil {
		c.MinNodesReporting = clampInt(*sc.MinNodesReporting)
	}
	if sc.HistoryLimit != nil {
		c.HistoryLimit = clampInt(*sc.HistoryLimit)
	}
	if sc.TombstoneLimit != nil {
		c.TombstoneLimit = clampInt(*sc.TombstoneLimit)
	}
	if p, ok := StalePolicyFromProto(sc.StalePolicy); ok {
		c.StalePolicy = p
	} else if sc.StalePolicy != fsmpb.StalePolicy_STALE_POLICY_UNSPECIFIED {
		c.StalePolicy = StalePolicy(sc.StalePolicy) // invalid: Validate rejects it
	}
	if sc.MaxEligibleFraction != nil {
		c.MaxEligibleFraction = *sc.MaxEligibleFraction
	}
	if sc.MaxNodes != nil {
		c.MaxNodes = clampInt(*sc.MaxNodes)
	}
	if sc.MaxStagedHashesPerNode != nil {
		c.MaxStagedHashesPerNode = clampInt(*sc.MaxStagedHashesPerNode)
	}
	if sc.MaxStagedHashes != nil {
		c.MaxStagedHashesTotal = clampInt(*sc.MaxStagedHashes)
	}
	return c
}

// clampInt keeps int64 values that do not fit an int out of range instead of
// wrapping them into range.
func clampInt(v int64) int {
	if v > math.MaxInt32 {
		return math.MaxInt32
	}
	if v < math.MinInt32 {
		return math.MinInt32
	}
	return int(v)
}

func (c Config) toProto() *fsmpb.Config {
	return &fsmpb.Config{
		GracePeriodNs: int64(c.GracePeriod), StaleThresholdNs: int64(c.StaleThreshold),
		MinNodesReporting: int64(c.MinNodesReporting), HistoryLimit: int64(c.HistoryLimit),
		TombstoneLimit: int64(c.TombstoneLimit), StalePolicy: c.StalePolicy.Proto(),
		MaxEligibleFraction: c.MaxEligibleFraction, MaxNodes: int64(c.MaxNodes),
		MaxStagedHashesPerNode: int64(c.MaxStagedHashesPerNode), MaxStagedHashes: int64(c.MaxStagedHashesTotal),
		SetBy: c.SetBy,
	}
}

// configFromProto reads a snapshot's config; the limits that version 1
// snapshots lack take their defaults.
func configFromProto(p *fsmpb.Config) (Config, error) {
	pol, ok := StalePolicyFromProto(p.GetStalePolicy())
	if !ok {
		return Config{}, errf(CodeInvalidArgument, "stale_policy %d unknown", int(p.GetStalePolicy()))
	}
	c := Config{
		GracePeriod: time.Duration(p.GetGracePeriodNs()), StaleThreshold: time.Duration(p.GetStaleThresholdNs()),
		MinNodesReporting: clampInt(p.GetMinNodesReporting()), HistoryLimit: clampInt(p.GetHistoryLimit()),
		TombstoneLimit: clampInt(p.GetTombstoneLimit()), StalePolicy: pol,
		MaxEligibleFraction: p.GetMaxEligibleFraction(), SetBy: p.GetSetBy(),
		MaxNodes: clampInt(p.GetMaxNodes()), MaxStagedHashesPerNode: clampInt(p.GetMaxStagedHashesPerNode()),
		MaxStagedHashesTotal: clampInt(p.GetMaxStagedHashes()),
	}
	d := DefaultConfig()
	if p.MaxNodes == 0 && p.MaxStagedHashesPerNode == 0 && p.MaxStagedHashes == 0 {
		c.MaxNodes, c.MaxStagedHashesPerNode, c.MaxStagedHashesTotal = d.MaxNodes, d.MaxStagedHashesPerNode, d.MaxStagedHashesTotal
	}
	if err := validatePrincipal("config.set_by", c.SetBy); err != nil {
		return c, err
	}
	return c, c.Validate()
}
