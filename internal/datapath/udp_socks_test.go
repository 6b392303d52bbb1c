package datapath

import (
	"errors"
	"net"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// A UDP socket's owner is recorded when it is created, under its cookie,
// and the entry goes when the socket is released: udp_socks holds only
// open sockets.
func TestUDPSocketEntryGoesWithTheSocket(t *testing.T) {
	d := openWith(t, Config{})

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
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
	var m flowlensUdpMeta
	if err := d.maps.UdpSocks.Lookup(cookie, &m); err != nil {
		t.Fatalf("open socket's entry: %v", err)
	}
	if m.Owner.Pid != uint32(os.Getpid()) {
		t.Errorf("owner pid %d, want %d", m.Owner.Pid, os.Getpid())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.maps.UdpSocks.Lookup(cookie, &m); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("closed socket's entry: %v, want %v", err, ebpf.ErrKeyNotExist)
	}
}
