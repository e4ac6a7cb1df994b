package fsm

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blobgc/blobgc/fsm/fsmpb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

func TestHashStringParse(t *testing.T) {
	x := hn(42)
	s := x.String()
	if len(s) != 64 || strings.ToLower(s) != s {
		t.Fatalf("%q", s)
	}
	y, err := ParseHash(strings.ToUpper(s))
	if err != nil || y != x {
		t.Fatalf("%v %v", y, err)
	}
	for _, bad := range []string{"", s[:63], s + "0", "zz" + s[2:]} {
		if _, err := ParseHash(bad); err == nil {
			t.Fatalf("accepted %q", bad)
		} else if e := err.(*Error); e.Code != CodeInvalidArgument {
			t.Fatal(e)
		}
	}
	if _, err := HashFromBytes(make([]byte, 31)); err == nil {
		t.Fatal("31 bytes accepted")
	}
	if _, err := UnpackHashes(make([]byte, 33)); err == nil {
		t.Fatal("33 bytes accepted")
	}
}

func TestStatusStrings(t *testing.T) {
	want := []string{"NOT_FOUND", "ACTIVE", "PINNED", "UNREFERENCED", "MARKED_FOR_COLLECTION", "DELETING", "COLLECTED"}
	for i, w := range want {
		if got := Status(i).String(); got != w {
			t.Fatalf("%d: %q", i, got)
		}
		if st, ok := ParseStatus(w); !ok || st != Status(i) {
			t.Fatal(w)
		}
	}
}

func TestValidateCommand(t *testing.T) {
	h := PackHashes([]Hash{hn(1)})
	long := strings.Repeat("n", MaxNodeIDLen+1)
	cases := []struct {
		name string
		cmd  *fsmpb.Command
		want string
	}{
		{"nil", nil, "nil command"},
		{"version", &fsmpb.Command{Version: 2, Cmd: &fsmpb.Command_RunCycle{RunCycle: &fsmpb.RunCycle{}}}, "version 2"},
		{"negative time", NewCommand(-1, 0, &fsmpb.RunCycle{}), "time_ns"},
		{"no op", &fsmpb.Command{Version: CommandVersion}, "no operation"},
		{"empty register", NewCommand(0, 0, &fsmpb.RegisterBlobs{}), "register_blobs.hashes is empty"},
		{"short hash", NewCommand(0, 0, &fsmpb.Pin{Hashes: h[:31]}), "pin.hashes: length 31"},
		{"empty claim", NewCommand(0, 0, &fsmpb.Claim{}), "claim.hashes is empty"},
		{"empty confirm", NewCommand(0, 0, &fsmpb.ConfirmCollected{}), "confirm_collected.hashes is empty"},
		{"empty unpin", NewCommand(0, 0, &fsmpb.Unpin{}), "unpin.hashes is empty"},
		{"no node", NewCommand(0, 0, &fsmpb.Report{Kind: fsmpb.ReportKind_REPORT_KIND_FULL}), "report.node_id"},
		{"long node", NewCommand(0, 0, &fsmpb.Report{NodeId: long, Kind: fsmpb.ReportKind_REPORT_KIND_FULL}), "report.node_id"},
		{"kind", NewCommand(0, 0, &fsmpb.Report{NodeId: "n"}), "report.kind 0 unknown"},
		{"kind 9", NewCommand(0, 0, &fsmpb.Report{NodeId: "n", Kind: 9}), "report.kind 9 unknown"},
		{"removed in full", NewCommand(0, 0, &fsmpb.Report{NodeId: "n", Kind: fsmpb.ReportKind_REPORT_KIND_FULL, RemovedActive: h}), "only allowed in a DELTA"},
		{"chunk fields in delta", NewCommand(0, 0, &fsmpb.Report{NodeId: "n", Kind: fsmpb.ReportKind_REPORT_KIND_DELTA, ChunkIndex: 1}), "only allowed in a CHUNK"},
		{"chunk without id", NewCommand(0, 0, &fsmpb.Report{NodeId: "n", Kind: fsmpb.ReportKind_REPORT_KIND_CHUNK}), "report_id must be non-zero"},
		{"bad active", NewCommand(0, 0, &fsmpb.Report{NodeId: "n", Kind: fsmpb.ReportKind_REPORT_KIND_FULL, Active: h[:5]}), "report.active"},
		{"deregister", NewCommand(0, 0, &fsmpb.DeregisterNode{}), "deregister_node.node_id"},
		{"empty config", NewCommand(0, 0, &fsmpb.SetConfig{}), "sets no field"},
		{"config range", NewCommand(0, 0, &fsmpb.SetConfig{HistoryLimit: ptr(int64(MaxHistoryLimit + 1))}), "history_limit"},
		{"config enum", NewCommand(0, 0, &fsmpb.SetConfig{StalePolicy: 3}), "stale_policy 3 unknown"},
	}
	for _, c := range cases {
		err := ValidateCommand(c.cmd)
		e, ok := err.(*Error)
		if !ok || e.Code != CodeInvalidArgument || !strings.Contains(e.Message, c.want) {
			t.Errorf("%s: got %v, want InvalidArgument containing %q", c.name, err, c.want)
		}
		if _, err := Encode(c.cmd); err == nil {
			t.Errorf("%s: Encode accepted", c.name)
		}
	}
	for _, c := range sampleCommands() {
		if err := ValidateCommand(c); err != nil {
			t.Errorf("valid %T refused: %v", c.GetCmd(), err)
		}
	}
}

