package fsm

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/blobgc/blobgc/fsm/fsmpb"
	"pgregory.net/rapid"
)

const propHashes = 10

func propUniverse() []Hash {
	u := make([]Hash, propHashes)
	for i := range u {
		u[i] = hn(uint64(i))
		if i%2 == 0 {
			u[i][0] = 7 // share a shard: exercises probing and deletion
		}
	}
	return u
}

var propNodes = []string{"a", "b", "c"}

// TestPropertyAgainstNaiveModel runs random command sequences against the
// FSM and the naive port of the seed and compares, after every step, every
// blob's status and explanation, the counts, the nodes, and every cycle,
// prune and claim result. Now and then the FSM is replaced by one restored
// from its own snapshot, which must continue identically.
func TestPropertyAgainstNaiveModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		u := propUniverse()
		cfg := DefaultConfig()
		cfg.GracePeriod = time.Duration(rapid.SampledFrom([]int64{0, 10, 100}).Draw(rt, "grace"))
		cfg.StaleThreshold = time.Duration(rapid.SampledFrom([]int64{30, 300}).Draw(rt, "stale"))
		cfg.MinNodesReporting = rapid.IntRange(0, 2).Draw(rt, "min")
		cfg.TombstoneLimit = rapid.SampledFrom([]int{0, 1, 3, 100}).Draw(rt, "tombs")
		cfg.HistoryLimit = rapid.IntRange(1, 4).Draw(rt, "hist")
		cfg.StalePolicy = StalePolicy(rapid.IntRange(0, 1).Draw(rt, "policy"))
		cfg.MaxEligibleFraction = rapid.SampledFrom([]float64{1, 0.5, 0.2}).Draw(rt, "frac")
		h := newHarness(rt, cfg)
		m := newNaive(cfg)
		subset := func(label string) []Hash {
			idx := rapid.SliceOfN(rapid.IntRange(0, propHashes-1), 0, 6).Draw(rt, label)
			out := make([]Hash, len(idx))
			for i, j := range idx {
				out[i] = u[j]
			}
			return out
		}
		nonEmpty := func(label string) []Hash {
			for {
				if s := subset(label); len(s) > 0 {
					return s
				}
			}
		}
		seqFor := func(node string, label string) uint64 {
			cur := uint64(0)
			if n := m.nodes[node]; n != nil {
				cur = n.seq
			}
			d := rapid.SampledFrom([]int64{-1, 0, 1, 1, 1, 2}).Draw(rt, label)
			if d < 0 && cur == 0 {
				return 0
			}
			return uint64(int64(cur) + d)
		}
		reportID := uint64(0)
		replica, _ := NewWithConfig(cfg)
		cycleRuns := map[string]*CycleResult{}
		steps := rapid.IntRange(1, 80).Draw(rt, "steps")
		for step := 0; step < steps; step++ {
			// Time: usually forward; sometimes a proposer whose clock is behind.
			h.now += rapid.SampledFrom([]int64{0, 0, 5, 10, 40, 120}).Draw(rt, "dt")
			stamp := h.now
			if rapid.IntRange(0, 9).Draw(rt, "behind") == 0 {
				stamp = max(0, stamp-50)
			}
			prevNow := m.now
			m.now = max(m.now, stamp)
			by := rapid.SampledFrom([]string{"", "operator:a", "sweeper:b", SchedulerPrincipal}).Draw(rt, "by")
			idxOp := func(op any) *Result {
				h.idx++
				cmd := NewCommand(stamp, 0, op)
				cmd.Principal = by
				// A second replica applies the same log.
				replica.ApplyCommand(h.idx, cmd)
				return h.f.ApplyCommand(h.idx, cmd)
			}
			errAgree := func(r *Result, merr error) {
				if (r.Err != nil) != (merr != nil) {
					rt.Fatalf("step %d: fsm error %v, model error %v", step, r.Err, merr)
				}
				if merr != nil {
					m.now = prevNow
				}
			}
			switch op := rapid.IntRange(0, 15).Draw(rt, "op"); op {
			case 0:
				hs := nonEmpty("reg")
				idxOp(&fsmpb.RegisterBlobs{Hashes: PackHashes(hs)})
				m.register(hs)
			case 1:
				hs := nonEmpty("pin")
				r := idxOp(&fsmpb.Pin{Hashes: PackHashes(hs)})
				errAgree(r, m.pin(hs))
				if r.Err != nil && r.Err.Code != CodeFailedPrecondition {
					rt.Fatalf("pin error code %v", r.Err)
				}
			case 2:
				hs := nonEmpty("unpin")
				idxOp(&fsmpb.Unpin{Hashes: PackHashes(hs)})
				m.unpin(hs)
			case 3, 4:
				n := rapid.SampledFrom(propNodes).Draw(rt, "node")
				seq := seqFor(n, "fseq")
				a, p := subset("fa"), subset("fp")
				r := idxOp(&fsmpb.Report{NodeId: n, Kind: fsmpb.ReportKind_REPORT_KIND_FULL, Seq: seq, Active: PackHashes(a), Pinned: PackHashes(p)})
				errAgree(r, m.full(n, seq, a, p))
			case 5, 6:
				n := rapid.SampledFrom(propNodes).Draw(rt, "node")
				seq := seqFor(n, "dseq")
				aa, ra, ap, rp := subset("aa"), subset("ra"), subset("ap"), subset("rp")
				r := idxOp(&fsmpb.Report{NodeId: n, Kind: fsmpb.ReportKind_REPORT_KIND_DELTA, Seq: seq,
					Active: PackHashes(aa), RemovedActive: PackHashes(ra), Pinned: PackHashes(ap), RemovedPinned: PackHashes(rp)})
				dup, merr := m.delta(n, seq, aa, ra, ap, rp)
				errAgree(r, merr)
				if r.Duplicate != dup {
					rt.Fatalf("duplicate %v, model %v", r.Duplicate, dup)
				}
			case 7:
				n := rapid.SampledFrom(propNodes).Draw(rt, "node")
				idxOp(&fsmpb.DeregisterNode{NodeId: n})
				delete(m.nodes, n)
			case 8, 9:
				id := rapid.SampledFrom([]string{"", "", "r1", "r2", "r3"}).Draw(rt, "requestID")
				if first := cycleRuns[id]; first != nil {
					// A retried request id runs nothing: the first result again.
					r := idxOp(&fsmpb.RunCycle{RequestId: id})
					if !r.Duplicate || r.Cycle.Time != first.Time || !hashesEqual(r.Cycle.NewlyMarked, first.NewlyMarked) || r.Cycle.Skipped != first.Skipped {
						rt.Fatalf("step %d retried cycle %q: %+v, first %+v", step, id, r.Cycle, first)
					}
					break
				}
				dry := h.f.DryRunCycle(stamp)
				want := m.cycle(false)
				if !reflect.DeepEqual(dry, want) {
					rt.Fatalf("step %d dry run:\n got %+v\nwant %+v", step, dry, want)
				}
				// What a cycle may change: blobs, nodes (apart from the
				// stale flag, which moves with cluster time), history.
				observe := func() string {
					hist, _ := h.f.History(0, 0)
					nodes := h.f.Nodes()
					for i := range nodes {
						nodes[i].Stale = false
					}
					var blobs []BlobInfo
					for _, x := range u {
						blobs = append(blobs, h.f.Blob(x))
					}
					return fmt.Sprintf("%+v %+v %+v", blobs, nodes, hist)
				}
				idle, isIdle := h.f.IdleCycle(stamp)
				before := observe()
				r := idxOp(&fsmpb.RunCycle{RequestId: id})
				if id != "" {
					cycleRuns[id] = r.Cycle
				}
				if isIdle && (!reflect.DeepEqual(idle, r.Cycle) || observe() != before) {
					rt.Fatalf("step %d: a cycle called idle changed something: %+v", step, r.Cycle)
				}
				want = m.cycle(true)
				if !reflect.DeepEqual(r.Cycle, want) {
					rt.Fatalf("step %d cycle (err %v):\n got %+v\nwant %+v", step, r.Err, r.Cycle, want)
				}
				if !reflect.DeepEqual(dry, r.Cycle) {
					rt.Fatalf("dry run differs from the cycle")
				}
			case 10:
				r := idxOp(&fsmpb.PruneStaleNodes{})
				if want := m.prune(); !reflect.DeepEqual(r.Pruned, want) {
					rt.Fatalf("pruned %v, want %v", r.Pruned, want)
				}
			case 11:
				hs := nonEmpty("claim")
				// Claim mostly what is marked, to get far enough.
				if rapid.Bool().Draw(rt, "claimMarked") {
					if r := h.f.DryRunCycle(0); len(r.Eligible) > 0 {
						hs = append(hs, r.Eligible...)
					}
				}
				noopGrant, noop := h.f.ClaimIsNoop(PackHashes(hs))
				r := idxOp(&fsmpb.Claim{Hashes: PackHashes(hs)})
				if want := m.claim(hs); !hashesEqual(r.Claimed, want) {
					rt.Fatalf("claimed %s, want %s", short(r.Claimed), short(want))
				}
				if noop && (r.Changed != 0 || !hashesEqual(noopGrant, r.Claimed)) {
					rt.Fatalf("a claim called a no-op changed %d, granted %s (predicted %s)", r.Changed, short(r.Claimed), short(noopGrant))
				}
				if !noop && r.Changed == 0 {
					rt.Fatalf("a claim that changed nothing was not called a no-op")
				}
			case 12:
				hs := nonEmpty("confirm")
				noop := h.f.ConfirmIsNoop(PackHashes(hs))
				if r := idxOp(&fsmpb.ConfirmCollected{Hashes: PackHashes(hs)}); noop != (r.Changed == 0) {
					rt.Fatalf("confirm called a no-op: %v, changed %d", noop, r.Changed)
				}
				m.confirm(hs)
			case 14:
				// A full report in chunks, with a retried chunk now and then.
				n := rapid.SampledFrom(propNodes).Draw(rt, "node")
				seq := seqFor(n, "cseq")
				a, p := subset("ca"), subset("cp")
				k := rapid.IntRange(1, 3).Draw(rt, "chunks")
				reportID++
				var r *Result
				for c := 0; c < k; c++ {
					lo, hi := len(a)*c/k, len(a)*(c+1)/k
					plo, phi := len(p)*c/k, len(p)*(c+1)/k
					ch := &fsmpb.Report{NodeId: n, Kind: fsmpb.ReportKind_REPORT_KIND_CHUNK, Seq: seq, ReportId: reportID,
						ChunkIndex: uint32(c), LastChunk: c == k-1, Active: PackHashes(a[lo:hi]), Pinned: PackHashes(p[plo:phi])}
					r = idxOp(ch)
					if r.Err != nil {
						break
					}
					if rapid.IntRange(0, 3).Draw(rt, "retry") == 0 {
						h.idx++
						if rr := idxOp(ch); rr.Err != nil || !rr.Duplicate {
							rt.Fatalf("retried chunk: %+v", rr)
						}
					}
					if c < k-1 {
						h.idx++
					}
				}
				errAgree(r, m.full(n, seq, a, p))
			case 15:
				// A chunked report that is started and never finished.
				n := rapid.SampledFrom(propNodes).Draw(rt, "node")
				reportID++
				r := idxOp(&fsmpb.Report{NodeId: n, Kind: fsmpb.ReportKind_REPORT_KIND_CHUNK, Seq: 1 << 40, ReportId: reportID, Active: PackHashes(subset("sa"))})
				if r.Err != nil {
					rt.Fatalf("chunk 0: %v", r.Err)
				}
				m.now = max(prevNow, stamp) // an accepted chunk advances the cluster time
			case 13:
				switch rapid.IntRange(0, 5).Draw(rt, "cfgop") {
				case 0:
					c := m.cfg
					c.StalePolicy = 1 - c.StalePolicy
					idxOp(&fsmpb.SetConfig{StalePolicy: c.StalePolicy.Proto()})
					m.cfg = c
				case 1:
					v := rapid.SampledFrom([]int64{0, 10, 100}).Draw(rt, "g")
					idxOp(&fsmpb.SetConfig{GracePeriodNs: &v})
					m.cfg.GracePeriod = time.Duration(v)
				case 2:
					v := rapid.SampledFrom([]int64{0, 1, 2, 100}).Draw(rt, "t")
					idxOp(&fsmpb.SetConfig{TombstoneLimit: &v})
					m.cfg.TombstoneLimit = int(v)
					m.evict()
				case 3:
					v := rapid.SampledFrom([]float64{1, 0.5, 0.2}).Draw(rt, "f")
					idxOp(&fsmpb.SetConfig{MaxEligibleFraction: &v})
					m.cfg.MaxEligibleFraction = v
				case 4:
					v := int64(-1) // invalid: refused, nothing changes
					r := idxOp(&fsmpb.SetConfig{HistoryLimit: &v})
					if r.Err == nil || r.Err.Code != CodeInvalidArgument {
						rt.Fatalf("invalid config accepted: %+v", r)
					}
					m.now = prevNow
				case 5:
					// Snapshot and restore into a fresh FSM, which takes over.
					b := snapBytes(rt, h.f)
					g := New()
					if err := restoreBytes(g, b); err != nil {
						rt.Fatalf("restore: %v", err)
					}
					if b2 := snapBytes(rt, g); !bytes.Equal(b, b2) {
						rt.Fatalf("snapshot of the restored FSM differs")
					}
					_, d1 := h.f.Digest()
					_, d2 := g.Digest()
					if d1 != d2 {
						rt.Fatalf("digest differs after restore")
					}
					h.f = g
					m.now = prevNow
					h.idx--
				}
			}
			h.idx++
			compareModel(rt, step, h.f, m, u)
			_, inc := h.f.Digest()
			if _, full := h.f.RecomputeDigest(); inc != full {
				rt.Fatalf("step %d: incremental digest differs from the recomputed one", step)
			}
			if _, rd := replica.Digest(); rd != inc && replica.AppliedIndex() == h.f.AppliedIndex() {
				rt.Fatalf("step %d: replicas that applied the same log differ", step)
			}
		}
		if !bytes.Equal(snapBytes(rt, h.f), snapBytes(rt, replica)) && replica.AppliedIndex() == h.f.AppliedIndex() {
			rt.Fatal("replicas' snapshots differ")
		}
	})
}

