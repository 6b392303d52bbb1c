package conntable

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

var (
	client = netip.MustParseAddrPort("10.0.0.1:40000")
	server = netip.MustParseAddrPort("10.0.0.2:80")
	t0     = time.Unix(1000, 0)
	t1     = t0.Add(time.Second)
)

func clientSock(cookie uint64) flow.TCPSocket {
	return flow.TCPSocket{
		Cookie: cookie, Local: client, Remote: server, Role: flow.RoleClient, Established: true,
		Owner: flow.Owner{PID: 42, Netns: 7, CgroupID: 9, Command: "curl"},
	}
}

func flushOne(t *testing.T, tb *Table) flow.Record {
	t.Helper()
	recs := tb.Flush(t0, t1)
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1: %+v", len(recs), recs)
	}
	return recs[0]
}

func TestShortConnectionKnownOnlyByItsEnd(t *testing.T) {
	tb := New(Config{Node: "n1"})
	s := clientSock(1)
	s.BytesSent, s.BytesRecv, s.SegsOut, s.SegsIn, s.SRTTMicros = 1000, 5000, 4, 6, 80
	tb.EndTCP(flow.TCPEnd{Socket: s})

	r := flushOne(t, tb)
	if r.Opened != 1 || r.Closed != 1 || r.Verdict != flow.VerdictClosed {
		t.Errorf("opened=%d closed=%d verdict=%s, want 1 1 closed", r.Opened, r.Closed, r.Verdict)
	}
	if r.BytesToDst != 1000 || r.BytesToSrc != 5000 || r.SegmentsToDst != 4 || r.SegmentsToSrc != 6 {
		t.Errorf("traffic %d/%d bytes %d/%d segments, want 1000/5000 4/6", r.BytesToDst, r.BytesToSrc, r.SegmentsToDst, r.SegmentsToSrc)
	}
	if r.Source.PID != 42 || r.Source.Command != "curl" || r.Source.Netns != 7 || r.Destination.PID != 0 {
		t.Errorf("owner on wrong side: src=%+v dst=%+v", r.Source, r.Destination)
	}
	if r.Source.Port != 40000 || r.Destination.Port != 80 || r.Observer != "client" || r.Node != "n1" || r.IPVersion != 4 {
		t.Errorf("endpoints: %+v", r)
	}
	if r.RTT == nil || *r.RTT != (flow.RTT{MinMicros: 80, AvgMicros: 80, MaxMicros: 80}) {
		t.Errorf("rtt = %+v", r.RTT)
	}
	if !r.Start.Equal(t0) || !r.Time.Equal(t1) {
		t.Errorf("interval %v-%v", r.Start, r.Time)
	}
}

func TestLongLivedConnectionReportsDeltasEveryInterval(t *testing.T) {
	tb := New(Config{})
	s := clientSock(1)
	var got []uint64
	for _, sent := range []uint64{100, 250, 250, 600} {
		s.BytesSent = sent
		tb.SyncTCP([]flow.TCPSocket{s})
		recs := tb.Flush(t0, t1)
		switch {
		case len(recs) == 0:
			got = append(got, 0)
		case len(recs) == 1 && recs[0].Verdict == flow.VerdictEstablished:
			got = append(got, recs[0].BytesToDst)
		default:
			t.Fatalf("unexpected records %+v", recs)
		}
	}
	want := []uint64{100, 150, 0, 350}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("per-interval bytes = %v, want %v", got, want)
		}
	}
	s.BytesSent = 700
	tb.EndTCP(flow.TCPEnd{Socket: s})
	r := flushOne(t, tb)
	if r.Opened != 0 || r.Closed != 1 || r.BytesToDst != 100 {
		t.Errorf("end: opened=%d closed=%d bytes=%d, want 0 1 100", r.Opened, r.Closed, r.BytesToDst)
	}
	if st := tb.Stats(); st.Sockets != 0 || st.SocketsVanished != 0 {
		t.Errorf("stats after end: %+v", st)
	}
}

func TestOpenCountedOnceAcrossSyncAndEnd(t *testing.T) {
	tb := New(Config{})
	s := clientSock(1)
	s.Established = false // still in SYN_SENT when first read
	tb.SyncTCP([]flow.TCPSocket{s})
	if recs := tb.Flush(t0, t1); len(recs) != 0 {
		t.Fatalf("handshake in progress produced %+v", recs)
	}
	s.Established = true
	tb.SyncTCP([]flow.TCPSocket{s})
	tb.SyncTCP([]flow.TCPSocket{s})
	tb.EndTCP(flow.TCPEnd{Socket: s})
	r := flushOne(t, tb)
	if r.Opened != 1 || r.Closed != 1 {
		t.Errorf("opened=%d closed=%d, want 1 1", r.Opened, r.Closed)
	}
}

