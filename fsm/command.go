package fsm

import (
	"math"

	"github.com/blobgc/blobgc/auth"

	"github.com/blobgc/blobgc/fsm/fsmpb"
	"google.golang.org/protobuf/proto"
)

const (
	// MaxCommandSize is the largest encoded log entry the FSM accepts. Full
	// reports larger than this are sent as chunks.
	MaxCommandSize = 1 << 20
	// MaxNodeIDLen is the longest node id in bytes.
	MaxNodeIDLen = 128
	// CommandVersion is the entry encoding version this package writes and
	// the only one it applies.
	CommandVersion = 1
	// MaxPrincipalLen bounds the principal recorded with a command.
	MaxPrincipalLen = 256
	// MaxRequestIDLen bounds a RunCycle request id.
	MaxRequestIDLen = 64
	// MaxSeq is the largest report sequence number accepted: numbers within
	// 2^32 of 2^64 are refused, so that a forged report cannot push a node's
	// sequence to where it would wrap.
	MaxSeq = math.MaxUint64 - 1<<32
)

// Encode validates cmd and marshals it deterministically.
func Encode(cmd *fsmpb.Command) ([]byte, error) {
	if err := ValidateCommand(cmd); err != nil {
		return nil, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	if err != nil {
		return nil, errf(CodeInvalidArgument, "marshal: %v", err)
	}
	if len(b) > MaxCommandSize {
		return nil, errf(CodeResourceExhausted, "encoded command is %d bytes, limit %d (send large full reports in chunks)", len(b), MaxCommandSize)
	}
	return b, nil
}

// Decode unmarshals and validates one log entry.
func Decode(data []byte) (*fsmpb.Command, error) {
	if len(data) > MaxCommandSize {
		return nil, errf(CodeInvalidArgument, "entry is %d bytes, limit %d", len(data), MaxCommandSize)
	}
	cmd := new(fsmpb.Command)
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, errf(CodeInvalidArgument, "undecodable entry: %v", err)
	}
	if err := ValidateCommand(cmd); err != nil {
		return nil, err
	}
	return cmd, nil
}

// ValidateCommand checks everything that can be checked without the state:
// version, time, exactly one command, hash lengths, non-empty batches, node
// ids, enum values and config ranges. It returns an *Error with
// CodeInvalidArgument that names the offending field.
func ValidateCommand(cmd *fsmpb.Command) error {
	if cmd == nil {
		return errf(CodeInvalidArgument, "nil command")
	}
	if cmd.GetVersion() != CommandVersion {
		return errf(CodeInvalidArgument, "version %d unsupported (want %d)", cmd.GetVersion(), CommandVersion)
	}
	if cmd.GetTimeNs() < 0 {
		return errf(CodeInvalidArgument, "time_ns %d is negative", cmd.GetTimeNs())
	}
	if err := validatePrincipal("principal", cmd.GetPrincipal()); err != nil {
		return err
	}
	switch c := cmd.GetCmd().(type) {
	case *fsmpb.Command_RegisterBlobs:
		return validateBatch("register_blobs.hashes", c.RegisterBlobs.GetHashes())
	case *fsmpb.Command_Pin:
		return validateBatch("pin.hashes", c.Pin.GetHashes())
	case *fsmpb.Command_Unpin:
		return validateBatch("unpin.hashes", c.Unpin.GetHashes())
	case *fsmpb.Command_Claim:
		return validateBatch("claim.hashes", c.Claim.GetHashes())
	case *fsmpb.Command_ConfirmCollected:
		return validateBatch("confirm_collected.hashes", c.ConfirmCollected.GetHashes())
	case *fsmpb.Command_Report:
		return validateReport(c.Report)
	case *fsmpb.Command_DeregisterNode:
		return validateNodeID("deregister_node.node_id", c.DeregisterNode.GetNodeId())
	case *fsmpb.Command_RunCycle:
		return ValidateRequestID("run_cycle.request_id", c.RunCycle.GetRequestId())
	case *fsmpb.Command_PruneStaleNodes:
		return nil
	case *fsmpb.Command_SetConfig:
		return validateSetConfig(c.SetConfig)
	case nil:
		return errf(CodeInvalidArgument, "command has no operation set")
	default:
		return errf(CodeInvalidArgument, "unknown operation %T", c)
	}
}

func validateBatch(field string, b []byte) error {
	if len(b) == 0 {
		return errf(CodeInvalidArgument, "%s is empty", field)
	}
	return validatePacked(field, b)
}

func validatePacked(field string, b []byte) error {
	if len(b)%HashSize != 0 {
		return errf(CodeInvalidArgument, "%s: length %d is not a multiple of %d (packed 32-byte hashes)", field, len(b), HashSize)
	}
	return nil
}

// validateNodeID is the check for ids that may already be in the state
// (DeregisterNode, snapshots): any 1..MaxNodeIDLen bytes, so that nodes
// named before ids were restricted can still be deregistered and restored.
func validateNodeID(field, id string) error {
	if len(id) == 0 || len(id) > MaxNodeIDLen {
		return errf(CodeInvalidArgument, "%s must be 1..%d bytes, got %d", field, MaxNodeIDLen, len(id))
	}
	return nil
}

// ValidateReportNodeID is the check for a node id that a report would add
// to the state: auth.ValidName (letters, digits, '.', '_', '-').
func ValidateReportNodeID(field, id string) error {
	if err := validateNodeID(field, id); err != nil {
		return err
	}
	if err := auth.ValidName(id); err != nil {
		return errf(CodeInvalidArgument, "%s %q: %v", field, id, err)
	}
	return nil
}