func TestEncodeSizeLimit(t *testing.T) {
	n := MaxCommandSize/HashSize + 1
	hs := make([]Hash, n)
	for i := range hs {
		hs[i] = hn(uint64(i))
	}
	_, err := Encode(NewCommand(0, 0, &fsmpb.RegisterBlobs{Hashes: PackHashes(hs)}))
	if e, ok := err.(*Error); !ok || e.Code != CodeResourceExhausted {
		t.Fatalf("%v", err)
	}
	// Apply refuses an oversized entry that bypassed Encode.
	b, _ := proto.Marshal(NewCommand(0, 0, &fsmpb.RegisterBlobs{Hashes: PackHashes(hs)}))
	f := New()
	r := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: b}).(*Result)
	if r.Err == nil || r.Err.Code != CodeInvalidArgument || f.Counts().Known != 0 {
		t.Fatalf("%+v", r)
	}
	// The largest batch that fits is accepted.
	fit := (MaxCommandSize - 64) / HashSize
	if _, err := Encode(NewCommand(0, 0, &fsmpb.RegisterBlobs{Hashes: PackHashes(hs[:fit])})); err != nil {
		t.Fatal(err)
	}
}

func TestApplyUndecodableAndOtherLogTypes(t *testing.T) {
	f := New()
	h := &harness{t: t, f: f}
	h.register(mk(1))
	_, before := f.Digest()
	for i, data := range [][]byte{nil, {0xff}, []byte("garbage"), {0x08, 0x02}} {
		r := f.Apply(&raft.Log{Index: uint64(10 + i), Type: raft.LogCommand, Data: data}).(*Result)
		if r.Err == nil || r.Err.Code != CodeInvalidArgument || r.Index != uint64(10+i) {
			t.Fatalf("%q: %+v", data, r)
		}
	}
	r := f.Apply(&raft.Log{Index: 20, Type: raft.LogConfiguration, Data: []byte("x")}).(*Result)
	if r.Err != nil || f.AppliedIndex() != 20 {
		t.Fatalf("%+v", r)
	}
	ref := New()
	(&harness{t: t, f: ref}).register(mk(1))
	ref.Apply(&raft.Log{Index: 20, Type: raft.LogNoop})
	if _, after := f.Digest(); after == before {
		t.Fatal("digest ignores the applied index")
	} else if _, want := ref.Digest(); after != want {
		t.Fatal("refused entries changed the state")
	}
	if r, ok := f.Apply(nil).(*Result); !ok || r.Err == nil {
		t.Fatal("nil log")
	}
}

func TestApplyBatch(t *testing.T) {
	a, b := New(), New()
	var logs []*raft.Log
	for i, c := range sampleCommands() {
		d, _ := Encode(c)
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: d})
	}
	rs := a.ApplyBatch(logs)
	for i, l := range logs {
		r1 := rs[i].(*Result)
		r2 := b.Apply(l).(*Result)
		if (r1.Err == nil) != (r2.Err == nil) || r1.Index != r2.Index || r1.Changed != r2.Changed {
			t.Fatalf("%d: %+v vs %+v", i, r1, r2)
		}
	}
	if _, d1 := a.Digest(); true {
		if _, d2 := b.Digest(); d1 != d2 {
			t.Fatal("ApplyBatch differs from Apply")
		}
	}
}