func TestServerSideMapsDirections(t *testing.T) {
	tb := New(Config{})
	s := flow.TCPSocket{
		Cookie: 2, Local: server, Remote: client, Role: flow.RoleServer, Established: true,
		Owner:     flow.Owner{PID: 7, Command: "nginx"},
		BytesSent: 5000, BytesRecv: 1000, SegsOut: 6, SegsIn: 4, Retrans: 3, RSTSent: 1,
	}
	tb.EndTCP(flow.TCPEnd{Socket: s})
	r := flushOne(t, tb)
	if r.Observer != "server" || r.Source.IP != client.Addr() || r.Source.Port != 40000 || r.Destination.Port != 80 {
		t.Errorf("endpoints %+v -> %+v observer %s", r.Source, r.Destination, r.Observer)
	}
	if r.Destination.PID != 7 || r.Source.PID != 0 {
		t.Errorf("owner should be the destination: %+v", r)
	}
	if r.BytesToDst != 1000 || r.BytesToSrc != 5000 || r.SegmentsToDst != 4 || r.SegmentsToSrc != 6 {
		t.Errorf("traffic %+v", r)
	}
	if r.RetransToSrc != 3 || r.RetransToDst != 0 || r.ResetsByDst != 1 || r.ResetsBySrc != 0 || r.Verdict != flow.VerdictReset {
		t.Errorf("retrans/resets/verdict %+v", r)
	}
}

func TestFailedConnectsByErrno(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		want  flow.Verdict
	}{
		{syscall.ECONNREFUSED, flow.VerdictRefused},
		{syscall.ETIMEDOUT, flow.VerdictTimeout},
		{0, flow.VerdictTimeout},
		{syscall.EHOSTUNREACH, flow.VerdictUnreachable},
		{syscall.ENETUNREACH, flow.VerdictUnreachable},
		{syscall.EPERM, flow.VerdictFailed},
	} {
		tb := New(Config{})
		s := clientSock(1)
		s.Established = false
		tb.EndTCP(flow.TCPEnd{Socket: s, Failed: true, Errno: int32(tc.errno)})
		r := flushOne(t, tb)
		if r.Verdict != tc.want || r.Opened != 0 || r.Closed != 0 {
			t.Errorf("errno %v: verdict %s opened %d closed %d", tc.errno, r.Verdict, r.Opened, r.Closed)
		}
		if n := r.Refused + r.TimedOut + r.FailedOther; n != 1 {
			t.Errorf("errno %v: %d failures counted", tc.errno, n)
		}
	}
}

func TestPortReuseWithinAnIntervalMergesCounts(t *testing.T) {
	tb := New(Config{})
	for cookie := uint64(1); cookie <= 3; cookie++ {
		s := clientSock(cookie)
		s.BytesSent = 10
		tb.EndTCP(flow.TCPEnd{Socket: s})
	}
	r := flushOne(t, tb)
	if r.Opened != 3 || r.Closed != 3 || r.BytesToDst != 30 {
		t.Errorf("opened=%d closed=%d bytes=%d, want 3 3 30", r.Opened, r.Closed, r.BytesToDst)
	}
}

func TestRTTOverSockets(t *testing.T) {
	tb := New(Config{})
	for i, rtt := range []uint32{100, 300, 200} {
		s := clientSock(uint64(i + 1))
		s.SRTTMicros = rtt
		tb.EndTCP(flow.TCPEnd{Socket: s})
	}
	r := flushOne(t, tb)
	if *r.RTT != (flow.RTT{MinMicros: 100, AvgMicros: 200, MaxMicros: 300}) {
		t.Errorf("rtt %+v", *r.RTT)
	}
}

