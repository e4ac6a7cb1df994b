package gateway

import (
	"encoding/base64"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/blobgc/blobgc/api/blobgc/v1"
)

// A lookup takes a hash as hex or base64 and refuses anything else with a
// message that says what it wants.
func TestParseHash(t *testing.T) {
	h := make([]byte, 32)
	for i := range h {
		h[i] = byte(i * 7)
	}
	for _, in := range []string{hex.EncodeToString(h), base64.StdEncoding.EncodeToString(h), base64.URLEncoding.EncodeToString(h)} {
		got, err := parseHash(in)
		if err != nil || string(got) != string(h) {
			t.Errorf("parseHash(%q) = %x, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "abc", hex.EncodeToString(h[:31]), hex.EncodeToString(h) + "00"} {
		if _, err := parseHash(in); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "64 hex characters") {
			t.Errorf("parseHash(%q): %v, want InvalidArgument", in, err)
		}
	}
}

// Provenance is read by field name: absent fields give "", strings, lists
// and messages render as text.
func TestProvenanceByFieldName(t *testing.T) {
	st := &pb.BlobStatus{PinnedBy: []string{"vm-1", "vm-2"}}
	if got := provenance(st, "claimed_by", "pinned_by"); got != "vm-1, vm-2" {
		t.Errorf("list field: %q", got)
	}
	if got := provenance(st, "no_such_field"); got != "" {
		t.Errorf("absent field: %q", got)
	}
	if got := provenance(&pb.Member{Id: "s1"}, "address", "id"); got != "s1" {
		t.Errorf("first set field: %q", got)
	}
	if got := provenance(&pb.ReportRequest{Chunk: &pb.Chunk{ReportId: 5, Last: true}}, "chunk"); got != "5 true" {
		t.Errorf("message field: %q", got)
	}
	if n, ok := intField(&pb.HistoryEvent{EligibleCount: 4}, "eligible_count"); !ok || n != 4 {
		t.Errorf("intField: %d %v", n, ok)
	}
	if _, ok := intField(&pb.HistoryEvent{}, "collected_nothing"); ok {
		t.Error("intField of an absent field")
	}
}

// The history view lists the newest cycles first, shows why a cycle was
// skipped, and charts every retained cycle.
func TestHistoryView(t *testing.T) {
	now := time.Unix(1000, 0)
	var events []*pb.HistoryEvent
	for i := range 20 {
		events = append(events, &pb.HistoryEvent{Seq: uint64(i + 1), WallTimeNs: now.Add(time.Duration(i-20) * time.Second).UnixNano(),
			EligibleCount: int64(i), NewlyMarked: make([][]byte, i%3), NodesReporting: 2})
	}
	events[19].Skipped = "only 2 of 3 nodes reporting"
	v := &view{}
	historyView(v, events, 30*time.Second, now)
	if len(v.Cycles) != 12 || v.Cycles[0].Seq != 20 || v.Cycles[0].Skipped == "" || v.Cycles[11].Seq != 9 {
		t.Fatalf("cycles: %+v", v.Cycles)
	}
	if v.LastCycle != "1s ago" || v.NextCycle != "in about 29s" {
		t.Errorf("last %q next %q", v.LastCycle, v.NextCycle)
	}
	if len(v.Charts) != 2 || len(v.Charts[0].Series[0].Values) != 20 {
		t.Fatalf("charts: %+v", v.Charts)
	}
	svg := string(v.Charts[0].SVG())
	if !strings.HasPrefix(svg, "<svg") || strings.Count(svg, "<polyline") != 2 || !strings.Contains(svg, "max 19") {
		t.Errorf("svg: %s", svg)
	}
	empty := &view{}
	historyView(empty, nil, 0, now)
	if !strings.Contains(string(empty.Charts[0].SVG()), "no cycles yet") || empty.LastCycle != "none yet" {
		t.Errorf("no history: %+v", empty)
	}
}

// The generated gateway serves every BlobGC method: after a change to the
// proto, scripts/genproto.sh must run again.
func TestEveryMethodIsServedOverHTTP(t *testing.T) {
	src, err := os.ReadFile("../api/blobgc/v1/blobgc.pb.gw.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range pb.BlobGC_ServiceDesc.Methods {
		if !strings.Contains(string(src), "pattern_BlobGC_"+m.MethodName+"_0") {
			t.Errorf("%s has no HTTP route: run scripts/genproto.sh", m.MethodName)
		}
	}
	for _, s := range pb.BlobGC_ServiceDesc.Streams {
		if !strings.Contains(string(src), "pattern_BlobGC_"+s.StreamName+"_0") {
			t.Errorf("%s has no HTTP route: run scripts/genproto.sh", s.StreamName)
		}
	}
}

// A lookup says which nodes protect the blob with the age of their report,
// and since when it has been unreferenced.
func TestLookupView(t *testing.T) {
	st := &pb.BlobStatus{Hash: make([]byte, 32), State: pb.BlobState_BLOB_STATE_PINNED, PinnedBy: []string{"vm-1", "vm-9"},
		UnreferencedSinceNs: int64(2 * time.Second), CoordinatorPin: true, Registered: true}
	l := lookupOf(st, map[string]string{"vm-1": "4s"}, int64(5*time.Second))
	if l.State != "PINNED" || strings.Join(l.PinnedBy, ";") != "vm-1 (report 4s ago);vm-9" || l.CoordPin != "coordinator pin" {
		t.Errorf("lookup: %+v", l)
	}
	if l.Unreferenced != "cluster time 2s (3s ago)" {
		t.Errorf("unreferenced: %q", l.Unreferenced)
	}
}
