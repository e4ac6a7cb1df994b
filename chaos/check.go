package chaos

import (
	"fmt"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"

	blobgcv1 "github.com/blobgc/blobgc/api/blobgc/v1"
	"github.com/blobgc/blobgc/fsm"
)

// Violation is one broken invariant.
type Violation struct {
	Invariant int // 1-6 as in DESIGN.md; 7 = one leader per term
	Msg       string
}

func (v Violation) String() string { return fmt.Sprintf("invariant %d: %s", v.Invariant, v.Msg) }

// Invariant numbers beyond DESIGN.md's six.
const InvLeaderPerTerm = 7

// byNode returns each node's report operations in invocation order (a
// node's reports are sequential).
func byNode(ops []Op) map[string][]Op {
	m := map[string][]Op{}
	for _, o := range ops {
		if o.Kind == OpReport {
			m[o.Node] = append(m[o.Node], o)
		}
	}
	return m
}

func byHash(ops []Op, kinds ...Kind) map[Hash][]Op {
	m := map[Hash][]Op{}
	for _, o := range ops {
		if slices.Contains(kinds, o.Kind) {
			for _, h := range o.Hashes {
				m[h] = append(m[h], o)
			}
		}
	}
	return m
}

// claimUnsafe says why claim c must not have granted h, or "" if it may
// have. Before c was invoked, an acknowledged report of a node listed h (or
// an acknowledged Pin held it), and nothing that could have dropped it (a
// later report of that node without h, an Unpin of h, of any outcome) was
// invoked before c returned. Stale reports play no part: scenarios use a
// stale threshold far longer than a run.
func claimUnsafe(c Op, h Hash, nodes map[string][]Op, pins, unpins map[Hash][]Op) string {
	for node, reps := range nodes {
		last := -1 // the last report invoked before c returned that drops h
		for i, r := range reps {
			if r.Invoke < c.Return && !r.Has(h) {
				last = i
			}
		}
		for i := last + 1; i < len(reps); i++ {
			r := reps[i]
			if r.Outcome == OK && r.Has(h) && r.Return < c.Invoke {
				return fmt.Sprintf("node %s's report (op %d, acked at %v) lists it", node, r.ID, r.Return)
			}
		}
	}
	for _, p := range pins[h] {
		if p.Outcome != OK || p.Return >= c.Invoke {
			continue
		}
		undone := false
		for _, u := range unpins[h] {
			if u.Invoke < c.Return {
				undone = true
			}
		}
		if !undone {
			return fmt.Sprintf("pin (op %d, acked at %v) holds it", p.ID, p.Return)
		}
	}
	return ""
}

// CheckClaims is invariant 1 seen from clients: no claim invoked after a
// live node's report listing X, or a pin of X, was acknowledged grants X
// unless something that could drop that protection was invoked first.
func CheckClaims(ops []Op) []Violation {
	nodes, pins, unpins := byNode(ops), byHash(ops, OpPin), byHash(ops, OpUnpin)
	var vs []Violation
	for _, c := range ops {
		if c.Kind != OpClaim {
			continue
		}
		for _, h := range c.Granted {
			if why := claimUnsafe(c, h, nodes, pins, unpins); why != "" {
				vs = append(vs, Violation{1, fmt.Sprintf("claim op %d [%v, %v] granted %s although %s", c.ID, c.Invoke, c.Return, h, why)})
			}
		}
	}
	return vs
}

// CheckSweeper is invariant 6: every file missing from the store at the end
// was deleted after a granted claim, and no deleted file's claim was unsafe
// (a live VM's acknowledged report listed it). gone lists the hashes whose
// files are missing at the end.
func CheckSweeper(ops []Op, gone []Hash) []Violation {
	nodes, pins, unpins := byNode(ops), byHash(ops, OpPin), byHash(ops, OpUnpin)
	grantedBy := map[Hash][]Op{}
	for _, c := range ops {
		if c.Kind == OpClaim {
			for _, h := range c.Granted {
				grantedBy[h] = append(grantedBy[h], c)
			}
		}
	}
	var vs []Violation
	for _, h := range gone {
		if len(grantedBy[h]) == 0 {
			vs = append(vs, Violation{6, fmt.Sprintf("file of %s is gone but no claim granted it", h)})
		}
	}
	for _, d := range ops {
		if d.Kind != OpDelete {
			continue
		}
		for _, h := range d.Hashes {
			for _, c := range grantedBy[h] {
				if c.Invoke > d.Return {
					continue
				}
				if why := claimUnsafe(c, h, nodes, pins, unpins); why != "" {
					vs = append(vs, Violation{6, fmt.Sprintf("sweeper deleted %s (claim op %d) although %s", h, c.ID, why)})
				}
			}
		}
	}
	return vs
}