func TestIdleSocketEmitsNothingAndVanishedIsCounted(t *testing.T) {
	tb := New(Config{})
	s := clientSock(1)
	tb.SyncTCP([]flow.TCPSocket{s})
	tb.Flush(t0, t1)
	tb.SyncTCP([]flow.TCPSocket{s})
	if recs := tb.Flush(t0, t1); len(recs) != 0 {
		t.Fatalf("idle socket produced %+v", recs)
	}
	tb.SyncTCP(nil) // missing once: its end may still be in the ring buffer
	if st := tb.Stats(); st.Sockets != 1 || st.SocketsVanished != 0 {
		t.Fatalf("after one miss: %+v", st)
	}
	vanished := tb.SyncTCP(nil)
	if st := tb.Stats(); st.Sockets != 0 || st.SocketsVanished != 1 {
		t.Fatalf("after two misses: %+v", st)
	}
	// Named as last read, for the agent's log.
	if len(vanished) != 1 || vanished[0] != s {
		t.Errorf("vanished %+v, want %+v", vanished, s)
	}
}

func TestTableFullCountsEachSocketOnceAndReportsItAtItsEnd(t *testing.T) {
	tb := New(Config{MaxSockets: 2})
	third := clientSock(3)
	for i := range 10 {
		third.BytesSent = uint64(10 * (i + 1))
		tb.SyncTCP([]flow.TCPSocket{clientSock(1), clientSock(2), third})
		tb.Flush(t0, t1)
	}
	if st := tb.Stats(); st.Sockets != 2 || st.SocketsUntracked != 1 {
		t.Fatalf("one socket that never fits over 10 intervals: %+v, want 2 tracked 1 untracked", st)
	}
	// Its end event carries its whole history: nothing of it is lost.
	tb.EndTCP(flow.TCPEnd{Socket: third})
	if r := flushOne(t, tb); r.Opened != 1 || r.Closed != 1 || r.BytesToDst != 100 {
		t.Errorf("end of the untracked socket: opened %d closed %d bytes %d, want 1 1 100", r.Opened, r.Closed, r.BytesToDst)
	}
	// Another socket that does not fit is a second one.
	tb.SyncTCP([]flow.TCPSocket{clientSock(1), clientSock(2), clientSock(4)})
	if st := tb.Stats(); st.SocketsUntracked != 2 {
		t.Errorf("untracked %d, want 2", st.SocketsUntracked)
	}
}

func TestUntrackedMemoryIsBounded(t *testing.T) {
	tb := New(Config{MaxSockets: 1})
	live := []flow.TCPSocket{clientSock(1), clientSock(2), clientSock(3)}
	tb.SyncTCP(live)
	tb.SyncTCP(live)
	// Sockets 2 and 3 did not fit; the memory of them holds one, so the
	// one forgotten is counted again.
	if st := tb.Stats(); st.SocketsUntracked != 3 || len(tb.untracked) != 1 {
		t.Fatalf("untracked %d remembered %d, want 3 1", st.SocketsUntracked, len(tb.untracked))
	}
	// Gone from the kernel map without an end event: forgotten.
	tb.SyncTCP(live[:1])
	tb.SyncTCP(live[:1])
	if len(tb.untracked) != 0 {
		t.Errorf("remembered %d untracked sockets gone from the kernel", len(tb.untracked))
	}
}

func TestUDPConversation(t *testing.T) {
	const sec = uint64(time.Second)
	tb := New(Config{UDPIdle: 5 * time.Second})
	dns := netip.MustParseAddrPort("10.0.0.53:53")
	c := flow.UDPConversation{
		Cookie: 5, Local: client, Remote: dns, Initiator: true, FirstNS: 1 * sec, LastNS: 1 * sec,
		Owner:   flow.Owner{PID: 42, Command: "dig"},
		TxBytes: 60, TxDatagrams: 2, RxBytes: 200, RxDatagrams: 2,
	}
	if exp := tb.SyncUDP([]flow.UDPConversation{c}, 2*sec); len(exp) != 0 {
		t.Fatalf("expired too early: %v", exp)
	}
	r := flushOne(t, tb)
	if r.Protocol != flow.UDP || r.Observer != "client" || r.Verdict != flow.VerdictAnswered {
		t.Errorf("record %+v", r)
	}
	if r.DatagramsToDst != 2 || r.BytesToDst != 60 || r.DatagramsToSrc != 2 || r.BytesToSrc != 200 || r.Source.PID != 42 {
		t.Errorf("counts %+v", r)
	}

	// Silent long enough: the kernel entry should be released.
	if exp := tb.SyncUDP([]flow.UDPConversation{c}, 7*sec); len(exp) != 1 || exp[0] != 0 {
		t.Fatalf("expired = %v, want [0]", exp)
	}
	if recs := tb.Flush(t0, t1); len(recs) != 0 {
		t.Fatalf("no new datagrams but got %+v", recs)
	}
	// The kernel recreates the entry from the server's reply first; the
	// conversation keeps its client role and counts from zero.
	c2 := c
	c2.Initiator, c2.FirstNS, c2.LastNS = false, 8*sec, 8*sec
	c2.TxBytes, c2.TxDatagrams, c2.RxBytes, c2.RxDatagrams = 0, 0, 100, 1
	tb.SyncUDP([]flow.UDPConversation{c2}, 8*sec)
	r = flushOne(t, tb)
	if r.Observer != "client" || r.BytesToSrc != 100 || r.DatagramsToSrc != 1 || r.DatagramsToDst != 0 || r.Verdict != flow.VerdictUnanswered {
		t.Errorf("after recreate %+v", r)
	}
}

