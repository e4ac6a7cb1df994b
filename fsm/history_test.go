package fsm

import "testing"

// A flood of cycles while blobs wait to be claimed adds events that only
// repeat the eligible count: they are trimmed first, so the event that
// marked the blobs stays, and so does the newest event.
func TestHistoryTrimsRepeatsFirst(t *testing.T) {
	cfg := zeroGrace()
	cfg.MinNodesReporting = 0
	cfg.HistoryLimit = 3
	h := newHarness(t, cfg)
	h.register(mk(1))
	if r := h.cycle(); len(r.NewlyMarked) != 1 {
		t.Fatalf("first cycle marked %d", len(r.NewlyMarked))
	}
	for range 10 {
		if r := h.cycle(); len(r.NewlyMarked) != 0 || len(r.Eligible) != 1 {
			t.Fatalf("repeat cycle %+v", r)
		}
	}
	ev, _ := h.f.History(0, 0)
	if len(ev) != 3 || ev[0].Seq != 1 || len(ev[0].NewlyMarked) != 1 || ev[2].Seq != 11 {
		t.Fatalf("history %+v, want the marking event 1, then repeats up to 11", ev)
	}
	// Once only marking events are left, the oldest goes.
	for i := range 3 {
		h.register(mk(byte(10 + i)))
		h.cycle()
	}
	ev, _ = h.f.History(0, 0)
	if len(ev) != 3 || ev[0].Seq != 12 || ev[2].Seq != 14 {
		t.Fatalf("history %+v, want the marking events 12-14", ev)
	}
}
