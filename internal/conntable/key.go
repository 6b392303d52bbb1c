package conntable

import (
	"net/netip"

	"github.com/flowlens/flowlens/internal/flow"
)

// recKey names a flow in an interval. It leaves out the owning process: an
// accepted socket passes from the listener's process to a worker at its
// first I/O, and stays one connection. The network namespace stays in:
// the same addresses in two namespaces are two flows.
//
// Its fields are plain memory without padding, hashed and compared as one
// block: with netip.AddrPort and flow.Protocol fields a map hashed it field
// by field, a sixth of what a short connection cost. Addresses from the
// kernel carry no IPv6 zone, and the key keeps none.
type recKey struct {
	local, remote             [16]byte // netip.Addr.As16
	localPort, remotePort     uint16
	netns                     uint32
	localFamily, remoteFamily family
	role                      flow.Role
	udp                       bool // else TCP: the table knows no other protocol
}

// family tells apart the addresses netip.Addr.As16 writes alike: IPv4 and
// IPv4-mapped IPv6, and the zero Addr.
type family uint8

const (
	noAddr family = iota
	ipv4
	ipv6
)

func newRecKey(proto flow.Protocol, role flow.Role, local, remote netip.AddrPort, netns uint32) recKey {
	k := recKey{localPort: local.Port(), remotePort: remote.Port(), netns: netns, role: role, udp: proto == flow.UDP}
	k.local, k.localFamily = addrKey(local.Addr())
	k.remote, k.remoteFamily = addrKey(remote.Addr())
	return k
}

func addrKey(a netip.Addr) ([16]byte, family) {
	switch {
	case a.Is4():
		return a.As16(), ipv4
	case a.Is6():
		return a.As16(), ipv6
	}
	return [16]byte{}, noAddr
}

func keyAddr(b [16]byte, f family) netip.Addr {
	switch f {
	case ipv4:
		return netip.AddrFrom4([4]byte(b[12:]))
	case ipv6:
		return netip.AddrFrom16(b)
	}
	return netip.Addr{}
}

func (k *recKey) proto() flow.Protocol {
	if k.udp {
		return flow.UDP
	}
	return flow.TCP
}

func (k *recKey) localAddr() netip.Addr  { return keyAddr(k.local, k.localFamily) }
func (k *recKey) remoteAddr() netip.Addr { return keyAddr(k.remote, k.remoteFamily) }
