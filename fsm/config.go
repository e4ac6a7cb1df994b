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
	return &fsmpb.SetConfig{
		GracePeriodNs: &g, StaleThresholdNs: &s, MinNodesReporting: &m,
		HistoryLimit: &h, TombstoneLimit: &t, StalePolicy: c.StalePolicy.Proto(),
		MaxEligibleFraction: &f,
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
		MaxEligibleFraction: c.MaxEligibleFraction,
	}
}

func configFromProto(p *fsmpb.Config) (Config, error) {
	pol, ok := StalePolicyFromProto(p.GetStalePolicy())
	if !ok {
		return Config{}, errf(CodeInvalidArgument, "stale_policy %d unknown", int(p.GetStalePolicy()))
	}
	c := Config{
		GracePeriod: time.Duration(p.GetGracePeriodNs()), StaleThreshold: time.Duration(p.GetStaleThresholdNs()),
		MinNodesReporting: clampInt(p.GetMinNodesReporting()), HistoryLimit: clampInt(p.GetHistoryLimit()),
		TombstoneLimit: clampInt(p.GetTombstoneLimit()), StalePolicy: pol,
		MaxEligibleFraction: p.GetMaxEligibleFraction(),
	}
	return c, c.Validate()
}
