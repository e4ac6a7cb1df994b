package fsm

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/blobgc/blobgc/fsm/fsmpb"
	"github.com/hashicorp/raft"
)

// benchState builds, without going through the log encoding, the state the
// issue's benchmarks describe: known blobs registered, 10 nodes whose active
// sets are disjoint and together cover half of them, one cycle run (so the
// other half is UNREFERENCED, inside the 5 minute grace period).
func benchState(tb testing.TB, known int) (*FSM, []Hash) {
	tb.Helper()
	f, hs := benchRegistered(known)
	s := f.st
	s.commitCycle(s.plan(0), 0, "")
	s.settleDigest()
	return f, hs
}

// benchRegistered is benchState before its cycle: known blobs registered,
// 10 nodes referencing half of them, no cycle run yet.
func benchRegistered(known int) (*FSM, []Hash) {
	f := New()
	s := f.st
	hs := make([]Hash, known)
	for i := range hs {
		hs[i] = hn(uint64(i))
	}
	const batch = 1 << 15
	for i := 0; i < known; i += batch {
		s.register(PackHashes(hs[i:min(known, i+batch)]))
		s.settleDigest() // as at the end of each command
	}
	per := known / 20
	for n := 0; n < 10; n++ {
		s.replaceSets(fmt.Sprintf("node-%02d", n), hs[n*per:(n+1)*per], nil, 1, 0, 0, 0)
		s.settleDigest()
	}
	s.applied = 1
	return f, hs
}

// benchApply applies an encoded command at the next index.
func benchApply(tb testing.TB, f *FSM, now int64, op any) *Result {
	b, err := Encode(NewCommand(now, 0, op))
	if err != nil {
		tb.Fatal(err)
	}
	idx := f.st.applied + 1
	r := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: b}).(*Result)
	if r.Err != nil {
		tb.Fatal(r.Err)
	}
	return r
}