func TestUDPServerSide(t *testing.T) {
	tb := New(Config{})
	dns := netip.MustParseAddrPort("10.0.0.53:53")
	c := flow.UDPConversation{Cookie: 6, Local: dns, Remote: client, Initiator: false,
		RxBytes: 30, RxDatagrams: 1, TxBytes: 90, TxDatagrams: 1, Owner: flow.Owner{PID: 9}}
	tb.SyncUDP([]flow.UDPConversation{c}, 0)
	r := flushOne(t, tb)
	if r.Observer != "server" || r.Source.Port != 40000 || r.Destination.Port != 53 || r.Destination.PID != 9 {
		t.Errorf("endpoints %+v", r)
	}
	if r.BytesToDst != 30 || r.BytesToSrc != 90 || r.DatagramsToDst != 1 || r.DatagramsToSrc != 1 {
		t.Errorf("counts %+v", r)
	}
}

func TestIPv6Version(t *testing.T) {
	tb := New(Config{})
	s := clientSock(1)
	s.Local = netip.MustParseAddrPort("[fd00::1]:40000")
	s.Remote = netip.MustParseAddrPort("[fd00::2]:80")
	tb.EndTCP(flow.TCPEnd{Socket: s})
	if r := flushOne(t, tb); r.IPVersion != 6 {
		t.Errorf("ip_version %d", r.IPVersion)
	}
}

func TestHandshakeRetransmitsGoWithTheFailure(t *testing.T) {
	tb := New(Config{})
	s := clientSock(1)
	s.Established, s.SegsOut, s.Retrans = false, 2, 1 // SYN sent twice
	tb.SyncTCP([]flow.TCPSocket{s})
	if recs := tb.Flush(t0, t1); len(recs) != 0 {
		t.Fatalf("socket in handshake produced %+v", recs)
	}
	s.SegsOut, s.Retrans = 3, 2
	tb.EndTCP(flow.TCPEnd{Socket: s, Failed: true, Errno: int32(syscall.ETIMEDOUT)})
	r := flushOne(t, tb)
	if r.Verdict != flow.VerdictTimeout || r.TimedOut != 1 || r.RetransToDst != 2 || r.SegmentsToDst != 3 {
		t.Errorf("verdict %s timed_out %d retrans %d segs %d, want timeout 1 2 3", r.Verdict, r.TimedOut, r.RetransToDst, r.SegmentsToDst)
	}
}

func TestCountersWrapModulo32Bits(t *testing.T) {
	tb := New(Config{})
	s := clientSock(1)
	s.SegsOut, s.SegsIn, s.Retrans, s.RSTSent, s.BytesSent = 0xFFFFFF00, 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF, 1
	tb.SyncTCP([]flow.TCPSocket{s})
	tb.Flush(t0, t1)
	// 512, 3, 4 and 1 later, each counter past 2^32.
	s.SegsOut, s.SegsIn, s.Retrans, s.RSTSent, s.BytesSent = 0x100, 2, 2, 0, 2
	tb.SyncTCP([]flow.TCPSocket{s})
	r := flushOne(t, tb)
	if r.SegmentsToDst != 512 || r.SegmentsToSrc != 3 || r.RetransToDst != 4 || r.ResetsBySrc != 1 || r.BytesToDst != 1 {
		t.Errorf("segments %d/%d retrans %d resets %d bytes %d, want 512/3 4 1 1", r.SegmentsToDst, r.SegmentsToSrc, r.RetransToDst, r.ResetsBySrc, r.BytesToDst)
	}
}

