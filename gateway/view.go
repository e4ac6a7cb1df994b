package gateway

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
)

// This file is the one place the page reads API messages: it turns them into
// the plain values the template shows. Provenance (who claimed, confirmed,
// pinned, ran or set something) is read by field name when the message has
// such a field, so the page shows it as soon as the API carries it.

// view is everything one rendering of the page shows.
type view struct {
	Server   string
	Now      time.Time
	Stale    string   // why the data may be stale ("" when read through the leader)
	Problems []string // reads that failed

	Leader  string
	Term    uint64
	Members []memberView

	Counts    []countView
	Eligible  int64
	Dangling  int64
	Known     int64
	Applied   uint64
	LastCycle string
	NextCycle string
	Config    []pair

	Nodes  []nodeView
	Cycles []cycleView // newest first
	Charts []chart

	Query  string // the blob lookup's input
	Lookup *lookupView
}

type pair struct{ Key, Value string }

type countView struct {
	Status string
	N      int64
}

type memberView struct {
	ID, Address, State string
	Leader, Voter      bool
	Applied, Commit    uint64
	Contact            string
	Health             string // "ok", "lagging", "unreachable"
}

type nodeView struct {
	ID             string
	LastReport     string // age
	Active, Pinned int64
	Stale          bool
	Seq            uint64
}

type cycleView struct {
	Seq       uint64
	When      string
	Marked    int
	Eligible  int64
	Preserved int64
	Nodes     int64
	Skipped   string
	RunBy     string
}

type lookupView struct {
	Hash         string
	State        string
	Registered   bool
	Dangling     bool
	CoordPin     string // "" when none; otherwise who and since when, as far as known
	PinnedBy     []string
	ReferencedBy []string
	Unreferenced string // since when
	Claimed      string
	Collected    string
	Error        string
}

func membersView(v *view, r *pb.MembersResponse) {
	v.Leader, v.Term = r.GetLeaderId(), r.GetTerm()
	var leaderCommit uint64
	for _, m := range r.GetMembers() {
		if m.GetLeader() {
			leaderCommit = m.GetCommitIndex()
		}
	}
	for _, m := range r.GetMembers() {
		mv := memberView{ID: m.GetId(), Address: m.GetAddress(), State: m.GetState(), Leader: m.GetLeader(),
			Voter: m.GetVoter(), Applied: m.GetAppliedIndex(), Commit: m.GetCommitIndex(), Health: "ok"}
		switch ms := m.GetLastContactMs(); {
		case m.GetLeader():
			mv.Contact = "leader"
		case ms < 0:
			mv.Contact = "never"
		default:
			mv.Contact = (time.Duration(ms) * time.Millisecond).String()
		}
		switch {
		case m.GetState() == "unknown" || m.GetState() == "shutdown":
			mv.Health = "unreachable"
		case !m.GetLeader() && (m.GetLastContactMs() < 0 || m.GetLastContactMs() > 2000 || leaderCommit > m.GetAppliedIndex()+1000):
			mv.Health = "lagging"
		}
		v.Members = append(v.Members, mv)
	}
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].ID < v.Members[j].ID })
}

func statsView(v *view, s *pb.Stats) {
	v.Counts = []countView{{"active", s.GetActive()}, {"pinned", s.GetPinned()}, {"unreferenced", s.GetUnreferenced()},
		{"marked", s.GetMarked()}, {"deleting", s.GetDeleting()}, {"collected", s.GetCollected()}}
	v.Eligible, v.Dangling, v.Known, v.Applied = s.GetMarked(), s.GetDanglingRefs(), s.GetKnown(), s.GetAppliedIndex()
}

func configView(v *view, c *pb.Config) {
	v.Config = []pair{
		{"grace period", time.Duration(c.GetGracePeriodNs()).String()},
		{"stale threshold", time.Duration(c.GetStaleThresholdNs()).String()},
		{"min nodes reporting", fmt.Sprint(c.GetMinNodesReporting())},
		{"stale policy", strings.TrimPrefix(c.GetStalePolicy().String(), "STALE_POLICY_")},
		{"max eligible fraction", fmt.Sprint(c.GetMaxEligibleFraction())},
		{"history limit", fmt.Sprint(c.GetHistoryLimit())},
		{"tombstone limit", fmt.Sprint(c.GetTombstoneLimit())},
	}
	if by := provenance(c, "set_by"); by != "" {
		v.Config = append(v.Config, pair{"set by", by})
	}
}

func nodesView(v *view, r *pb.ListNodesResponse, now time.Time) {
	for _, n := range r.GetNodes() {
		v.Nodes = append(v.Nodes, nodeView{ID: n.GetId(), LastReport: age(now, n.GetLastReportWallNs()),
			Active: n.GetActive(), Pinned: n.GetPinned(), Stale: n.GetStale(), Seq: n.GetSeq()})
	}
}

