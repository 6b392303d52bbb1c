package datapath

import (
	"bytes"
	"net/netip"
	"sync"
)

const (
	afInet  = 2
	afInet6 = 10
)

// tuple converts the kernel's address pair. IPv4 peers of dual-stack IPv6
// sockets arrive as v4-mapped addresses and are reported as plain IPv4.
func tuple(t *flowlensL4Tuple) (local, remote netip.AddrPort) {
	var l, r netip.Addr
	if t.Family == afInet {
		l = netip.AddrFrom4([4]byte(t.LocalAddr[:4]))
		r = netip.AddrFrom4([4]byte(t.RemoteAddr[:4]))
	} else {
		l = netip.AddrFrom16(t.LocalAddr).Unmap()
		r = netip.AddrFrom16(t.RemoteAddr).Unmap()
	}
	return netip.AddrPortFrom(l, t.LocalPort), netip.AddrPortFrom(r, t.RemotePort)
}

// comms interns task command names so that decoding an event allocates no
// string for a process seen before. Bounded: past maxComms it stops adding.
type comms struct {
	mu sync.Mutex
	m  map[[16]int8]string
}

const maxComms = 4096

func (c *comms) intern(raw [16]int8) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[raw]; ok {
		return s
	}
	b := make([]byte, 0, len(raw))
	for _, ch := range raw {
		b = append(b, byte(ch))
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	s := string(b)
	if c.m == nil {
		c.m = make(map[[16]int8]string)
	}
	if len(c.m) < maxComms {
		c.m[raw] = s
	}
	return s
}
