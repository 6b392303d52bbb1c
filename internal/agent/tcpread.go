package agent

import (
	"github.com/flowlens/flowlens/internal/datapath"
	"github.com/flowlens/flowlens/internal/flow"
)

// wholeReadEvery is how many intervals may pass between two reads of the
// whole tcp_socks map while nothing calls for one: the backstop for a
// socket whose end the agent never saw without the kernel counting why.
// With many sockets open the backstop is spaced by what it costs: a whole
// read takes ≈1 µs per socket (kernel read and table sweep), so one every
// sockets/1000 intervals is ≈1 ms per interval on average. Two million
// sockets (a million connections with both ends on the node) are read every
// 2,000 intervals, where every 60 would cost 2.5% of a core by itself.
const (
	wholeReadEvery   = 60
	wholeReadSpacing = 1000 // open sockets per interval between two backstop reads
)

// wholeReads decides when an interval reads the whole tcp_socks map rather
// than only the sockets the kernel marked as changed. A whole read is what
// finds a socket that left the map without an end event the agent got, so
// that it neither stays in the table forever nor is counted twice; its cost
// grows with open sockets, so it is kept for when something was lost.
type wholeReads struct {
	since int    // intervals since the last whole read; -1: none yet
	lost  uint64 // the kernel's loss counts at the last whole read
}

func newWholeReads() wholeReads { return wholeReads{since: -1} }

// due reports whether this interval reads the whole map: always where the
// kernel cannot mark changed sockets; the first interval; right after a
// whole read that missed sockets the table knew (only another one confirms
// them gone); when the kernel lost an end event or a mark since the last
// whole read; and as a backstop, every wholeReadEvery intervals or every
// one per wholeReadSpacing sockets the map holds, whichever is longer.
func (w *wholeReads) due(kc datapath.Counters, missing int, canTouched bool) bool {
	every := max(wholeReadEvery, kc.TCPEntries()/wholeReadSpacing)
	switch {
	case !canTouched, w.since < 0, missing > 0,
		lostSockets(kc) != w.lost, w.since+1 >= every:
		return true
	}
	return false
}

// done records the interval's read: whole or touched only.
func (w *wholeReads) done(kc datapath.Counters, whole bool) {
	if whole {
		w.since, w.lost = 0, lostSockets(kc)
		return
	}
	w.since++
}

// lostSockets counts what the kernel lost that a whole read recovers: end
// events the ring could not take, and marks the touched sets could not.
func lostSockets(kc datapath.Counters) uint64 { return kc.RingbufFull + kc.TouchedFull }

// logVanished names each socket counted as socket_vanished: whose it was
// tells a loss of the load from one of the host's (or the agent's own).
func (a *Agent) logVanished(vanished []flow.TCPSocket) {
	for i := range vanished {
		s := &vanished[i]
		a.log.Debug("TCP socket vanished without an end event", "cookie", s.Cookie,
			"local", s.Local, "remote", s.Remote, "role", s.Role, "netns", s.Owner.Netns,
			"pid", s.Owner.PID, "command", s.Owner.Command, "established", s.Established,
			"adopted", s.Adopted, "bytes_sent", s.BytesSent, "bytes_recv", s.BytesRecv)
	}
}
