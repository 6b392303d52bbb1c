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
	tb.SyncTCP(nil)
	if st := tb.Stats(); st.Sockets != 0 || st.SocketsVanished != 1 {
		t.Fatalf("after two misses: %+v", st)
	}
}

func TestTableFullDropsAndCounts(t *testing.T) {
	tb := New(Config{MaxSockets: 2})
	tb.SyncTCP([]flow.TCPSocket{clientSock(1), clientSock(2), clientSock(3)})
	st := tb.Stats()
	if st.Sockets != 2 || st.SocketsDropped != 1 {
		t.Fatalf("stats %+v, want 2 tracked 1 dropped", st)
	}
	if r := flushOne(t, tb); r.Opened != 2 {
		t.Errorf("opened %d, want 2", r.Opened)
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