func TestListBlobsAndHistoryPaging(t *testing.T) {
	h := newHarness(t, zeroGrace())
	var hs []Hash
	for i := uint64(0); i < 1000; i++ {
		hs = append(hs, hn(i))
	}
	hs = append(hs, Hash{}) // the zero hash is listed on the first page
	h.register(hs...)
	h.full("n", 1, hs[:600], nil)
	h.cycle()
	var all []Hash
	after := Hash{}
	for pages := 0; ; pages++ {
		page, more := h.f.ListBlobs(StatusNotFound, after, 97)
		for _, b := range page {
			all = append(all, b.Hash)
		}
		if !more {
			break
		}
		if len(page) != 97 || pages > 20 {
			t.Fatalf("page of %d", len(page))
		}
		after = page[len(page)-1].Hash
	}
	sorted := append([]Hash(nil), hs...)
	sortHashes(sorted)
	if !hashesEqual(all, sorted) {
		t.Fatalf("listed %d blobs, want %d in order", len(all), len(sorted))
	}
	marked, _ := h.f.ListBlobs(StatusMarked, Hash{}, 10000)
	if len(marked) != 401 || marked[0].Status != StatusMarked {
		t.Fatalf("%d marked", len(marked))
	}
	active, _ := h.f.ListBlobs(StatusActive, Hash{}, 0)
	if len(active) != 600 {
		t.Fatalf("%d active", len(active))
	}
	for i := 0; i < 5; i++ {
		h.cycle()
	}
	ev, more := h.f.History(0, 2)
	if len(ev) != 2 || !more || ev[0].Seq != 1 {
		t.Fatalf("%+v", ev)
	}
	ev, more = h.f.History(ev[1].Seq, 100)
	if len(ev) != 4 || more || ev[0].Seq != 3 {
		t.Fatalf("%+v", ev)
	}
	if ev[0].EligibleCount != 401 || ev[0].Preserved != 600 || ev[0].NodesReporting != 1 || ev[0].Time != h.now {
		t.Fatalf("%+v", ev[0])
	}
}

func TestCountsAndNodes(t *testing.T) {
	h := newHarness(t, zeroGrace())
	x, y, z := mk(1), mk(2), mk(3)
	h.register(x, y, z)
	h.pin(z)
	h.full("b", 4, []Hash{x, mk(9)}, []Hash{y})
	h.full("a", 1, nil, nil)
	h.cycle()
	c := h.f.Counts()
	want := Counts{Active: 1, Pinned: 2, Known: 3, NodesReporting: 2}
	if c != want {
		t.Fatalf("%+v", c)
	}
	nodes := h.f.Nodes()
	if len(nodes) != 2 || nodes[0].ID != "a" || nodes[1].Active != 2 || nodes[1].Pinned != 1 || nodes[1].Seq != 4 || nodes[0].Stale {
		t.Fatalf("%+v", nodes)
	}
	h.advance(10 * time.Minute)
	h.full("a", 2, nil, nil)
	if c := h.f.Counts(); c.NodesStale != 1 || c.NodesReporting != 1 {
		t.Fatalf("%+v", c)
	}
	if _, ok := h.f.NodeSeq("zz"); ok {
		t.Fatal("unknown node has a seq")
	}
}

// Queries run concurrently with Apply (the race detector checks the
// locking) and always see a consistent state.
func TestQueriesConcurrentWithApply(t *testing.T) {
	h := newHarness(t, zeroGrace())
	var hs []Hash
	for i := uint64(0); i < 500; i++ {
		hs = append(hs, hn(i))
	}
	h.register(hs...)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c := h.f.Counts()
				if c.Active+c.Pinned+c.Unreferenced+c.Marked+c.Deleting != c.Known || c.Known+c.Collected != 500 {
					t.Errorf("inconsistent counts %+v", c)
					return
				}
				h.f.Blob(hs[7])
				h.f.ListBlobs(StatusMarked, Hash{}, 10)
				h.f.Nodes()
				h.f.History(0, 5)
				h.f.DryRunCycle(0)
				h.f.Digest()
				h.f.ClaimIsNoop(PackHashes(hs[:300]))
				h.f.ConfirmIsNoop(PackHashes(hs[:300]))
			}
		}()
	}
	for i := 0; i < 100; i++ {
		h.advance(time.Second)
		h.full("n", uint64(i+1), hs[i:i+200], hs[:i%3])
		r := h.cycle()
		if len(r.Eligible) > 0 {
			h.claim(r.Eligible[:1]...)
			h.confirm(r.Eligible[:1]...)
		}
		if i%10 == 0 {
			sn, _ := h.f.Snapshot()
			sn.Release()
		}
	}
	close(stop)
	wg.Wait()
}
