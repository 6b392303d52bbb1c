package conntable

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

var (
	longLived = netip.MustParseAddrPort("10.0.0.1:40001")
	stillOpen = netip.MustParseAddrPort("10.0.0.1:40002")
	refused   = netip.MustParseAddrPort("10.0.0.1:40003")
)

func sockAt(cookie uint64, local netip.AddrPort, sent, recv uint64) flow.TCPSocket {
	s := clientSock(cookie)
	s.Local, s.BytesSent, s.BytesRecv, s.SegsOut, s.SegsIn = local, sent, recv, 3, 4
	return s
}

// earlyInterval sets tb up and returns one interval's observations, fed
// alike to a table flushed only at the interval's end and to one that also
// flushes ended connections after each: the first's records are the truth
// the second's must add up to. Before it a long-lived socket was read with 100 bytes
// sent and a socket still open at its end with 10; in it, a short
// connection, the long-lived one ending at 700, a refused connect whose
// SYN was dropped, another short connection on the first one's port (after
// the first's record left), and the open socket read at the end with 60.
func earlyInterval(tb *Table) []func(tb *Table) {
	tb.SyncTCP([]flow.TCPSocket{sockAt(1, longLived, 100, 0), sockAt(2, stillOpen, 10, 0)})
	tb.Flush(t0.Add(-time.Second), t0)
	return []func(tb *Table){
		func(tb *Table) { tb.EndTCP(flow.TCPEnd{Socket: sockAt(3, client, 1000, 5000)}) },
		func(tb *Table) {
			tb.EndTCP(flow.TCPEnd{Socket: sockAt(1, longLived, 700, 50)})
			tb.Drops([]flow.Drop{{Reason: "no_socket", Count: 1, Netns: 99, FromPacket: true, Protocol: flow.TCP, Local: refused, Remote: server}})
			s := sockAt(4, refused, 0, 0)
			s.Established = false
			tb.EndTCP(flow.TCPEnd{Socket: s, Failed: true, Errno: int32(syscall.ECONNREFUSED)})
		},
		func(tb *Table) { tb.EndTCP(flow.TCPEnd{Socket: sockAt(5, client, 30, 40)}) },
		func(tb *Table) { tb.SyncTCP([]flow.TCPSocket{sockAt(2, stillOpen, 60, 0)}) },
	}
}

type sums struct {
	opened, closed, refused uint32
	bytesToDst, bytesToSrc  uint64
	segsToDst, segsToSrc    uint32
	drops                   uint64
}

func sumOf(recs []flow.Record) sums {
	var s sums
	for _, r := range recs {
		s.opened += r.Opened
		s.closed += r.Closed
		s.refused += r.Refused
		s.bytesToDst += r.BytesToDst
		s.bytesToSrc += r.BytesToSrc
		s.segsToDst += r.SegmentsToDst
		s.segsToSrc += r.SegmentsToSrc
		s.drops += r.Drops["no_socket"]
	}
	return s
}