func TestUDPDatagramCountersWrap(t *testing.T) {
	tb := New(Config{})
	c := flow.UDPConversation{Cookie: 1, Local: client, Remote: server, Initiator: true,
		TxDatagrams: 0xFFFFFFFF, TxBytes: 100}
	tb.SyncUDP([]flow.UDPConversation{c}, 0)
	tb.Flush(t0, t1)
	c.TxDatagrams, c.TxBytes = 1, 120
	tb.SyncUDP([]flow.UDPConversation{c}, 0)
	if r := flushOne(t, tb); r.DatagramsToDst != 2 || r.BytesToDst != 20 {
		t.Errorf("datagrams %d bytes %d, want 2 20", r.DatagramsToDst, r.BytesToDst)
	}
}

// A prefork server's accepted socket belongs to the listener's process
// until a worker does I/O on it: one connection, one record, named after
// the worker.
func TestOwnerChangeStaysOneRecord(t *testing.T) {
	tb := New(Config{})
	s := flow.TCPSocket{Cookie: 7, Local: server, Remote: client, Role: flow.RoleServer, Established: true,
		Owner: flow.Owner{PID: 100, Netns: 5, CgroupID: 9, Command: "nginx"}, SegsIn: 2, SegsOut: 1}
	tb.SyncTCP([]flow.TCPSocket{s})
	s.Owner.PID = 101
	s.BytesRecv, s.BytesSent, s.SegsIn, s.SegsOut = 100, 200, 4, 3
	tb.EndTCP(flow.TCPEnd{Socket: s})
	r := flushOne(t, tb)
	if r.Opened != 1 || r.Closed != 1 || r.Verdict != flow.VerdictClosed || r.BytesToDst != 100 || r.BytesToSrc != 200 || r.SegmentsToDst != 4 || r.SegmentsToSrc != 3 {
		t.Errorf("record %+v", r)
	}
	if r.Destination.PID != 101 || r.Destination.Command != "nginx" || r.Destination.Netns != 5 {
		t.Errorf("owner %+v, want the worker 101", r.Destination)
	}
}

// The same addresses in two network namespaces (two pods' loopback) are
// two flows.
func TestSameAddressesInTwoNamespacesAreTwoRecords(t *testing.T) {
	tb := New(Config{})
	a, b := clientSock(1), clientSock(2)
	a.Owner.Netns, b.Owner.Netns = 1, 2
	tb.EndTCP(flow.TCPEnd{Socket: a})
	tb.EndTCP(flow.TCPEnd{Socket: b})
	if recs := tb.Flush(t0, t1); len(recs) != 2 {
		t.Errorf("%d records, want 2", len(recs))
	}
}

// A socket the kernel adopted already established (the agent started after
// it opened) reports only what happened after adoption, never an open,
// and its close.
func TestAdoptedSocketIsNeverOpened(t *testing.T) {
	for _, role := range []flow.Role{flow.RoleClient, flow.RoleServer} {
		tb := New(Config{})
		s := clientSock(1)
		s.Role, s.Adopted = role, true
		// The datapath subtracted the baseline taken at adoption.
		s.SegsOut, s.SegsIn, s.Retrans, s.BytesSent, s.BytesRecv = 3, 2, 1, 10, 20
		tb.SyncTCP([]flow.TCPSocket{s})
		r := flushOne(t, tb)
		if r.Opened != 0 || r.Observer != role.String() || r.Verdict != flow.VerdictEstablished {
			t.Errorf("%s first interval: opened %d observer %s verdict %s, want 0 %s established", role, r.Opened, r.Observer, r.Verdict, role)
		}
		if role == flow.RoleClient && (r.SegmentsToDst != 3 || r.SegmentsToSrc != 2 || r.RetransToDst != 1 || r.BytesToDst != 10 || r.BytesToSrc != 20) ||
			role == flow.RoleServer && (r.SegmentsToSrc != 3 || r.SegmentsToDst != 2 || r.RetransToSrc != 1 || r.BytesToSrc != 10 || r.BytesToDst != 20) {
			t.Errorf("%s first interval counts %+v", role, r)
		}
		s.BytesSent = 15
		tb.EndTCP(flow.TCPEnd{Socket: s})
		r = flushOne(t, tb)
		if r.Opened != 0 || r.Closed != 1 || r.BytesToDst+r.BytesToSrc != 5 {
			t.Errorf("%s end: opened %d closed %d bytes %d, want 0 1 5", role, r.Opened, r.Closed, r.BytesToDst+r.BytesToSrc)
		}
	}
	// Adopted and closed between two reads: known only by its end.
	tb := New(Config{})
	s := clientSock(2)
	s.Adopted, s.BytesSent = true, 7
	tb.EndTCP(flow.TCPEnd{Socket: s})
	if r := flushOne(t, tb); r.Opened != 0 || r.Closed != 1 || r.BytesToDst != 7 {
		t.Errorf("adopted, end only: opened %d closed %d bytes %d, want 0 1 7", r.Opened, r.Closed, r.BytesToDst)
	}
}

