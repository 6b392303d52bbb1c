package datapath

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/internal/flow"
)

// childSelfConnect connects a socket to its own address, as a dial to a
// closed port of a host's own address does when it draws that port: the
// SYN meets itself (a simultaneous open, SYN_SENT to SYN_RECV to
// ESTABLISHED), and the socket echoes one byte to itself.
func childSelfConnect() int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return 1
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return 2
	}
	self, err := unix.Getsockname(fd)
	if err != nil {
		return 3
	}
	if err := unix.Connect(fd, self); err != nil {
		return 4
	}
	buf := []byte{'x'}
	if n, err := unix.Write(fd, buf); n != 1 || err != nil {
		return 5
	}
	if n, err := unix.Read(fd, buf); n != 1 || err != nil {
		return 6
	}
	return 0
}

// A socket connected to itself passes SYN_RECV on its way to ESTABLISHED,
// as an accepted one does; it was tracked at connect() and stays one
// client connection, not a second socket refused a place as if the map
// were full.
func TestSelfConnectIsOneClient(t *testing.T) {
	d := openWith(t, Config{})
	before, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	pid := runChild(t, "self-connect")
	ends := readEnds(t, d, pid)
	after, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if len(ends) != 1 {
		t.Fatalf("%d ends of the child's sockets, want 1: %+v", len(ends), ends)
	}
	s := ends[0].Socket
	if s.Role != flow.RoleClient || !s.Established || s.EstablishedNS == 0 || s.BytesSent != 1 || s.BytesRecv != 1 || s.Local != s.Remote {
		t.Errorf("end %+v: want one established client to itself, 1 byte each way", s)
	}
	if full := after.TCPMapFull - before.TCPMapFull; full != 0 {
		t.Errorf("tcp_map_full rose by %d", full)
	}
}
