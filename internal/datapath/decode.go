package datapath

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
	"unsafe"
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
// The names last looked up are also kept in recent, by a hash of their
// bytes, where a lookup takes no lock: the lock and the map were a quarter
// of what decoding an end event cost.
type comms struct {
	mu     sync.Mutex
	m      map[[16]int8]*comm
	recent [recentComms]atomic.Pointer[comm]
}

type comm struct {
	raw  [16]int8
	name string
}

const (
	maxComms    = 4096
	recentComms = 64 // a power of two
)

func (c *comms) intern(raw [16]int8) string {
	slot := &c.recent[recentSlot(&raw)]
	if e := slot.Load(); e != nil && e.raw == raw {
		return e.name
	}
	e := c.lookup(raw)
	slot.Store(e)
	return e.name
}

func (c *comms) lookup(raw [16]int8) *comm {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[raw]; ok {
		return e
	}
	b := make([]byte, 0, len(raw))
	for _, ch := range raw {
		b = append(b, byte(ch))
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	e := &comm{raw: raw, name: string(b)}
	if c.m == nil {
		c.m = make(map[[16]int8]*comm)
	}
	if len(c.m) < maxComms {
		c.m[raw] = e
	}
	return e
}

// recentSlot hashes a name's 16 bytes into recent (Fibonacci hashing).
func recentSlot(raw *[16]int8) int {
	b := (*[16]byte)(unsafe.Pointer(raw))
	const phi = 0x9E3779B97F4A7C15
	h := (binary.LittleEndian.Uint64(b[:8])*phi ^ binary.LittleEndian.Uint64(b[8:])) * phi
	return int(h >> (64 - bits.TrailingZeros(recentComms)))
}