// connect() again on a socket whose connect failed keeps the cookie; the
// new connection starts at another time, with zeroed counters. It is opened
// once and its bytes counted once, whether the map read sees it before or
// after the failed one's end event.
func TestReconnectSameCookie(t *testing.T) {
	old := clientSock(1)
	old.Established, old.StartNS, old.SegsOut = false, 100, 1
	neu := clientSock(1)
	neu.StartNS, neu.BytesSent, neu.SegsOut = 200, 100, 3
	refused := flow.TCPEnd{Socket: old, Failed: true, Errno: int32(syscall.ECONNREFUSED)}
	sameStart := neu
	sameStart.StartNS = old.StartNS
	for _, tc := range []struct {
		name     string
		neu      flow.TCPSocket
		mapFirst bool
	}{
		{"map read first", neu, true},
		{"end event first", neu, false},
		// Defensive: a failed connect cannot end a connection read
		// established, even if both had one start time.
		{"map read first, same start", sameStart, true},
	} {
		name, neu := tc.name, tc.neu
		tb := New(Config{})
		tb.SyncTCP([]flow.TCPSocket{old})
		tb.Flush(t0, t1)
		if tc.mapFirst {
			tb.SyncTCP([]flow.TCPSocket{neu})
			tb.EndTCP(refused)
		} else {
			tb.EndTCP(refused)
			tb.SyncTCP([]flow.TCPSocket{neu})
		}
		recs := tb.Flush(t0, t1)
		tb.SyncTCP([]flow.TCPSocket{neu})
		recs = append(recs, tb.Flush(t0, t1)...)
		neu2 := neu
		neu2.BytesSent = 150
		tb.EndTCP(flow.TCPEnd{Socket: neu2})
		recs = append(recs, tb.Flush(t0, t1)...)
		var opened, closed, refusedN uint32
		var bytes uint64
		for _, r := range recs {
			opened += r.Opened
			closed += r.Closed
			refusedN += r.Refused
			bytes += r.BytesToDst
		}
		if opened != 1 || closed != 1 || refusedN != 1 || bytes != 150 {
			t.Errorf("%s: opened %d closed %d refused %d bytes %d, want 1 1 1 150", name, opened, closed, refusedN, bytes)
		}
		if st := tb.Stats(); st.Sockets != 0 || st.SocketsVanished != 0 {
			t.Errorf("%s: stats %+v", name, st)
		}
	}
}

// An established connection disconnected and connected again on the same
// socket (connect with AF_UNSPEC, then connect): the earlier one's end
// event, drained after the map read saw the new one, counts only what the
// reads had not.
func TestReconnectAfterEstablishedKeepsBothConnections(t *testing.T) {
	tb := New(Config{})
	first := clientSock(1)
	first.StartNS, first.BytesSent = 100, 40
	tb.SyncTCP([]flow.TCPSocket{first})
	tb.Flush(t0, t1)
	second := clientSock(1)
	second.StartNS, second.BytesSent = 200, 5
	tb.SyncTCP([]flow.TCPSocket{second})
	first.BytesSent = 60
	tb.EndTCP(flow.TCPEnd{Socket: first})
	r := flushOne(t, tb) // one flow: same addresses
	if r.Opened != 1 || r.Closed != 1 || r.BytesToDst != 25 {
		t.Errorf("opened %d closed %d bytes %d, want 1 (second) 1 (first) 20+5", r.Opened, r.Closed, r.BytesToDst)
	}
}

