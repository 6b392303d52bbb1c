package conntable

import (
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// Ended connections leave ahead of their interval. Between two Flushes
// only end events (EndTCP) and requests touch the pending records: live
// sockets are accounted at the interval's map read. A TCP record whose
// sockets all ended (an end counted, none established since) is final, so
// FlushEnded can hand it out at once instead of at the interval's end:
//
//	interval   ├── EndTCP ──┬── FlushEnded ──┬── EndTCP ─ FlushEnded ──┬── SyncTCP ─ Flush ──┤
//	records                 └ [start, t1)     └ [start, t2)              └ [start, end): the rest
//
// Every record of the interval keeps the interval's start: what it counts
// happened in [start, its Time), as the deltas of its sockets run from the
// interval's map read. The sum over the interval's records is what one
// Flush would have returned; a flow that gets another connection after its
// record left gets another record.

// final reports whether a pending record can no longer change in this
// interval: a TCP flow whose sockets all ended.
func final(p *pending) bool {
	return !p.key.udp && !p.open && p.rec.ends() > 0
}

func (c *counts) ends() uint32 { return c.Closed + c.Refused + c.TimedOut + c.FailedOther }

// Only a record with an end counted can be final, and EndTCP lists each in
// t.ended at its first, so that neither Ended nor FlushEnded walks the
// interval's records, most of them flushed already at 5k connections/s.

// Ended reports whether a record is waiting that FlushEnded would return.
func (t *Table) Ended() bool {
	for _, p := range t.ended {
		if final(p) {
			return true
		}
	}
	return false
}

// FlushEnded returns the records of flows whose sockets all ended since the
// last flush, dated [start, end) with start the interval's, and forgets
// them; the rest wait for Flush. Drops held for those flows are matched
// first, as Flush would, and request groups kept for their sockets go on
// them.
func (t *Table) FlushEnded(start, end time.Time) []flow.Record {
	t.clock.follow(end)
	t.matchDrops(end)
	// Counted first, so that the slice handed out is allocated once, at
	// its size: grown record by record (≈700 bytes each, a thousand a
	// flush at 5k connections/s) it was copied and allocated twice over,
	// and the collector paid for both.
	n := 0
	for _, p := range t.ended {
		if final(p) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]flow.Record, n)
	var rtts []flow.RTT
	kept, i := t.ended[:0], 0
	for _, p := range t.ended {
		if !final(p) {
			kept = append(kept, p)
			continue
		}
		t.placeKept(p)
		t.finish(&out[i], p, start, end, &rtts)
		i++
		t.arena.release(t.pending.remove(&t.arena, p))
	}
	clear(t.ended[len(kept):]) // kept, they would keep slabs that reset lets go
	t.ended = kept
	t.stats.Records += uint64(len(out))
	return out
}

// RequestsBetween puts request groups taken between an interval's
// flushes on their connection's record if that record is final, and keeps
// them otherwise, for the record when the connection ends (FlushEnded) or
// at the interval's end (Flush). Not a record made for them now: it would
// take a start and an owner that the interval's map read has yet to give.
func (t *Table) RequestsBetween(of RequestsOf, groups []flow.Requests) {
	k, start := t.requestsKey(&of)
	if p := t.pending.find(&t.arena, &k); p != nil && final(p) && p.cookie == of.Cookie {
		p.rec.Requests = append(p.rec.Requests, groups...)
		return
	}
	// Read while the socket is known: the start a record made for them
	// at Flush takes, should their connection's have left by then.
	of.StartNS = start
	t.kept[k] = append(t.kept[k], keptRequests{of, groups})
}

// keptRequests are groups RequestsBetween took for a record not final yet.
type keptRequests struct {
	of     RequestsOf
	groups []flow.Requests
}

// placeKept puts on a final record the groups kept for its flow that its
// last socket gave: those of a later connection on the same addresses and
// ports wait for their own record. Looked up by flow, so that an ended
// flush costs what ended, not what is open.
func (t *Table) placeKept(p *pending) {
	kept, ok := t.kept[p.key]
	if !ok {
		return
	}
	rest := kept[:0]
	for _, g := range kept {
		if g.of.Cookie == p.cookie {
			p.rec.Requests = append(p.rec.Requests, g.groups...)
		} else {
			rest = append(rest, g)
		}
	}
	clear(kept[len(rest):])
	if len(rest) == 0 {
		delete(t.kept, p.key)
	} else {
		t.kept[p.key] = rest
	}
}

// placeAllKept puts every kept group on its record at the interval's end.
func (t *Table) placeAllKept() {
	for _, kept := range t.kept {
		for _, g := range kept {
			t.Requests(g.of, g.groups)
		}
	}
	clear(t.kept)
}