// BenchmarkCycle: 10 nodes, half of the known blobs referenced, the same
// 10,000 blobs changing reference between cycles. The timed part is the
// RunCycle entry only; the delta reports causing the changes are not timed.
func BenchmarkCycle(b *testing.B) {
	for _, known := range []int{100_000, 1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("known=%d", known), func(b *testing.B) {
			f, hs := benchState(b, known)
			// Unreferenced blobs that node-09 references and drops in turn.
			changing := hs[known/2 : known/2+10_000]
			now := int64(time.Second)
			seq := uint64(1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for lo := 0; lo < len(changing); lo += 5000 {
					seq++
					part := PackHashes(changing[lo : lo+5000])
					rep := &fsmpb.Report{NodeId: "node-09", Kind: fsmpb.ReportKind_REPORT_KIND_DELTA, Seq: seq}
					if i%2 == 0 {
						rep.Active = part
					} else {
						rep.RemovedActive = part
					}
					benchApply(b, f, now, rep)
				}
				// Cluster time advances, but stays far inside the grace
				// period of the unreferenced half.
				now += int64(time.Millisecond)
				b.StartTimer()
				r := benchApply(b, f, now, &fsmpb.RunCycle{})
				b.StopTimer()
				want := f.st.counts[StatusActive]
				if r.Cycle.ActiveCount != want || (i%2 == 0 && r.Cycle.ActiveCount != known/2+10_000) {
					b.Fatalf("cycle %+v", r.Cycle)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkReportDelta: one delta report of 1,000 hash changes (500 added,
// 500 removed) from a node with 50,000 references among 1M known blobs,
// decoded and applied through Apply.
func BenchmarkReportDelta(b *testing.B) {
	f, hs := benchState(b, 1_000_000)
	// node-00 references hs[0:50000]; alternate 500 in / 500 out.
	in, out := hs[50_000:50_500], hs[0:500]
	var enc [2][]byte
	mkDelta := func(seq uint64, add, rem []Hash) []byte {
		d, err := Encode(NewCommand(1, 0, &fsmpb.Report{NodeId: "node-00", Kind: fsmpb.ReportKind_REPORT_KIND_DELTA, Seq: seq,
			Active: PackHashes(add), RemovedActive: PackHashes(rem)}))
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	_ = enc
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		seq := uint64(2 + i)
		var d []byte
		if i%2 == 0 {
			d = mkDelta(seq, in, out)
		} else {
			d = mkDelta(seq, out, in)
		}
		b.StartTimer()
		r := f.Apply(&raft.Log{Index: uint64(10 + i), Type: raft.LogCommand, Data: d}).(*Result)
		if r.Err != nil || r.Changed != 1000 {
			b.Fatalf("%+v", r)
		}
	}
	b.StopTimer()
	_ = start
	b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "hashes/s")
}

// BenchmarkReportFull100: full reports of 100 hashes from 16 nodes in
// turn, decoded and applied through Apply: the state machine's share of the
// cluster benchmark BenchmarkFullReport100. fresh: each report replaces the
// node's previous 100 hashes by 100 new ones (what the cluster benchmark
// sends); repeat: each report repeats the node's previous one;
// fresh/known=5000000: fresh into a table of 5M registered blobs, where
// lookups, inserts and removes miss the CPU caches.
func BenchmarkReportFull100(b *testing.B) {
	const nodes, per = 16, 100
	for _, c := range []struct {
		name  string
		fresh bool
		known int // blobs registered before, so that lookups miss the caches
	}{{"fresh", true, 0}, {"repeat", false, 0}, {"fresh/known=5000000", true, 5_000_000}} {
		changed := 2 * per
		if !c.fresh {
			changed = 0
		}
		b.Run(c.name, func(b *testing.B) {
			f := New()
			if c.known > 0 {
				f, _ = benchState(b, c.known)
			}
			hs := make([]Hash, per)
			enc := func(i int) []byte {
				set := i
				if !c.fresh {
					set = i % nodes
				}
				for j := range hs {
					hs[j] = hn(uint64(c.known + set*per + j))
				}
				d, err := Encode(NewCommand(1, 0, &fsmpb.Report{NodeId: fmt.Sprintf("vm-%d", i%nodes), Kind: fsmpb.ReportKind_REPORT_KIND_FULL,
					Seq: uint64(1 + i/nodes), Active: PackHashes(hs)}))
				if err != nil {
					b.Fatal(err)
				}
				return d
			}
			for i := 0; i < nodes; i++ {
				f.Apply(&raft.Log{Index: f.st.applied + 1, Type: raft.LogCommand, Data: enc(i)})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				d := enc(nodes + i)
				b.StartTimer()
				r := f.Apply(&raft.Log{Index: f.st.applied + 1, Type: raft.LogCommand, Data: d}).(*Result)
				if r.Err != nil || r.Changed != changed {
					b.Fatalf("%+v", r)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reports/s")
		})
	}
}

// BenchmarkSnapshot: the Snapshot() call (freeze) at 10M known blobs.
func BenchmarkSnapshot(b *testing.B) {
	for _, known := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("known=%d", known), func(b *testing.B) {
			f, _ := benchState(b, known)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sn, err := f.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				sn.Release()
			}
		})
	}
}

// BenchmarkPersist: streaming a frozen snapshot (to io.Discard).
func BenchmarkPersist(b *testing.B) {
	for _, known := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("known=%d", known), func(b *testing.B) {
			f, _ := benchState(b, known)
			sn, _ := f.Snapshot()
			n, err := sn.(*Snap).WriteTo(io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := sn.(*Snap).WriteTo(io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRestore: reading and validating a snapshot stream into a new state.
func BenchmarkRestore(b *testing.B) {
	for _, known := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("known=%d", known), func(b *testing.B) {
			f, _ := benchState(b, known)
			data := snapBytes(b, f)
			f = nil
			runtime.GC()
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				g := New()
				if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// stateHeap returns the live heap of the benchmark state of known blobs
// (half of them referenced by 10 nodes) and its budget: 100 bytes a known
// blob plus 16 a (node, active blob) reference.
func stateHeap(tb testing.TB, known int) (heap, budget float64) {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	f, hs := benchState(tb, known)
	hs = nil
	runtime.GC()
	runtime.ReadMemStats(&m1)
	runtime.KeepAlive(f)
	runtime.KeepAlive(hs)
	return float64(m1.HeapAlloc) - float64(m0.HeapAlloc), 100*float64(known) + 16*float64(known/2)
}

// BenchmarkMemory reports the live heap of the benchmark state per known
// blob, and against the budget of 100 bytes per known blob plus 16 bytes per
// (node, active blob) reference (budget_ratio <= 1 meets it).
func BenchmarkMemory(b *testing.B) {
	for _, known := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("known=%d", known), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				heap, budget := stateHeap(b, known)
				b.ReportMetric(heap/float64(known), "B/blob")
				b.ReportMetric(heap/budget, "budget_ratio")
			}
		})
	}
}

// BenchmarkDeltaAfterSnapshot: the first delta report (1,000 random hash
// changes) applied after each Snapshot(): it pays the copy-on-write of
// everything it touches that the snapshot shares.
func BenchmarkDeltaAfterSnapshot(b *testing.B) {
	for _, known := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("known=%d", known), func(b *testing.B) {
			f, hs := benchState(b, known)
			per := known / 20
			// node-00 references hs[0:per]; move 500 random ones out and 500
			// unreferenced ones in, alternating.
			var in, out []Hash
			for i := 0; i < 500; i++ {
				out = append(out, hs[(i*7919)%per])
				in = append(in, hs[known/2+(i*7919)%(known/2)])
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				sn, _ := f.Snapshot()
				rep := &fsmpb.Report{NodeId: "node-00", Kind: fsmpb.ReportKind_REPORT_KIND_DELTA, Seq: uint64(2 + i)}
				if i%2 == 0 {
					rep.Active, rep.RemovedActive = PackHashes(in), PackHashes(out)
				} else {
					rep.Active, rep.RemovedActive = PackHashes(out), PackHashes(in)
				}
				b.StartTimer()
				benchApply(b, f, 1, rep)
				b.StopTimer()
				sn.Release()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkCycleSweep: the benchmark fixture with the unreferenced half
// coordinator-pinned and a zero grace period; every cycle marks the same
// 10,000 blobs, which the sweeper then claims and confirms and which are
// registered and referenced again before the next cycle (none of that is
// timed). The timed cycle changes 10,000 statuses, marks 10,000 blobs and
// returns them in Eligible.
func BenchmarkCycleSweep(b *testing.B) {
	for _, known := range []int{100_000, 1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("known=%d", known), func(b *testing.B) {
			f, hs := benchState(b, known)
			s := f.st
			for i := known / 2; i < known; i += 1 << 15 {
				if _, e := s.pin(PackHashes(hs[i:min(known, i+1<<15)]), ""); e != nil {
					b.Fatal(e)
				}
			}
			s.config.GracePeriod = 0
			s.commitCycle(s.plan(1), 0, "")
			s.settleDigest()
			sweep := hs[:10_000] // referenced by node-00 (and node-01 at 100k)
			per := known / 20
			now, seq := int64(2), uint64(1)
			nodeDelta := func(add bool) {
				for n := 0; n*per < len(sweep); n++ {
					part := PackHashes(sweep[n*per : min(len(sweep), (n+1)*per)])
					rep := &fsmpb.Report{NodeId: fmt.Sprintf("node-%02d", n), Kind: fsmpb.ReportKind_REPORT_KIND_DELTA, Seq: seq + 1}
					if add {
						rep.Active = part
					} else {
						rep.RemovedActive = part
					}
					benchApply(b, f, now, rep)
				}
				seq++
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				nodeDelta(false)
				now++
				b.StartTimer()
				r := benchApply(b, f, now, &fsmpb.RunCycle{})
				b.StopTimer()
				if len(r.Cycle.NewlyMarked) != len(sweep) || len(r.Cycle.Eligible) != len(sweep) {
					b.Fatalf("marked %d, eligible %d", len(r.Cycle.NewlyMarked), len(r.Cycle.Eligible))
				}
				packed := PackHashes(sweep)
				if got := benchApply(b, f, now, &fsmpb.Claim{Hashes: packed}).Claimed; len(got) != len(sweep) {
					b.Fatalf("claimed %d", len(got))
				}
				benchApply(b, f, now, &fsmpb.ConfirmCollected{Hashes: packed})
				benchApply(b, f, now, &fsmpb.RegisterBlobs{Hashes: packed})
				nodeDelta(true)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkRegister1000: RegisterBlobs of 1,000 fresh hashes per entry,
// decoded and applied through Apply, into a table that already holds
// `known` blobs: the state machine's share of the cluster benchmark
// BenchmarkRegister1000. At millions of blobs the table's slots and entries
// no longer fit in the CPU caches, so this measures memory latency as much
// as code.
func BenchmarkRegister1000(b *testing.B) {
	const per = 1000
	for _, known := range []int{100_000, 5_000_000} {
		b.Run(fmt.Sprintf("known=%d", known), func(b *testing.B) {
			f, _ := benchState(b, known)
			hs := make([]Hash, per)
			next := uint64(known)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for j := range hs {
					hs[j] = hn(next)
					next++
				}
				d, err := Encode(NewCommand(1, 0, &fsmpb.RegisterBlobs{Hashes: PackHashes(hs)}))
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				r := f.Apply(&raft.Log{Index: f.st.applied + 1, Type: raft.LogCommand, Data: d}).(*Result)
				if r.Err != nil || r.Changed != per {
					b.Fatalf("%+v", r)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(per*b.N)/b.Elapsed().Seconds(), "hashes/s")
		})
	}
}

// BenchmarkFirstCycle: the first cycle after `known` blobs were registered
// and 10 nodes reported half of them: it visits every blob and turns the
// unreferenced half UNREFERENCED, the one cycle whose work grows with the
// whole state. Timed through Apply, setup not timed.
func BenchmarkFirstCycle(b *testing.B) {
	for _, known := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("known=%d", known), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				f, _ := benchRegistered(known)
				b.StartTimer()
				r := benchApply(b, f, 1, &fsmpb.RunCycle{})
				if r.Cycle == nil || r.Cycle.UnreferencedCount != known/2 {
					b.Fatalf("%+v", r.Cycle)
				}
			}
		})
	}
}
