package datapath

import (
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/flowlens/flowlens/internal/flow"
)

// L7Source says where an L7 sample's bytes were taken.
type L7Source uint8

const (
	L7Syscall L7Source = iota // a send/recv system call's buffer
	L7OpenSSL                 // SSL_read/SSL_write plaintext
	L7GoTLS                   // crypto/tls (*Conn).Read/Write plaintext
	L7UDP                     // a UDP datagram's payload
)

// TLS reports whether the sample is plaintext read from a TLS library.
func (s L7Source) TLS() bool { return s == L7OpenSSL || s == L7GoTLS }

// L7Sample is the first bytes of one send or receive on a socket.
type L7Sample struct {
	Cookie        uint64
	NS            uint64 // CLOCK_MONOTONIC
	Protocol      flow.Protocol
	Local, Remote netip.AddrPort // UDP: the datagram's; remote before NAT
	Send          bool           // the socket's process wrote it
	Source        L7Source
	Role          flow.Role // TCP: the socket's role
	// Hint is what the kernel's content check took the socket's first
	// bytes for; "" when it said nothing (TLS plaintext is checked here).
	Hint  flow.L7Protocol
	Gap   bool // samples of this socket before this one were lost
	PID   uint32
	Netns uint32
	// PeerCookie, of a TCP client's sample, is the socket of the
	// connection's server end when that end is on this node and takes no
	// samples of its own: the sample is both ends'. 0: none.
	PeerCookie uint64
	PeerNetns  uint32 // the server end's network namespace
	Len        int    // bytes the call moved
	Data       []byte // its first bytes; valid until the next ReadL7
	// Seq places a TCP client's system call's sample in its stream: a
	// send's is the end of its bytes (the socket's write sequence after
	// it). Early marks a receive the server answered after a send whose
	// sample comes later in the ring (the sender was preempted before its
	// hook); its Seq is how far the server had read (snd_una), which that
	// send's reaches. 0 and false for the other samples (a server's, TLS
	// plaintext, UDP).
	Seq   uint32
	Early bool
}

// L7On reports whether L7 capture is loaded.
func (d *Datapath) L7On() bool { return d.l7ring != nil }

// Uprobes returns the loaded uprobe programs by name, for tlsprobe to
// attach to the TLS libraries it finds.
func (d *Datapath) Uprobes() map[string]*ebpf.Program { return d.uprobes }

// ReadL7 blocks until an L7 sample arrives or deadline passes. It is used by
// one goroutine; ReadEnd may run at the same time in another.
func (d *Datapath) ReadL7(deadline time.Time) (L7Sample, error) {
	raw, err := readRing(d.l7ring, d.l7wake, deadline)
	if err != nil {
		return L7Sample{}, err
	}
	return decodeL7(raw, &d.l7ev)
}

// NextL7 returns the sample the ring holds next, without waiting: false
// when it holds none. With WaitL7 it is how the agent reads: no system
// call, no clock read a sample. A sample's Data is valid until the next
// ReadL7 or NextL7, whose calls must not overlap.
func (d *Datapath) NextL7() (L7Sample, bool, error) {
	raw, err := d.l7ring.next()
	if raw == nil || err != nil {
		return L7Sample{}, false, err
	}
	s, err := decodeL7(raw, &d.l7ev)
	return s, err == nil, err
}

// WaitL7 blocks until the kernel wakes the L7 ring's readers, which it does
// once the ring is a quarter full (l7_wakeup_bytes), or until Close
// (ringbuf.ErrClosed). It reads nothing: NextL7 does.
func (d *Datapath) WaitL7() error { return waitReadable(d.l7wake, time.Time{}) }

var l7Hints = [...]flow.L7Protocol{
	flowlensL7HintL7HINT_HTTP:     flow.HTTP,
	flowlensL7HintL7HINT_POSTGRES: flow.Postgres,
	flowlensL7HintL7HINT_REDIS:    flow.Redis,
	flowlensL7HintL7HINT_DNS:      flow.DNS,
	flowlensL7HintL7HINT_OPAQUE:   "",
}

// decodeL7 decodes a sample's header into ev; the result's Data aliases
// raw, which the ring reader reuses: no copy of the payload. A record the
// kernel side could not have written is an error.
func decodeL7(raw []byte, ev *flowlensL7Event) (L7Sample, error) {
	head := int(unsafe.Offsetof(ev.Data))
	if len(raw) < head {
		return L7Sample{}, fmt.Errorf("short L7 sample: %d bytes, want at least %d", len(raw), head)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(ev)), head), raw)
	n := int(ev.Captured)
	switch {
	case n > len(ev.Data) || head+n > len(raw):
		return L7Sample{}, fmt.Errorf("L7 sample claims %d bytes, carries %d", n, len(raw)-head)
	case uint32(n) > ev.Len:
		return L7Sample{}, fmt.Errorf("L7 sample of %d bytes from a call that moved %d", n, ev.Len)
	case ev.Source > uint8(flowlensL7SourceL7SRC_UDP):
		return L7Sample{}, fmt.Errorf("L7 sample from unknown source %d", ev.Source)
	case ev.Tuple.Family != afInet && ev.Tuple.Family != afInet6:
		return L7Sample{}, fmt.Errorf("L7 sample of address family %d", ev.Tuple.Family)
	case ev.Role > uint8(flow.RoleServer):
		return L7Sample{}, fmt.Errorf("L7 sample of unknown role %d", ev.Role)
	}
	s := L7Sample{
		Cookie: ev.Cookie, NS: ev.Ns, Protocol: flow.TCP,
		Send: ev.Dir == uint8(flowlensL7DirL7SEND), Source: L7Source(ev.Source),
		Role: flow.Role(ev.Role), Gap: ev.Gap != 0, PID: ev.Pid, Netns: ev.Netns,
		PeerCookie: ev.PeerCookie, PeerNetns: ev.PeerNetns,
		Len: int(ev.Len), Data: raw[head : head+n : head+n],
		Seq: ev.Seq, Early: ev.Early != 0,
	}
	if int(ev.Hint) < len(l7Hints) {
		s.Hint = l7Hints[ev.Hint]
	}
	if ev.Tuple.Protocol == ipprotoUDP {
		s.Protocol = flow.UDP
	}
	s.Local, s.Remote = tuple(&ev.Tuple)
	return s, nil
}