func compareModel(rt *rapid.T, step int, f *FSM, m *naive, u []Hash) {
	for _, x := range u {
		got, want := f.Blob(x), m.info(x)
		got.Provenance = Provenance{} // the model does not keep it
		if !reflect.DeepEqual(got, want) {
			rt.Fatalf("step %d blob %x:\n got %+v\nwant %+v", step, x[:2], got, want)
		}
	}
	if got, want := f.Counts(), m.counts(); got != want {
		rt.Fatalf("step %d counts:\n got %+v\nwant %+v", step, got, want)
	}
	if f.ClusterTime() != m.now {
		rt.Fatalf("step %d cluster time %d, want %d", step, f.ClusterTime(), m.now)
	}
	nodes := f.Nodes()
	ids := m.sortedNodes()
	if len(nodes) != len(ids) {
		rt.Fatalf("step %d nodes %+v, want %v", step, nodes, ids)
	}
	for i, n := range nodes {
		mn := m.nodes[ids[i]]
		if n.ID != ids[i] || n.Seq != mn.seq || n.LastReport != mn.last || n.Active != len(mn.active) || n.Pinned != len(mn.pinned) ||
			n.Stale != (m.now-mn.last >= int64(m.cfg.StaleThreshold)) {
			rt.Fatalf("step %d node %+v, model %+v", step, n, mn)
		}
	}
	fc := f.Config()
	fc.SetBy = "" // the model does not keep it
	if fc != m.cfg {
		rt.Fatalf("config %+v, want %+v", f.Config(), m.cfg)
	}
	ev, _ := f.History(0, 1000)
	if wantLen := min(m.hist, m.cfg.HistoryLimit); len(ev) != wantLen || (wantLen > 0 && ev[len(ev)-1].Seq != uint64(m.hist)) {
		rt.Fatalf("step %d history %d events, model %d recorded (limit %d)", step, len(ev), m.hist, m.cfg.HistoryLimit)
	}
	all, _ := f.ListBlobs(StatusNotFound, Hash{}, 1000)
	if len(all) != len(m.blobs) {
		rt.Fatalf("step %d ListBlobs returned %d, model has %d", step, len(all), len(m.blobs))
	}
	for _, b := range all {
		if want := m.info(b.Hash); b.Status != want.Status || b.Since != want.Since {
			rt.Fatalf("step %d ListBlobs %+v, model %+v", step, b, want)
		}
	}
}