// A datagram that lands between the read of an idle conversation and the
// deletion of its kernel entry is accounted from the deletion's final
// counts: a resolver reusing a client port makes that happen.
func TestReleasedUDPAccountsWhatLandedAfterTheRead(t *testing.T) {
	const sec = uint64(time.Second)
	tb := New(Config{})
	read := flow.UDPConversation{Cookie: 9, Local: server, Remote: client, FirstNS: sec, LastNS: sec,
		RxBytes: 40, RxDatagrams: 1, TxBytes: 80, TxDatagrams: 1}
	tb.SyncUDP([]flow.UDPConversation{read}, sec)
	tb.Flush(t0, t1)
	expired := tb.SyncUDP([]flow.UDPConversation{read}, 7*sec)
	if len(expired) != 1 {
		t.Fatalf("expired %v, want the idle conversation", expired)
	}
	final := read
	final.LastNS, final.RxBytes, final.RxDatagrams = 7*sec, 90, 2 // a new query from the same port
	tb.ReleasedUDP(&read, &final)
	r := flushOne(t, tb)
	if r.DatagramsToDst != 1 || r.BytesToDst != 50 || r.DatagramsToSrc != 0 || r.Observer != "server" {
		t.Errorf("record %s: datagrams %d→ %d← bytes %d→, want server 1 0 50", r.Observer, r.DatagramsToDst, r.DatagramsToSrc, r.BytesToDst)
	}
	// A key made anew after the read counts from zero.
	fresh := flow.UDPConversation{Cookie: 9, Local: server, Remote: client, FirstNS: 8 * sec, LastNS: 8 * sec, RxBytes: 30, RxDatagrams: 1}
	tb.ReleasedUDP(&final, &fresh)
	if r := flushOne(t, tb); r.DatagramsToDst != 1 || r.BytesToDst != 30 {
		t.Errorf("new entry: datagrams %d bytes %d, want 1 30", r.DatagramsToDst, r.BytesToDst)
	}
}

// The connects opened in an interval report how long their handshakes
// took and how many SYNs they needed; a connect that failed, its SYNs; a
// socket adopted or accepted, neither.
func TestConnectLatencyAndSYNRetransmits(t *testing.T) {
	const ms = uint64(time.Millisecond)
	tb := New(Config{})
	// Two connections on one 4-tuple's record: one read while open, one
	// known only by its end.
	slow := clientSock(1)
	slow.StartNS, slow.EstablishedNS, slow.SYNRetrans = 1000*ms, 2020*ms, 1 // its first SYN was dropped
	tb.SyncTCP([]flow.TCPSocket{slow})
	fast := clientSock(1)
	fast.StartNS, fast.EstablishedNS = 3000*ms, 3000*ms+100_000
	tb.EndTCP(flow.TCPEnd{Socket: slow})
	tb.EndTCP(flow.TCPEnd{Socket: fast})
	r := flushOne(t, tb)
	want := flow.RTT{MinMicros: 100, AvgMicros: (1_020_000 + 100) / 2, MaxMicros: 1_020_000}
	if r.Opened != 2 || r.ConnectLatency == nil || *r.ConnectLatency != want || r.SYNRetrans != 1 {
		t.Errorf("opened %d connect latency %+v syn retransmits %d, want 2 %+v 1", r.Opened, r.ConnectLatency, r.SYNRetrans, want)
	}

	failed := clientSock(2)
	failed.Established, failed.StartNS, failed.Retrans = false, 5000*ms, 2
	tb.EndTCP(flow.TCPEnd{Socket: failed, Failed: true, Errno: 110})
	if r := flushOne(t, tb); r.SYNRetrans != 2 || r.TimedOut != 1 || r.ConnectLatency != nil {
		t.Errorf("failed connect: syn retransmits %d timed out %d latency %+v, want 2 1 none", r.SYNRetrans, r.TimedOut, r.ConnectLatency)
	}

	adopted := clientSock(3)
	adopted.Adopted, adopted.StartNS, adopted.EstablishedNS = true, 6000*ms, 6001*ms
	accepted := flow.TCPSocket{Cookie: 4, Local: server, Remote: client, Role: flow.RoleServer, Established: true,
		StartNS: 7000 * ms, EstablishedNS: 7001 * ms}
	tb.EndTCP(flow.TCPEnd{Socket: adopted})
	tb.EndTCP(flow.TCPEnd{Socket: accepted})
	for _, r := range tb.Flush(t0, t1) {
		if r.ConnectLatency != nil || r.SYNRetrans != 0 {
			t.Errorf("%s record of an adopted or accepted socket: latency %+v syn retransmits %d", r.Observer, r.ConnectLatency, r.SYNRetrans)
		}
	}
}