// An ended connection's record leaves at the first FlushEnded after its
// end, dated from the interval's start to then, and the interval's records
// add up to exactly what one Flush at its end gives.
func TestEndedConnectionsLeaveBeforeTheIntervalEnds(t *testing.T) {
	whole := New(Config{})
	for _, step := range earlyInterval(whole) {
		step(whole)
	}
	want := whole.Flush(t0, t1)

	early := New(Config{})
	steps := earlyInterval(early)
	before := early.Stats().Records
	var got []flow.Record
	var left [][]flow.Record // what each FlushEnded returned
	for i, step := range steps {
		step(early)
		at := t0.Add(time.Duration(i+1) * 100 * time.Millisecond)
		recs := early.FlushEnded(t0, at)
		for _, r := range recs {
			if !r.Start.Equal(t0) || !r.Time.Equal(at) {
				t.Errorf("early record from port %d dated [%v, %v), want [%v, %v)", r.Source.Port, r.Start, r.Time, t0, at)
			}
		}
		left = append(left, recs)
		got = append(got, recs...)
	}
	if early.Ended() {
		t.Errorf("an ended record still waits after FlushEnded")
	}
	rest := early.Flush(t0, t1)
	got = append(got, rest...)

	// Each ended connection left with the flush after its end: the short
	// one; the long-lived one's last 600 bytes and the refused connect
	// with its dropped SYN; the second connection on the first's port.
	var counts []int
	for _, recs := range left {
		counts = append(counts, len(recs))
	}
	if len(counts) != 4 || counts[0] != 1 || counts[1] != 2 || counts[2] != 1 || counts[3] != 0 {
		t.Fatalf("FlushEnded returned %v records, want [1 2 1 0]", counts)
	}
	for _, r := range left[1] {
		if r.Source.Port == refused.Port() && (r.Verdict != flow.VerdictRefused || r.Drops["no_socket"] != 1) {
			t.Errorf("refused connect's early record %+v, want refused with its dropped SYN", r)
		}
	}
	if r := left[0][0]; r.Source.Port != 40000 || r.Opened != 1 || r.Closed != 1 || r.BytesToDst != 1000 || r.Verdict != flow.VerdictClosed {
		t.Errorf("first early record %+v, want the short connection, opened and closed, 1000 bytes", r)
	}
	if len(rest) != 1 || rest[0].Source.Port != 40002 || rest[0].BytesToDst != 50 || rest[0].Verdict != flow.VerdictEstablished {
		t.Errorf("at the interval's end %+v, want only the open socket's 50 bytes", rest)
	}
	if g, w := sumOf(got), sumOf(want); g != w {
		t.Errorf("totals with early flushes %+v, want those of one flush %+v", g, w)
	}
	// The port's two connections: two records early, one at the end.
	if len(got) != len(want)+1 {
		t.Errorf("%d records with early flushes, want %d: the reused port's second connection apart", len(got), len(want)+1)
	}
	if w := (sums{opened: 2, closed: 3, refused: 1, bytesToDst: 1680, bytesToSrc: 5090, segsToDst: 9, segsToSrc: 12, drops: 1}); sumOf(want) != w {
		t.Errorf("one flush's totals %+v, want %+v", sumOf(want), w)
	}
	if st := early.Stats(); st.Records-before != uint64(len(got)) || st.DropsUnmatched != 0 {
		t.Errorf("stats %+v: want %d records more, no drop unmatched", st, len(got))
	}
}

// Requests of an ended connection go on its early record; those of an
// open one wait for its record: at its end if it ends before the
// interval does (the groups were taken while it was open, its record
// leaves early), else at the interval's end.
func TestRequestsBetweenWaitForTheirRecord(t *testing.T) {
	tb := New(Config{})
	tb.SyncTCP([]flow.TCPSocket{sockAt(1, client, 10, 0), sockAt(2, stillOpen, 10, 0)})
	tb.Flush(t0.Add(-time.Second), t0)
	of := func(cookie uint64, local netip.AddrPort) RequestsOf {
		return RequestsOf{Protocol: flow.TCP, Cookie: cookie, Role: flow.RoleClient, Local: local, Remote: server,
			Owner: flow.Owner{PID: 42, Netns: 7}}
	}
	tb.EndTCP(flow.TCPEnd{Socket: sockAt(3, longLived, 300, 900)})
	tb.RequestsBetween(of(3, longLived), []flow.Requests{get200})
	tb.RequestsBetween(of(1, client), []flow.Requests{get200, get200})
	tb.RequestsBetween(of(2, stillOpen), []flow.Requests{get200})
	requests := func(recs []flow.Record) map[uint16]int {
		n := map[uint16]int{}
		for _, r := range recs {
			for _, g := range r.Requests {
				n[r.Source.Port] += int(g.Count)
			}
		}
		return n
	}
	first := tb.FlushEnded(t0, t0.Add(100*time.Millisecond))
	if got := requests(first); len(first) != 1 || got[longLived.Port()] != 3 || len(got) != 1 {
		t.Fatalf("first early flush: %d records with requests %v; want the ended connection's, with its 3", len(first), got)
	}
	tb.EndTCP(flow.TCPEnd{Socket: sockAt(1, client, 20, 5)})
	second := tb.FlushEnded(t0, t0.Add(200*time.Millisecond))
	if got := requests(second); len(second) != 1 || got[client.Port()] != 6 || len(got) != 1 {
		t.Fatalf("second early flush: %d records with requests %v; want the connection that ended since, with the 6 taken while it was open", len(second), got)
	}
	tb.SyncTCP([]flow.TCPSocket{sockAt(2, stillOpen, 15, 0)})
	last := tb.Flush(t0, t0.Add(time.Second))
	if got := requests(last); len(last) != 1 || got[stillOpen.Port()] != 3 || len(got) != 1 {
		t.Fatalf("at the interval's end: %d records with requests %v; want the open connection's, with its 3", len(last), got)
	}
	if st := tb.Stats(); st.RecordsForRequests != 0 {
		t.Errorf("%d records made for requests alone, want 0", st.RecordsForRequests)
	}
}

