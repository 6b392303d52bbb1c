package flow

import "net/netip"

// Role says which side of a conversation a socket is.
type Role uint8

const (
	RoleUnknown Role = iota
	RoleClient       // opened the connection / sent the first datagram
	RoleServer       // accepted the connection / answered
)

func (r Role) String() string {
	switch r {
	case RoleClient:
		return "client"
	case RoleServer:
		return "server"
	}
	return "unknown"
}

// Owner is the process a socket belongs to, as seen by the kernel.
type Owner struct {
	PID      uint32 // in the initial pid namespace
	Netns    uint32 // network namespace inode
	CgroupID uint64 // cgroup v2 id of the socket
	Command  string
}

// TCPSocket is one TCP socket's cumulative state at the time it was read.
type TCPSocket struct {
	Cookie      uint64 // unique per boot; identity across reads
	Local       netip.AddrPort
	Remote      netip.AddrPort
	Owner       Owner
	Role        Role
	Established bool
	Closed      bool // reached TCP_CLOSE; ends when the socket is released
	// Adopted: the kernel side first saw the socket already established
	// (the agent started after it opened). Its counters start from a
	// baseline taken then, and its opening was not seen: it is never
	// counted as opened.
	Adopted bool
	StartNS uint64 // CLOCK_MONOTONIC
	// EstablishedNS is when an active open tracked since connect()
	// completed its handshake (CLOCK_MONOTONIC), 0 otherwise; SYNRetrans
	// how many SYNs it sent again first.
	EstablishedNS uint64
	SYNRetrans    uint32

	BytesSent, BytesRecv uint64 // application payload
	SegsOut, SegsIn      uint32
	Retrans              uint32
	RSTSent, RSTRecv     uint32
	SRTTMicros           uint32
}

// TCPEnd is the last word on a TCP socket: closed, or its connect failed.
type TCPEnd struct {
	Socket TCPSocket
	EndNS  uint64
	Failed bool  // an active open that never got established
	Errno  int32 // sk_err at the end: ECONNREFUSED, ETIMEDOUT, ...
}

// UDPConversation is what one UDP socket exchanged with one peer.
type UDPConversation struct {
	Cookie    uint64
	Local     netip.AddrPort
	Remote    netip.AddrPort
	Owner     Owner
	Initiator bool // this socket sent the first datagram
	FirstNS   uint64
	LastNS    uint64

	TxBytes, RxBytes         uint64
	TxDatagrams, RxDatagrams uint32
}

// Drop is how many packets the kernel freed as dropped for one reason,
// attributed as far as it could tell: to a socket (Cookie) when the packet
// still had one, and to the packet's own addresses when they could be read.
type Drop struct {
	Reason string // the kernel's skb_drop_reason, snake_case: "netfilter_drop"
	Count  uint64
	Cookie uint64 // the socket the packet belonged to; 0: none
	Netns  uint32 // the socket's, else the receiving device's; 0: unknown
	// Local and Remote are the socket's own ends, or, FromPacket, the
	// packet's source and destination as it flew.
	FromPacket    bool
	Protocol      Protocol
	Local, Remote netip.AddrPort
}

// Listener is one listening socket's accept queue, as the kernel holds it
// when read, and the packets the kernel dropped for it since it began to
// listen: handshakes refused because the accept queue was full, mostly.
type Listener struct {
	Netns    uint32
	Port     uint16
	IPv6     bool
	Queue    uint32 // connections waiting for accept()
	QueueMax uint32 // the backlog listen() asked for, capped by somaxconn
	Drops    uint32 // cumulative
}