// The records of one flush share where their latencies are kept, each
// with its own: more of them than the flush planned for included.
func TestFlushKeepsEachRecordsLatencies(t *testing.T) {
	tb := New(Config{})
	const n = 5
	for i := range uint64(n) {
		s := clientSock(i + 1)
		s.Local = netip.AddrPortFrom(client.Addr(), uint16(40000+i))
		s.BytesSent, s.SRTTMicros = 10, uint32(100*(i+1))
		s.Adopted = i%2 == 0 // the others opened: a connect latency too
		s.StartNS, s.EstablishedNS = 1000, 1000+uint64(2000*(i+1))
		tb.SyncTCP([]flow.TCPSocket{s})
	}
	recs := tb.Flush(t0, t1)
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	for _, r := range recs {
		i := uint32(r.Source.Port - 40000)
		if r.RTT == nil || *r.RTT != (flow.RTT{MinMicros: 100 * (i + 1), AvgMicros: 100 * (i + 1), MaxMicros: 100 * (i + 1)}) {
			t.Errorf("port %d: RTT %+v, want %d µs", r.Source.Port, r.RTT, 100*(i+1))
		}
		want := (*flow.RTT)(nil)
		if i%2 == 1 {
			want = &flow.RTT{MinMicros: 2 * (i + 1), AvgMicros: 2 * (i + 1), MaxMicros: 2 * (i + 1)}
		}
		if (r.ConnectLatency == nil) != (want == nil) || want != nil && *r.ConnectLatency != *want {
			t.Errorf("port %d: connect latency %+v, want %+v", r.Source.Port, r.ConnectLatency, want)
		}
	}
}

// A conversation that ended with its socket is accounted once from its
// final counts, whether or not a read saw it first; one whose kernel entry
// the read expired and found gone (it had ended in between) too. A
// datagram after the end starts the kernel entry anew, in the same role.
func TestEndedUDPAccountsFinalCountsOnce(t *testing.T) {
	const sec = uint64(time.Second)
	tb := New(Config{})
	conv := func(cookie uint64, first, last uint64, tx, rx uint32) flow.UDPConversation {
		return flow.UDPConversation{Cookie: cookie, Local: client, Remote: server, Initiator: true,
			FirstNS: first, LastNS: last, TxDatagrams: tx, TxBytes: 40 * uint64(tx), RxDatagrams: rx, RxBytes: 80 * uint64(rx)}
	}
	type sums struct{ toDst, toSrc uint32 }
	flush := func() sums {
		var s sums
		for _, r := range tb.Flush(t0, t1) {
			if r.Observer != "client" {
				t.Errorf("record observed by %s, want client", r.Observer)
			}
			s.toDst += r.DatagramsToDst
			s.toSrc += r.DatagramsToSrc
		}
		return s
	}
	// 1: never read, ended with a query and its answer.
	ended := conv(1, sec, sec, 1, 1)
	tb.EndedUDP(&ended)
	// 2: read with its query, ended with its answer.
	read := conv(2, sec, sec, 1, 0)
	tb.SyncUDP([]flow.UDPConversation{read}, sec)
	ended2 := conv(2, sec, 2*sec, 1, 1)
	tb.EndedUDP(&ended2)
	if got := flush(); got != (sums{2, 2}) {
		t.Errorf("datagrams to dst/src %+v, want 2 2", got)
	}
	// 3: read, then expired by a read while it ended: its deletion found
	// it gone, the read's counts stand until its final counts come.
	read3 := conv(3, sec, sec, 1, 1)
	tb.SyncUDP([]flow.UDPConversation{read3}, sec)
	flush()
	if exp := tb.SyncUDP([]flow.UDPConversation{read3}, 10*sec); len(exp) != 1 {
		t.Fatalf("expired %v, want conversation 3", exp)
	}
	tb.ReleasedUDP(&read3, &read3)
	ended3 := conv(3, sec, 10*sec, 2, 1)
	tb.EndedUDP(&ended3)
	if got := flush(); got != (sums{1, 0}) {
		t.Errorf("after the end of 3: datagrams to dst/src %+v, want 1 0", got)
	}
	// 1 again: an answer after the end makes a new entry, which began
	// with a datagram received, and keeps the client role.
	late := conv(1, 11*sec, 11*sec, 0, 1)
	late.Initiator = false
	tb.SyncUDP([]flow.UDPConversation{late}, 11*sec)
	if got := flush(); got != (sums{0, 1}) {
		t.Errorf("late answer: datagrams to dst/src %+v, want 0 1", got)
	}
}