// FinalState reads the end state of one converged server.
type FinalState interface {
	Blob(h fsm.Hash) fsm.BlobInfo
}

// CheckNoLostWrites is invariant 3, against the converged end state:
//   - an acknowledged RegisterBlobs left the blob known (tombstones count);
//   - a blob with an acknowledged Pin and no Unpin invoked after that pin
//     was invoked is still coordinator-pinned, and one with an acknowledged
//     Unpin and no Pin that could have been applied after it is not;
//   - a node whose last report was acknowledged holds exactly those sets.
func CheckNoLostWrites(ops []Op, end FinalState) []Violation {
	var vs []Violation
	seen := map[Hash]bool{}
	for _, o := range ops {
		if o.Kind != OpRegister || o.Outcome != OK {
			continue
		}
		for _, h := range o.Hashes {
			if seen[h] {
				continue
			}
			seen[h] = true
			if end.Blob(h).Status == fsm.StatusNotFound {
				vs = append(vs, Violation{3, fmt.Sprintf("register op %d of %s was acked but the blob is unknown", o.ID, h)})
			}
		}
	}
	pins, unpins := byHash(ops, OpPin), byHash(ops, OpUnpin)
	hashes := map[Hash]bool{}
	for h := range pins {
		hashes[h] = true
	}
	for h := range unpins {
		hashes[h] = true
	}
	for h := range hashes {
		pinned := end.Blob(h).CoordinatorPin
		for _, p := range pins[h] {
			if p.Outcome != OK {
				continue
			}
			later := false
			for _, u := range unpins[h] {
				if u.Return >= p.Invoke {
					later = true
				}
			}
			if !later && !pinned {
				vs = append(vs, Violation{3, fmt.Sprintf("pin op %d of %s was acked, never undone, but the blob is not pinned", p.ID, h)})
			}
		}
		for _, u := range unpins[h] {
			if u.Outcome != OK {
				continue
			}
			later := false
			for _, p := range pins[h] {
				if p.Outcome != Failed && p.Return >= u.Invoke {
					later = true
				}
			}
			if !later && pinned {
				vs = append(vs, Violation{3, fmt.Sprintf("unpin op %d of %s was acked, never undone, but the blob is pinned", u.ID, h)})
			}
		}
	}
	for node, reps := range byNode(ops) {
		last := reps[len(reps)-1]
		if last.Outcome != OK {
			continue
		}
		universe := map[Hash]bool{}
		for _, r := range reps {
			for _, h := range append(slices.Clone(r.Active), r.Pinned...) {
				universe[h] = true
			}
		}
		for h := range universe {
			b := end.Blob(h)
			if got, want := slices.Contains(b.ReferencedBy, node), slices.Contains(last.Active, h); got != want {
				vs = append(vs, Violation{3, fmt.Sprintf("node %s's last acked report (op %d) has %s active=%v, cluster says %v", node, last.ID, h, want, got)})
			}
			if got, want := slices.Contains(b.PinnedBy, node), slices.Contains(last.Pinned, h); got != want {
				vs = append(vs, Violation{3, fmt.Sprintf("node %s's last acked report (op %d) has %s pinned=%v, cluster says %v", node, last.ID, h, want, got)})
			}
		}
	}
	return vs
}

type pinInput struct{ op Kind }

// pinModel is the per-hash model of coordinator pins: the state is whether
// the hash is pinned; Pin sets it, Unpin clears it, a status read returns it.
var pinModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		m := map[Hash][]porcupine.Operation{}
		var keys []Hash
		for _, o := range history {
			h := o.Metadata.(Hash)
			if _, ok := m[h]; !ok {
				keys = append(keys, h)
			}
			m[h] = append(m[h], o)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, m[k])
		}
		return out
	},
	Init: func() interface{} { return false },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		switch input.(pinInput).op {
		case OpPin:
			return true, true
		case OpUnpin:
			return true, false
		default:
			return output.(bool) == state.(bool), state
		}
	},
	DescribeOperation: func(input, output interface{}) string {
		if k := input.(pinInput).op; k != OpStatus {
			return k.String()
		}
		return fmt.Sprintf("status -> pinned=%v", output)
	},
}

