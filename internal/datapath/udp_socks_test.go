package datapath

import (
	"errors"
	"net"
	"os"
	"testing"

	"github.com/cilium/ebpf"
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
	cookie := socketCookie(t, c)
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
