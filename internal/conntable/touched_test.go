package conntable

import (
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
)

// A socket read as touched and then idle is neither reported again nor
// taken for gone, however many intervals read only touched sockets.
func TestTouchedIdleSocketStaysAndReportsNothing(t *testing.T) {
	tb := New(Config{})
	s := clientSock(1)
	s.BytesSent, s.SegsOut = 100, 2
	tb.TouchedTCP([]flow.TCPSocket{s})
	if r := flushOne(t, tb); r.Opened != 1 || r.BytesToDst != 100 || r.Verdict != flow.VerdictEstablished {
		t.Fatalf("first read: %+v, want opened 1, 100 bytes, established", r)
	}
	for range 10 {
		tb.TouchedTCP(nil)
		if recs := tb.Flush(t0, t1); len(recs) != 0 {
			t.Fatalf("idle socket produced %+v", recs)
		}
	}
	if st := tb.Stats(); st.Sockets != 1 || st.SocketsVanished != 0 || tb.MissingTCP() != 0 {
		t.Fatalf("after 10 touched reads without it: %+v, missing %d; want it kept", st, tb.MissingTCP())
	}
	// Its end: the bytes since the read, once.
	s.BytesSent, s.SegsOut, s.Closed = 150, 3, true
	tb.EndTCP(flow.TCPEnd{Socket: s})
	if r := flushOne(t, tb); r.Opened != 0 || r.Closed != 1 || r.BytesToDst != 50 || r.SegmentsToDst != 1 {
		t.Errorf("end: %+v, want closed 1, 50 more bytes, 1 more segment, not opened again", r)
	}
	if st := tb.Stats(); st.Sockets != 0 {
		t.Errorf("table holds %d sockets after the end", st.Sockets)
	}
}

// A socket whose end the agent never gets (its event lost to a full ring)
// is let go only when two complete reads in a row miss it, and a touched
// read between them that finds it alive keeps it.
func TestVanishedOnlyByCompleteReads(t *testing.T) {
	tb := New(Config{})
	a, b := clientSock(1), clientSock(2)
	tb.TouchedTCP([]flow.TCPSocket{a, b})
	tb.Flush(t0, t1)

	tb.SyncTCP([]flow.TCPSocket{b})
	if st := tb.Stats(); st.Sockets != 2 || tb.MissingTCP() != 1 {
		t.Fatalf("after one complete read without a: %+v, missing %d; want both kept, 1 missing", st, tb.MissingTCP())
	}
	// b goes quiet and is missed by the next complete read; a is read
	// touched (it changed) in between: not a miss after all.
	a.BytesSent = 10
	tb.TouchedTCP([]flow.TCPSocket{a})
	tb.SyncTCP([]flow.TCPSocket{a})
	if st := tb.Stats(); st.Sockets != 2 || st.SocketsVanished != 0 || tb.MissingTCP() != 1 {
		t.Fatalf("a read in between: %+v, missing %d; want both kept, b missing once", st, tb.MissingTCP())
	}
	tb.SyncTCP([]flow.TCPSocket{a})
	if st := tb.Stats(); st.Sockets != 1 || st.SocketsVanished != 1 || tb.MissingTCP() != 0 {
		t.Fatalf("b missed twice: %+v, missing %d; want b gone, counted vanished", st, tb.MissingTCP())
	}
	if r := flushOne(t, tb); r.BytesToDst != 10 || r.Opened != 0 {
		t.Errorf("a's record: %+v, want its 10 bytes, once", r)
	}
}

// A complete read and a touched read in one interval count a change once.
func TestTouchedAndCompleteReadCountOnce(t *testing.T) {
	tb := New(Config{})
	s := clientSock(1)
	s.BytesSent = 100
	tb.TouchedTCP([]flow.TCPSocket{s})
	tb.SyncTCP([]flow.TCPSocket{s})
	if r := flushOne(t, tb); r.Opened != 1 || r.BytesToDst != 100 {
		t.Errorf("%+v, want opened 1 and 100 bytes", r)
	}
}