// printable reports whether s is made of printable ASCII (no spaces).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func validatePrincipal(field, p string) error {
	if len(p) > MaxPrincipalLen || !printable(p) {
		return errf(CodeInvalidArgument, "%s: at most %d printable ASCII characters", field, MaxPrincipalLen)
	}
	return nil
}

// ValidateRequestID checks a RunCycle request id: empty, or at most
// MaxRequestIDLen printable ASCII characters.
func ValidateRequestID(field, id string) error {
	if len(id) > MaxRequestIDLen || !printable(id) {
		return errf(CodeInvalidArgument, "%s: at most %d printable ASCII characters", field, MaxRequestIDLen)
	}
	return nil
}

func validateReport(r *fsmpb.Report) error {
	if err := ValidateReportNodeID("report.node_id", r.GetNodeId()); err != nil {
		return err
	}
	if r.GetSeq() > MaxSeq {
		return errf(CodeInvalidArgument, "report.seq %d is above %d (2^64 - 2^32): sequence numbers start low and count up", r.GetSeq(), uint64(MaxSeq))
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{
		{"report.active", r.GetActive()}, {"report.pinned", r.GetPinned()},
		{"report.removed_active", r.GetRemovedActive()}, {"report.removed_pinned", r.GetRemovedPinned()},
	} {
		if err := validatePacked(f.name, f.b); err != nil {
			return err
		}
	}
	kind := r.GetKind()
	if kind != fsmpb.ReportKind_REPORT_KIND_DELTA && (len(r.GetRemovedActive()) > 0 || len(r.GetRemovedPinned()) > 0) {
		return errf(CodeInvalidArgument, "report.removed_active/removed_pinned are only allowed in a DELTA report")
	}
	if kind != fsmpb.ReportKind_REPORT_KIND_CHUNK && (r.GetReportId() != 0 || r.GetChunkIndex() != 0 || r.GetLastChunk()) {
		return errf(CodeInvalidArgument, "report.report_id/chunk_index/last_chunk are only allowed in a CHUNK report")
	}
	switch kind {
	case fsmpb.ReportKind_REPORT_KIND_FULL, fsmpb.ReportKind_REPORT_KIND_DELTA:
	case fsmpb.ReportKind_REPORT_KIND_CHUNK:
		if r.GetReportId() == 0 {
			return errf(CodeInvalidArgument, "report.report_id must be non-zero in a CHUNK report")
		}
	default:
		return errf(CodeInvalidArgument, "report.kind %d unknown (FULL, DELTA or CHUNK)", int32(kind))
	}
	return nil
}

func validateSetConfig(sc *fsmpb.SetConfig) error {
	if sc.GracePeriodNs == nil && sc.StaleThresholdNs == nil && sc.MinNodesReporting == nil &&
		sc.HistoryLimit == nil && sc.TombstoneLimit == nil && sc.MaxEligibleFraction == nil &&
		sc.MaxNodes == nil && sc.MaxStagedHashesPerNode == nil && sc.MaxStagedHashes == nil &&
		sc.GetStalePolicy() == fsmpb.StalePolicy_STALE_POLICY_UNSPECIFIED {
		return errf(CodeInvalidArgument, "set_config sets no field")
	}
	if p := sc.GetStalePolicy(); p != fsmpb.StalePolicy_STALE_POLICY_UNSPECIFIED {
		if _, ok := StalePolicyFromProto(p); !ok {
			return errf(CodeInvalidArgument, "set_config.stale_policy %d unknown (DROP or HOLD)", int32(p))
		}
	}
	if sc.MaxEligibleFraction != nil && math.IsNaN(*sc.MaxEligibleFraction) {
		return errf(CodeInvalidArgument, "max_eligible_fraction is NaN")
	}
	// Check the given fields against their ranges by merging into a config
	// that is valid everywhere else.
	return DefaultConfig().Merge(sc).Validate()
}

// NewCommand wraps an operation into a versioned command stamped with the
// given cluster time and wall time. op is one of the fsmpb operation
// messages (*fsmpb.RegisterBlobs, *fsmpb.Report, ...).
func NewCommand(timeNs, wallNs int64, op any) *fsmpb.Command {
	cmd := &fsmpb.Command{Version: CommandVersion, TimeNs: timeNs, WallTimeNs: wallNs}
	switch o := op.(type) {
	case *fsmpb.RegisterBlobs:
		cmd.Cmd = &fsmpb.Command_RegisterBlobs{RegisterBlobs: o}
	case *fsmpb.Pin:
		cmd.Cmd = &fsmpb.Command_Pin{Pin: o}
	case *fsmpb.Unpin:
		cmd.Cmd = &fsmpb.Command_Unpin{Unpin: o}
	case *fsmpb.Report:
		cmd.Cmd = &fsmpb.Command_Report{Report: o}
	case *fsmpb.DeregisterNode:
		cmd.Cmd = &fsmpb.Command_DeregisterNode{DeregisterNode: o}
	case *fsmpb.RunCycle:
		cmd.Cmd = &fsmpb.Command_RunCycle{RunCycle: o}
	case *fsmpb.PruneStaleNodes:
		cmd.Cmd = &fsmpb.Command_PruneStaleNodes{PruneStaleNodes: o}
	case *fsmpb.Claim:
		cmd.Cmd = &fsmpb.Command_Claim{Claim: o}
	case *fsmpb.ConfirmCollected:
		cmd.Cmd = &fsmpb.Command_ConfirmCollected{ConfirmCollected: o}
	case *fsmpb.SetConfig:
		cmd.Cmd = &fsmpb.Command_SetConfig{SetConfig: o}
	}
	return cmd
}
