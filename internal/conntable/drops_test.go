package conntable

import (
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// The SYN of a connect, dropped by a firewall on the server (no socket
// there, the packet's tuple only), waits for the client's failed connect
// and shows on its record; the next interval has none of it again.
func TestDroppedSYNsShowOnTheFailedConnect(t *testing.T) {
	tb := New(Config{})
	syn := flow.Drop{Reason: "netfilter_drop", Count: 2, Netns: 99, FromPacket: true, Protocol: flow.TCP, Local: client, Remote: server}
	tb.Drops([]flow.Drop{syn})
	if recs := tb.Flush(t0, t1); len(recs) != 0 {
		t.Fatalf("a drop with no flow made records: %+v", recs)
	}
	tb.Drops([]flow.Drop{{Reason: "netfilter_drop", Count: 1, Netns: 99, FromPacket: true, Protocol: flow.TCP, Local: client, Remote: server}})
	s := clientSock(1)
	s.Established, s.Retrans = false, 2
	tb.EndTCP(flow.TCPEnd{Socket: s, Failed: true, Errno: int32(syscall.ETIMEDOUT)})
	r := flushOne(t, tb)
	if r.TimedOut != 1 || r.SYNRetrans != 2 || len(r.Drops) != 1 || r.Drops["netfilter_drop"] != 3 {
		t.Errorf("timed out %d, SYN retransmits %d, drops %v; want 1, 2, netfilter_drop 3", r.TimedOut, r.SYNRetrans, r.Drops)
	}
	if st := tb.Stats(); st.DropsUnmatched != 0 {
		t.Errorf("%d drops unmatched, want 0", st.DropsUnmatched)
	}
	if recs := tb.Flush(t1, t1.Add(time.Second)); len(recs) != 0 {
		t.Errorf("drops counted again: %+v", recs)
	}
}

// A drop no flow claims within DropHold is counted unmatched, once.
func TestUnmatchedDropsExpire(t *testing.T) {
	tb := New(Config{DropHold: 3 * time.Second})
	tb.Drops([]flow.Drop{{Reason: "no_socket", Count: 5, FromPacket: true, Protocol: flow.UDP, Local: client, Remote: server}})
	for i := range 4 {
		tb.Flush(t0.Add(time.Duration(i)*time.Second), t0.Add(time.Duration(i+1)*time.Second))
		want := uint64(0)
		if i == 3 {
			want = 5
		}
		if got := tb.Stats().DropsUnmatched; got != want {
			t.Fatalf("after flush %d: %d unmatched, want %d", i+1, got, want)
		}
	}
	// It is gone: a record of its flow now does not get it.
	tb.SyncUDP([]flow.UDPConversation{{Cookie: 1, Local: client, Remote: server, Initiator: true, TxDatagrams: 1, TxBytes: 10}}, 0)
	if r := flushOne(t, tb); r.Drops != nil {
		t.Errorf("expired drops counted: %v", r.Drops)
	}
}

// Past MaxHeldDrops the oldest waiting drops are counted unmatched.
func TestHeldDropsAreBounded(t *testing.T) {
	tb := New(Config{MaxHeldDrops: 2})
	for i := range 3 {
		tb.Drops([]flow.Drop{{Reason: "no_socket", Count: uint64(i + 1), Protocol: flow.TCP, Local: client, Remote: server}})
	}
	if got := tb.Stats().DropsUnmatched; got != 1 {
		t.Errorf("%d unmatched, want the first drop's 1", got)
	}
	s := clientSock(1)
	s.Established = false
	tb.EndTCP(flow.TCPEnd{Socket: s, Failed: true, Errno: int32(syscall.ECONNREFUSED)})
	if r := flushOne(t, tb); r.Drops["no_socket"] != 5 {
		t.Errorf("drops %v, want no_socket 5 (2 + 3)", r.Drops)
	}
}

// Both sides on this host: a drop goes to the side in its network
// namespace, whichever way round its tuple reads; else to the client.
func TestDropGoesToTheSideInItsNamespace(t *testing.T) {
	for _, tc := range []struct {
		netns uint32
		want  string
	}{{8, "server"}, {7, "client"}, {0, "client"}, {55, "client"}} {
		tb := New(Config{})
		c := clientSock(1)
		c.BytesSent = 10
		sv := flow.TCPSocket{Cookie: 2, Local: server, Remote: client, Role: flow.RoleServer, Established: true,
			Owner: flow.Owner{PID: 43, Netns: 8}, BytesRecv: 10}
		tb.SyncTCP([]flow.TCPSocket{c, sv})
		// As the packet flew from the client: local is its source.
		tb.Drops([]flow.Drop{{Reason: "socket_rcvbuff", Count: 4, Netns: tc.netns, FromPacket: true, Protocol: flow.TCP, Local: client, Remote: server}})
		recs := tb.Flush(t0, t1)
		if len(recs) != 2 {
			t.Fatalf("netns %d: %d records", tc.netns, len(recs))
		}
		for _, r := range recs {
			want := uint64(0)
			if r.Observer == tc.want {
				want = 4
			}
			if r.Drops["socket_rcvbuff"] != want {
				t.Errorf("netns %d: %s record has drops %v, want %d", tc.netns, r.Observer, r.Drops, want)
			}
		}
	}
}

// A protocol is part of the flow: a UDP drop does not land on TCP.
func TestDropMatchesItsProtocol(t *testing.T) {
	tb := New(Config{})
	tb.Drops([]flow.Drop{{Reason: "no_socket", Count: 1, Protocol: flow.UDP, Local: client, Remote: server}})
	s := clientSock(1)
	s.Established = false
	tb.EndTCP(flow.TCPEnd{Socket: s, Failed: true, Errno: int32(syscall.ECONNREFUSED)})
	if r := flushOne(t, tb); r.Drops != nil {
		t.Errorf("UDP drop on a TCP record: %v", r.Drops)
	}
}
