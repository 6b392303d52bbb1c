package datapath

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"golang.org/x/sys/unix"
)

// ChangedUDP reads a conversation when it was counted since the last read
// and when it has gone idle, never in between; DeleteUDP then releases it
// with its final counts.
func TestChangedUDPReadsOnlyWhatChangedOrWentIdle(t *testing.T) {
	d := openWith(t, Config{})
	if d.udp == nil {
		t.Skip("no map element iterators: ChangedUDP reads the whole map")
	}
	cli, srv := udpPair(t)
	cookies := map[uint64]string{socketCookie(t, cli): "client", socketCookie(t, srv): "server"}
	send := func(n int) { exchange(t, cli, srv, n) }
	// ours reads with the given idle time and returns our two sockets'
	// conversations by side ("client": datagrams sent; "server":
	// received), and their indexes in what ChangedUDP returned.
	ours := func(idle time.Duration) (map[string]uint32, []int) {
		convs, err := d.ChangedUDP(nil, idle)
		if err != nil {
			t.Fatal(err)
		}
		got, idx := map[string]uint32{}, []int(nil)
		for i, c := range convs {
			if side, ok := cookies[c.Cookie]; ok {
				got[side] = c.TxDatagrams + c.RxDatagrams
				idx = append(idx, i)
			}
		}
		return got, idx
	}
	want := func(step string, got, want map[string]uint32) {
		t.Helper()
		if len(got) != len(want) || got["client"] != want["client"] || got["server"] != want["server"] {
			t.Errorf("%s: read %v, want %v", step, got, want)
		}
	}

	send(3)
	got, _ := ours(time.Hour)
	want("after 3 datagrams", got, map[string]uint32{"client": 3, "server": 3})
	got, _ = ours(time.Hour)
	want("unchanged since", got, map[string]uint32{})
	if d.UDPEntries() < 2 {
		t.Errorf("%d entries in udp_flows, want at least our 2", d.UDPEntries())
	}
	send(2)
	got, _ = ours(time.Hour)
	want("after 2 more", got, map[string]uint32{"client": 5, "server": 5})
	// Idle for a nanosecond: both again, to be released.
	time.Sleep(time.Millisecond)
	got, idx := ours(time.Nanosecond)
	want("gone idle", got, map[string]uint32{"client": 5, "server": 5})
	final, err := d.DeleteUDP(idx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range final {
		if c.TxDatagrams+c.RxDatagrams != 5 {
			t.Errorf("%s released with %d datagrams, want 5", cookies[c.Cookie], c.TxDatagrams+c.RxDatagrams)
		}
	}
	got, _ = ours(time.Nanosecond)
	want("released", got, map[string]uint32{})
}

// udpPair is a connected client and a server on loopback, closed with the
// test (a test may close the client sooner).
func udpPair(t *testing.T) (cli, srv *net.UDPConn) {
	t.Helper()
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cli, err = net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli, srv
}

// exchange sends n datagrams of 10 bytes from cli and reads each at srv.
func exchange(t *testing.T, cli, srv *net.UDPConn, n int) {
	t.Helper()
	buf := make([]byte, 64)
	for range n {
		if _, err := cli.Write([]byte("0123456789")); err != nil {
			t.Fatal(err)
		}
		if err := srv.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := srv.ReadFromUDP(buf); err != nil {
			t.Fatal(err)
		}
	}
}

func socketCookie(t *testing.T, c interface {
	SyscallConn() (syscall.RawConn, error)
}) uint64 {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var cookie uint64
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cookie, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return cookie
}

// A socket's last conversation ends with it: EndedUDP returns it once with
// its final counts, and udp_flows holds it no more.
func TestEndedUDPTakesAClosedSocketsConversation(t *testing.T) {
	d := openWith(t, Config{})
	cli, srv := udpPair(t)
	cookie := socketCookie(t, cli)
	exchange(t, cli, srv, 2)
	if _, err := d.EndedUDP(nil); err != nil { // what other tests left
		t.Fatal(err)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	count := func(convs []flow.UDPConversation) (n int, tx uint64) {
		for _, c := range convs {
			if c.Cookie == cookie {
				n++
				tx += c.TxBytes
			}
		}
		return n, tx
	}
	ended, err := d.EndedUDP(nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, tx := count(ended); n != 1 || tx != 20 {
		t.Errorf("ended: %d conversations of the closed socket with %d bytes sent, want 1 with 20", n, tx)
	}
	again, err := d.EndedUDP(nil)
	if err != nil {
		t.Fatal(err)
	}
	all, err := d.allUDP(nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := count(again); n != 0 {
		t.Errorf("ended again: %d conversations of the closed socket, want none", n)
	}
	if n, _ := count(all); n != 0 {
		t.Errorf("udp_flows holds %d conversations of the closed socket, want none", n)
	}
}
