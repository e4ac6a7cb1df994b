package fsm

// Provenance: who made the changes that matter when a blob is gone. Each
// command carries its principal; the state keeps, per blob and only while
// it means something, who set its coordinator pin, who claimed it and when,
// and who confirmed its deletion and when. The records live in an ordered
// set by hash (copy-on-write for snapshots), so memory is one small record
// per pinned, DELETING or COLLECTED blob, with the principal strings
// interned.

// provRec is one blob's provenance; an empty record is not kept.
type provRec struct {
	hash        Hash
	pinnedBy    string // coordinator pin
	claimedBy   string
	claimedAt   int64 // cluster ns
	confirmedBy string
	confirmedAt int64 // cluster ns
}

func provLess(a, b provRec) bool { return cmpHash(a.hash, b.hash) < 0 }

func (r provRec) empty() bool {
	return r.pinnedBy == "" && r.claimedBy == "" && r.claimedAt == 0 && r.confirmedBy == "" && r.confirmedAt == 0
}

// Provenance says who acted on a blob.
type Provenance struct {
	CoordinatorPinnedBy string // principal that set the coordinator pin
	ClaimedBy           string // DELETING and COLLECTED: principal of the granted claim
	ClaimedAt           int64  // cluster ns of the claim
	ConfirmedBy         string // COLLECTED: principal that confirmed the deletion
	ConfirmedAt         int64  // cluster ns of the confirmation
}

// SchedulerPrincipal is the principal recorded for the leader's own
// scheduled cycles.
const SchedulerPrincipal = "scheduler"

// maxInterned bounds the interning table; principals beyond it are kept
// uninterned (correct, only less compact).
const maxInterned = 4096

// intern returns one shared copy of a principal string.
func (s *state) intern(p string) string {
	if p == "" {
		return ""
	}
	if q, ok := s.names[p]; ok {
		return q
	}
	if len(s.names) < maxInterned {
		s.names[p] = p
	}
	return p
}

func (s *state) provenance(h Hash) provRec {
	r, _ := s.prov.Get(provRec{hash: h})
	return r
}

// updateProv changes h's provenance record with fn, dropping it when empty.
func (s *state) updateProv(h Hash, fn func(*provRec)) {
	old, had := s.prov.Get(provRec{hash: h})
	r := old
	r.hash = h
	fn(&r)
	if had && r == old {
		return
	}
	if had {
		s.digestProv(old, -1)
	}
	if r.empty() {
		if had {
			s.prov.Delete(old)
		}
		return
	}
	s.prov.ReplaceOrInsert(r)
	s.digestProv(r, +1)
}

// CycleRequestWindow is how many recent RunCycle request ids the state
// remembers, with their results, to answer retries.
const CycleRequestWindow = 1000

// cycleReq is one remembered RunCycle request: its result without the
// Eligible list (a retry lists the blobs MARKED at the retry).
type cycleReq struct {
	id            string
	res           CycleResult
	eligibleCount int
}

func (s *state) findCycleReq(id string) *cycleReq {
	for i := len(s.cycleReqs) - 1; i >= 0; i-- {
		if s.cycleReqs[i].id == id {
			return &s.cycleReqs[i]
		}
	}
	return nil
}

func (s *state) rememberCycleReq(id string, res *CycleResult) {
	r := cycleReq{id: id, res: *res, eligibleCount: len(res.Eligible)}
	r.res.Eligible = nil
	s.cycleReqs = append(s.cycleReqs, r)
	s.digestCycleReq(&r, +1)
	if over := len(s.cycleReqs) - CycleRequestWindow; over > 0 {
		for i := range s.cycleReqs[:over] {
			s.digestCycleReq(&s.cycleReqs[i], -1)
		}
		// A new array: frozen views may share the old one.
		s.cycleReqs = append([]cycleReq(nil), s.cycleReqs[over:]...)
	}
}

// replayCycle answers a retried request with its first result and the
// blobs MARKED now.
func (s *state) replayCycle(r *cycleReq) *CycleResult {
	out := r.res
	s.marked.Ascend(func(h Hash) bool {
		out.Eligible = append(out.Eligible, h)
		return true
	})
	return &out
}