// PinOperations turns the pin, unpin and status-read operations into a
// porcupine history: failed operations are dropped (refused, no effect),
// unknown writes return at infinity, unknown reads are dropped (no effect,
// no answer).
func PinOperations(ops []Op) []porcupine.Operation {
	var out []porcupine.Operation
	for _, o := range ops {
		if (o.Kind != OpPin && o.Kind != OpUnpin && o.Kind != OpStatus) || o.Outcome == Failed {
			continue
		}
		if o.Kind == OpStatus && o.Outcome != OK {
			continue
		}
		for _, h := range o.Hashes {
			ret := int64(o.Return)
			out = append(out, porcupine.Operation{
				ClientId: o.Client, Input: pinInput{o.Kind}, Output: o.CoordinatorPin,
				Call: int64(o.Invoke), Return: ret, Metadata: h,
			})
		}
	}
	return out
}

// CheckLinearizable is invariant 5: pins, unpins and status reads are
// linearizable per hash.
func CheckLinearizable(ops []Op, timeout time.Duration) []Violation {
	hist := PinOperations(ops)
	res := porcupine.CheckOperationsTimeout(pinModel, hist, timeout)
	switch res {
	case porcupine.Ok:
		return nil
	case porcupine.Unknown:
		return []Violation{{5, fmt.Sprintf("linearizability check of %d operations timed out after %v", len(hist), timeout)}}
	}
	return []Violation{{5, fmt.Sprintf("the history of %d pin/unpin/status operations is not linearizable", len(hist))}}
}

// CheckDigests is invariant 4: every server holds the same digest at the same
// applied index.
func CheckDigests(idx []uint64, digests [][32]byte) []Violation {
	for i := 1; i < len(idx); i++ {
		if idx[i] != idx[0] || digests[i] != digests[0] {
			return []Violation{{4, fmt.Sprintf("server %d at index %d digest %x, server 0 at index %d digest %x", i, idx[i], digests[i][:6], idx[0], digests[0][:6])}}
		}
	}
	return nil
}

// CheckGraceHistory is invariant 2 in exact cluster time: for each mark the
// observer saw after seeing the blob's unreferenced episode begin (its
// since), the history event of the cycle that marked it ran at least the
// grace period after that since.
func CheckGraceHistory(marks []MarkRecord, events []fsm.HistoryEvent, grace time.Duration) (checked int, vs []Violation) {
	for _, m := range marks {
		for _, e := range events {
			if e.Time < m.Since || e.Time > m.By || !slices.Contains(e.NewlyMarked, m.Hash) {
				continue
			}
			checked++
			if d := time.Duration(e.Time - m.Since); d < grace {
				vs = append(vs, Violation{2, fmt.Sprintf("cycle %d marked %s %v (cluster time) after it became unreferenced; grace %v", e.Seq, m.Hash, d, grace)})
			}
			break
		}
	}
	return checked, vs
}

// CheckClockRate is the wall-time half of invariant 2: between any two
// cycles, cluster time advanced no more than wall time (each leader stamps
// a command with both at once). With the cluster-time check this bounds
// every grace period in wall time too: a leader whose cluster clock ran
// ahead (started from its own wall clock, say, instead of the last applied
// cluster time) is caught here. slack absorbs the wall clock's own
// adjustments; in-process all servers share one clock.
func CheckClockRate(events []fsm.HistoryEvent, slack time.Duration) []Violation {
	for i := 1; i < len(events); i++ {
		a, b := events[i-1], events[i]
		dc, dw := time.Duration(b.Time-a.Time), time.Duration(b.WallTime-a.WallTime)
		if dc > dw+slack {
			return []Violation{{2, fmt.Sprintf("cluster time ran ahead of wall time between cycles %d and %d: %v in %v", a.Seq, b.Seq, dc, dw)}}
		}
	}
	return nil
}

// statusOf is what a status read answers for the model.
func statusOf(st *blobgcv1.BlobStatus) (bool, blobgcv1.BlobState) {
	return st.GetCoordinatorPin(), st.GetState()
}