// Groups kept for an open connection through many ended flushes wait for
// it without each flush looking at them again, and reach its record at
// the interval's end, all of them.
func TestRequestsBetweenKeptThroughManyFlushes(t *testing.T) {
	tb := New(Config{})
	tb.SyncTCP([]flow.TCPSocket{sockAt(2, stillOpen, 10, 0)})
	tb.Flush(t0.Add(-time.Second), t0)
	of := RequestsOf{Protocol: flow.TCP, Cookie: 2, Role: flow.RoleClient, Local: stillOpen, Remote: server,
		Owner: flow.Owner{PID: 42, Netns: 7}}
	const flushes = 100
	for i := range flushes {
		tb.EndTCP(flow.TCPEnd{Socket: sockAt(uint64(100+i), client, 1, 1)})
		tb.RequestsBetween(of, []flow.Requests{get200})
		for _, r := range tb.FlushEnded(t0, t0.Add(time.Duration(i+1)*time.Millisecond)) {
			if len(r.Requests) != 0 {
				t.Fatalf("flush %d: the ended connection %v got requests %v, which were the open one's", i, r.Source, r.Requests)
			}
		}
	}
	if len(tb.kept) != 1 || len(tb.kept[newRecKey(flow.TCP, flow.RoleClient, stillOpen, server, 7)]) != flushes {
		t.Fatalf("kept %d flows, want the open connection's alone with its %d takes", len(tb.kept), flushes)
	}
	tb.SyncTCP([]flow.TCPSocket{sockAt(2, stillOpen, 20, 0)})
	recs := tb.Flush(t0, t0.Add(time.Second))
	var n uint32
	for _, g := range recs[0].Requests {
		n += g.Count
	}
	if len(recs) != 1 || n != flushes*get200.Count || len(tb.kept) != 0 {
		t.Errorf("%d records, the open connection's with %d requests, %d flows still kept; want 1 with %d, none kept",
			len(recs), n, len(tb.kept), flushes*get200.Count)
	}
}

// A connection that takes the addresses and ports of one that just ended,
// before any read saw it, does not give its requests to the ended one's
// record: they wait for its own.
func TestRequestsBetweenNotOnAnEarlierConnectionsRecord(t *testing.T) {
	tb := New(Config{})
	a := sockAt(3, client, 100, 100)
	a.StartNS = 1_000
	tb.EndTCP(flow.TCPEnd{Socket: a})
	tb.RequestsBetween(RequestsOf{Protocol: flow.TCP, Cookie: 5, Role: flow.RoleClient, Local: client, Remote: server,
		Owner: flow.Owner{PID: 42, Netns: 7}, StartNS: 9_000}, []flow.Requests{get200})
	first := tb.FlushEnded(t0, t0.Add(100*time.Millisecond))
	b := sockAt(5, client, 10, 10)
	b.StartNS = 5_000
	tb.EndTCP(flow.TCPEnd{Socket: b})
	second := tb.FlushEnded(t0, t0.Add(200*time.Millisecond))
	if len(first) != 1 || len(second) != 1 || len(first[0].Requests) != 0 || len(second[0].Requests) != 1 {
		t.Fatalf("records %d then %d; want A's without requests, then B's with its group", len(first), len(second))
	}
	if got := second[0].ConnStart; !got.Equal(tb.clock.wall(5_000)) {
		t.Errorf("B's record starts %v, want its connection's start", got)
	}
}