// historyView fills the cycle table (newest first) and the charts from
// events in log order.
func historyView(v *view, events []*pb.HistoryEvent, interval time.Duration, now time.Time) {
	var eligible, marked, collected, nodes []float64
	hasCollected := false
	for _, e := range events {
		eligible = append(eligible, float64(e.GetEligibleCount()))
		marked = append(marked, float64(len(e.GetNewlyMarked())))
		nodes = append(nodes, float64(e.GetNodesReporting()))
		n, ok := intField(e, "collected")
		hasCollected = hasCollected || ok
		collected = append(collected, float64(n))
	}
	for i := len(events) - 1; i >= 0 && len(v.Cycles) < 12; i-- {
		e := events[i]
		v.Cycles = append(v.Cycles, cycleView{Seq: e.GetSeq(), When: clock(e.GetWallTimeNs()), Marked: len(e.GetNewlyMarked()),
			Eligible: e.GetEligibleCount(), Preserved: e.GetPreserved(), Nodes: e.GetNodesReporting(),
			Skipped: e.GetSkipped(), RunBy: provenance(e, "run_by")})
	}
	v.LastCycle, v.NextCycle = "none yet", "—"
	if len(events) > 0 {
		last := time.Unix(0, events[len(events)-1].GetWallTimeNs())
		v.LastCycle = age(now, last.UnixNano()) + " ago"
		if interval > 0 {
			v.NextCycle = "in about " + max(0, last.Add(interval).Sub(now)).Round(time.Second).String()
		}
	}
	per := []series{{Name: "eligible", Values: eligible}, {Name: "newly marked", Values: marked}}
	if hasCollected {
		per = append(per, series{Name: "collected", Values: collected})
	}
	v.Charts = []chart{
		{Title: "per cycle", Series: per},
		{Title: "nodes reporting", Series: []series{{Name: "nodes", Values: nodes}}},
	}
}

// lookupOf describes one blob. A node protects it since at least its last
// report (reportAges: node id → age of its last report), which is what the
// page can say without the node's history. clusterNs is the cluster time
// now (0: unknown).
func lookupOf(st *pb.BlobStatus, reportAges map[string]string, clusterNs int64) *lookupView {
	since := func(nodes []string) []string {
		out := make([]string, len(nodes))
		for i, n := range nodes {
			out[i] = n
			if a, ok := reportAges[n]; ok {
				out[i] += " (report " + a + " ago)"
			}
		}
		return out
	}
	l := &lookupView{Hash: hex.EncodeToString(st.GetHash()), State: strings.TrimPrefix(st.GetState().String(), "BLOB_STATE_"),
		Registered: st.GetRegistered(), Dangling: st.GetDangling(),
		PinnedBy: since(st.GetPinnedBy()), ReferencedBy: since(st.GetReferencedBy())}
	if st.GetCoordinatorPin() {
		l.CoordPin = "coordinator pin"
		if by := provenance(st, "coordinator_pinned_by", "pin_by"); by != "" {
			l.CoordPin += " by " + by
		}
	}
	if ns := st.GetUnreferencedSinceNs(); ns != 0 {
		l.Unreferenced = fmt.Sprintf("cluster time %s", time.Duration(ns).Round(time.Millisecond))
		if clusterNs >= ns {
			l.Unreferenced += fmt.Sprintf(" (%s ago)", time.Duration(clusterNs-ns).Round(time.Second))
		}
	}
	l.Claimed = provenance(st, "claimed_by")
	l.Collected = provenance(st, "confirmed_by", "collected_by")
	return l
}

// provenance returns the first of the named fields that m has and sets,
// as text ("" when none).
func provenance(m proto.Message, names ...string) string {
	r := m.ProtoReflect()
	for _, name := range names {
		fd := r.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			continue
		}
		if t := fieldText(r, fd); t != "" {
			return t
		}
	}
	return ""
}

// fieldText renders one field: strings and numbers as they are, lists
// joined, messages (a principal and a time, say) as their set fields.
func fieldText(r protoreflect.Message, fd protoreflect.FieldDescriptor) string {
	if fd.IsMap() || (!fd.IsList() && !r.Has(fd)) {
		return ""
	}
	one := func(v protoreflect.Value) string {
		if fd.Kind() != protoreflect.MessageKind {
			return v.String()
		}
		var parts []string
		v.Message().Range(func(f protoreflect.FieldDescriptor, x protoreflect.Value) bool {
			if strings.HasSuffix(string(f.Name()), "_ns") && f.Kind() == protoreflect.Int64Kind && strings.Contains(string(f.Name()), "wall") {
				parts = append(parts, "at "+clock(x.Int()))
			} else if t := fieldText(v.Message(), f); t != "" {
				parts = append(parts, t)
			}
			return true
		})
		return strings.Join(parts, " ")
	}
	if !fd.IsList() {
		return one(r.Get(fd))
	}
	l := r.Get(fd).List()
	parts := make([]string, l.Len())
	for i := range parts {
		parts[i] = one(l.Get(i))
	}
	return strings.Join(parts, ", ")
}

// intField reads an integer field by name, when m has one.
func intField(m proto.Message, name string) (int64, bool) {
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil || fd.IsList() || fd.IsMap() {
		return 0, false
	}
	switch fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		return r.Get(fd).Int(), true
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		return int64(r.Get(fd).Uint()), true
	}
	return 0, false
}

// age renders how long ago a wall-clock time (ns) was.
func age(now time.Time, wallNs int64) string {
	if wallNs == 0 {
		return "never"
	}
	return max(0, now.Sub(time.Unix(0, wallNs))).Round(time.Second).String()
}

// clock renders a wall-clock time (ns) as UTC time of day.
func clock(wallNs int64) string {
	if wallNs == 0 {
		return "—"
	}
	return time.Unix(0, wallNs).UTC().Format("15:04:05")
}
