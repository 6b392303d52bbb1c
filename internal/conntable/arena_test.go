package conntable

import (
	"net/netip"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
)

// An interval's records are the caller's: the next interval, which reuses
// the slabs their pending records lived in, leaves them as they were, and
// starts each record from zero.
func TestRecordsOutliveTheirSlabs(t *testing.T) {
	tb := New(Config{})
	s := clientSock(1)
	s.BytesSent = 100
	tb.TouchedTCP([]flow.TCPSocket{s})
	first := tb.Flush(t0, t1)
	s.BytesSent = 130
	tb.TouchedTCP([]flow.TCPSocket{s})
	second := tb.Flush(t0, t1)
	if len(first) != 1 || first[0].BytesToDst != 100 || first[0].Opened != 1 {
		t.Errorf("first interval's record after the second: %+v, want 100 bytes, opened 1", first)
	}
	if len(second) != 1 || second[0].BytesToDst != 30 || second[0].Opened != 0 {
		t.Errorf("second interval: %+v, want 30 bytes, not opened again", second)
	}
	// More records than a slab holds, then fewer: the spare slabs go.
	many := make([]flow.TCPSocket, slabSize+1)
	for i := range many {
		many[i] = clientSock(uint64(10 + i))
		many[i].Remote = netip.AddrPortFrom(server.Addr(), uint16(1000+i))
		many[i].BytesSent = 1
	}
	tb.TouchedTCP(many)
	if n := len(tb.Flush(t0, t1)); n != slabSize+1 {
		t.Fatalf("%d records, want %d", n, slabSize+1)
	}
	if len(tb.arena.slabs) != 2 {
		t.Fatalf("%d slabs for %d records, want 2", len(tb.arena.slabs), slabSize+1)
	}
	s.BytesSent = 131
	tb.TouchedTCP([]flow.TCPSocket{s})
	tb.Flush(t0, t1)
	if len(tb.arena.slabs) != 1 {
		t.Errorf("%d slabs kept after an interval of 1 record, want 1", len(tb.arena.slabs))
	}
}

// Records FlushEnded hands out give their slots to the next connections:
// an interval of short connections flushed as they end holds a flush's
// worth of slots, not the interval's, and a slot taken again starts from
// zero.
func TestFlushedSlotsAreTakenAgain(t *testing.T) {
	tb := New(Config{})
	const flushes, perFlush = 8, slabSize / 2
	var recs []flow.Record
	for f := range flushes {
		for i := range perFlush {
			n := f*perFlush + i
			s := sockAt(uint64(100+n), netip.AddrPortFrom(client.Addr(), uint16(10000+n)), uint64(n+1), 0)
			tb.EndTCP(flow.TCPEnd{Socket: s})
		}
		recs = append(recs, tb.FlushEnded(t0, t1)...)
	}
	if tb.arena.used != perFlush || len(tb.arena.slabs) != 1 {
		t.Errorf("%d slots in %d slabs handed out for %d flushes of %d, want %d in 1", tb.arena.used, len(tb.arena.slabs), flushes, perFlush, perFlush)
	}
	if len(recs) != flushes*perFlush {
		t.Fatalf("%d records, want %d", len(recs), flushes*perFlush)
	}
	for _, r := range recs {
		if want := uint64(r.Source.Port-10000) + 1; r.BytesToDst != want || r.Opened != 1 || r.Closed != 1 {
			t.Fatalf("record of port %d: %d bytes, opened %d, closed %d; want %d, 1, 1", r.Source.Port, r.BytesToDst, r.Opened, r.Closed, want)
		}
	}
	if rest := tb.Flush(t0, t1); len(rest) != 0 {
		t.Errorf("%d records at the interval's end, want none: every one left early", len(rest))
	}
}
