package cluster

// HoldHeavyReads takes every expensive-read slot of s until release is
// called, as long-running Digests would.
func (s *Server) HoldHeavyReads() (release func()) {
	for range cap(s.heavy.slots) {
		s.heavy.slots <- struct{}{}
	}
	return func() {
		for range cap(s.heavy.slots) {
			<-s.heavy.slots
		}
	}
}
