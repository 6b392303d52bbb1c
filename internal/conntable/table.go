package conntable

import (
	"net/netip"
	"syscall"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// Config bounds the table. Zero values take the defaults.
type Config struct {
	Node string // written on every record
	// BootTime is the wall-clock time of CLOCK_MONOTONIC zero: kernel
	// timestamps plus BootTime give each record's ConnStart.
	BootTime         time.Time
	MaxSockets       int // TCP sockets remembered between reads
	MaxConversations int // UDP conversations remembered between reads
	// UDPIdle is how long a UDP conversation may be silent before the
	// kernel entry is released (SyncUDP reports it as expired).
	UDPIdle time.Duration
	// UDPForget is how long the table remembers a released conversation,
	// so that its role survives the kernel entry being recreated.
	UDPForget time.Duration
}

func (c *Config) defaults() {
	if c.MaxSockets <= 0 {
		c.MaxSockets = 1 << 17
	}
	if c.MaxConversations <= 0 {
		c.MaxConversations = 1 << 15
	}
	if c.UDPIdle <= 0 {
		c.UDPIdle = 5 * time.Second
	}
	if c.UDPForget < c.UDPIdle {
		c.UDPForget = 12 * c.UDPIdle
	}
}

// Stats counts what the table holds and what it could not account.
type Stats struct {
	Sockets              int
	Conversations        int
	SocketsDropped       uint64 // live sockets not tracked: table full
	ConversationsDropped uint64
	SocketsVanished      uint64 // left the kernel map without an end event
	Records              uint64 // records emitted
}

// vanishAfter is how many consecutive syncs a socket may be missing before
// it is presumed lost. One is not enough: a socket deleted from the kernel
// map just before a read has its end event still in the ring buffer.
const vanishAfter = 2

type sockEntry struct {
	last   flow.TCPSocket
	opened bool   // its opening was accounted
	synced uint64 // the last sync it was present in
}

type convKey struct {
	cookie        uint64
	local, remote netip.AddrPort
}

type convEntry struct {
	last      flow.UDPConversation
	initiator bool
}

type ownerKey struct {
	pid    uint32
	netns  uint32
	cgroup uint64
}

type recKey struct {
	proto         flow.Protocol
	role          flow.Role
	local, remote netip.AddrPort
	owner         ownerKey
}

type pending struct {
	rec      flow.Record
	open     bool         // a socket of this flow is established at the end
	failure  flow.Verdict // the last failed connect's verdict
	rttSum   uint64
	rttCount uint32
}

// Table is the per-node connection table. It is not safe for concurrent use.
type Table struct {
	cfg     Config
	socks   map[uint64]*sockEntry
	convs   map[convKey]*convEntry
	pending map[recKey]*pending
	syncs   uint64 // SyncTCP calls so far
	stats   Stats
}

// New returns an empty table.
func New(cfg Config) *Table {
	cfg.defaults()
	return &Table{
		cfg:     cfg,
		socks:   make(map[uint64]*sockEntry),
		convs:   make(map[convKey]*convEntry),
		pending: make(map[recKey]*pending),
	}
}

// Stats reports the table's size and losses.
func (t *Table) Stats() Stats {
	s := t.stats
	s.Sockets = len(t.socks)
	s.Conversations = len(t.convs)
	return s
}

// SyncTCP takes the complete set of live TCP sockets read from the kernel.
func (t *Table) SyncTCP(live []flow.TCPSocket) {
	t.syncs++
	for i := range live {
		s := &live[i]
		e, ok := t.socks[s.Cookie]
		if !ok {
			if len(t.socks) >= t.cfg.MaxSockets {
				t.stats.SocketsDropped++
				continue
			}
			e = &sockEntry{synced: t.syncs}
			t.socks[s.Cookie] = e
		}
		e.synced = t.syncs
		if !s.Established {
			// Still in its handshake: SYN retransmits are accounted when
			// it is established or fails, under the verdict it ends with.
			continue
		}
		opening := !e.opened
		if p := t.accountTCP(s, &e.last, opening); p != nil {
			p.open = !s.Closed
			if opening {
				e.opened = true
				p.rec.Opened++
			}
		}
		e.last = *s
	}
	for cookie, e := range t.socks {
		if t.syncs-e.synced >= vanishAfter {
			delete(t.socks, cookie)
			t.stats.SocketsVanished++
		}
	}
}

// EndTCP takes a socket's end event from the ring buffer.
func (t *Table) EndTCP(ev flow.TCPEnd) {
	var prev flow.TCPSocket
	e, known := t.socks[ev.Socket.Cookie]
	if known {
		prev = e.last
		delete(t.socks, ev.Socket.Cookie)
	}
	p := t.accountTCP(&ev.Socket, &prev, true)
	p.open = false
	if ev.Failed {
		v := failure(ev.Errno)
		p.failure = v
		switch v {
		case flow.VerdictRefused:
			p.rec.Refused++
		case flow.VerdictTimeout:
			p.rec.TimedOut++
		default:
			p.rec.FailedOther++
		}
		return
	}
	if !known || !e.opened {
		p.rec.Opened++
	}
	p.rec.Closed++
}

// failure classifies a failed connect by the error the kernel recorded.
// No error means the caller closed the socket while the SYN was unanswered:
// a timeout from the caller's point of view (Go's DialTimeout, curl
// --connect-timeout), as opposed to the kernel's own ETIMEDOUT.
func failure(errno int32) flow.Verdict {
	switch syscall.Errno(errno) {
	case syscall.ECONNREFUSED:
		return flow.VerdictRefused
	case 0, syscall.ETIMEDOUT:
		return flow.VerdictTimeout
	case syscall.EHOSTUNREACH, syscall.ENETUNREACH:
		return flow.VerdictUnreachable
	}
	return flow.VerdictFailed
}

// accountTCP adds what changed since prev to the socket's pending record.
// It returns nil, creating nothing, when nothing changed and force is false:
// idle long-lived sockets cost no record.
func (t *Table) accountTCP(s, prev *flow.TCPSocket, force bool) *pending {
	role := s.Role
	if role == flow.RoleUnknown {
		role = flow.RoleClient
	}
	sent, recv := s.BytesSent-min(prev.BytesSent, s.BytesSent), s.BytesRecv-min(prev.BytesRecv, s.BytesRecv)
	out, in := s.SegsOut-min(prev.SegsOut, s.SegsOut), s.SegsIn-min(prev.SegsIn, s.SegsIn)
	retrans := s.Retrans - min(prev.Retrans, s.Retrans)
	rstOut, rstIn := s.RSTSent-min(prev.RSTSent, s.RSTSent), s.RSTRecv-min(prev.RSTRecv, s.RSTRecv)
	if !force && sent+recv == 0 && out+in+retrans+rstOut+rstIn == 0 {
		return nil
	}
	p := t.record(flow.TCP, role, s.Local, s.Remote, s.Owner, s.StartNS)
	r := &p.rec
	if role == flow.RoleClient {
		r.BytesToDst += sent
		r.BytesToSrc += recv
		r.SegmentsToDst += out
		r.SegmentsToSrc += in
		r.RetransToDst += retrans
		r.ResetsBySrc += rstOut
		r.ResetsByDst += rstIn
	} else {
		r.BytesToDst += recv
		r.BytesToSrc += sent
		r.SegmentsToDst += in
		r.SegmentsToSrc += out
		r.RetransToSrc += retrans
		r.ResetsBySrc += rstIn
		r.ResetsByDst += rstOut
	}
	if s.SRTTMicros > 0 {
		p.rttSum += uint64(s.SRTTMicros)
		p.rttCount++
		if r.RTT == nil {
			r.RTT = &flow.RTT{MinMicros: s.SRTTMicros, MaxMicros: s.SRTTMicros}
		}
		r.RTT.MinMicros = min(r.RTT.MinMicros, s.SRTTMicros)
		r.RTT.MaxMicros = max(r.RTT.MaxMicros, s.SRTTMicros)
	}
	return p
}

// SyncUDP takes the complete set of UDP conversations read from the kernel
// at monotonic time now, and returns the indexes into live of those idle
// long enough that the caller should delete them from the kernel map.
func (t *Table) SyncUDP(live []flow.UDPConversation, now uint64) (expired []int) {
	for i := range live {
		c := &live[i]
		k := convKey{c.Cookie, c.Local, c.Remote}
		e, ok := t.convs[k]
		if !ok {
			if len(t.convs) >= t.cfg.MaxConversations {
				t.stats.ConversationsDropped++
				continue
			}
			e = &convEntry{initiator: c.Initiator}
			t.convs[k] = e
		}
		prev := e.last
		if prev.FirstNS != c.FirstNS {
			// The kernel entry was released and created anew: it counts
			// from zero again, but the conversation keeps its roles.
			prev = flow.UDPConversation{}
		}
		t.accountUDP(c, &prev, e.initiator)
		e.last = *c
		if now >= c.LastNS && now-c.LastNS >= uint64(t.cfg.UDPIdle) {
			expired = append(expired, i)
		}
	}
	for k, e := range t.convs {
		if now >= e.last.LastNS && now-e.last.LastNS >= uint64(t.cfg.UDPForget) {
			delete(t.convs, k)
		}
	}
	return expired
}

func (t *Table) accountUDP(c, prev *flow.UDPConversation, initiator bool) {
	tx, rx := c.TxBytes-min(prev.TxBytes, c.TxBytes), c.RxBytes-min(prev.RxBytes, c.RxBytes)
	txd, rxd := c.TxDatagrams-min(prev.TxDatagrams, c.TxDatagrams), c.RxDatagrams-min(prev.RxDatagrams, c.RxDatagrams)
	if tx == 0 && rx == 0 && txd == 0 && rxd == 0 {
		return
	}
	role := flow.RoleServer
	if initiator {
		role = flow.RoleClient
		tx, rx, txd, rxd = rx, tx, rxd, txd // to source is what this socket received
	}
	// From here tx/txd flow toward the source, rx/rxd toward the destination.
	p := t.record(flow.UDP, role, c.Local, c.Remote, c.Owner, c.FirstNS)
	p.rec.BytesToSrc += tx
	p.rec.BytesToDst += rx
	p.rec.DatagramsToSrc += txd
	p.rec.DatagramsToDst += rxd
}

// record returns the pending record of a flow, creating it.
func (t *Table) record(proto flow.Protocol, role flow.Role, local, remote netip.AddrPort, o flow.Owner, startNS uint64) *pending {
	k := recKey{proto, role, local, remote, ownerKey{o.PID, o.Netns, o.CgroupID}}
	if p, ok := t.pending[k]; ok {
		if p.rec.Source.Command == "" && p.rec.Destination.Command == "" && o.Command != "" {
			setOwner(&p.rec, role, o)
		}
		return p
	}
	p := &pending{rec: flow.Record{
		Node:      t.cfg.Node,
		Observer:  role.String(),
		Protocol:  proto,
		IPVersion: 4,
		ConnStart: t.cfg.BootTime.Add(time.Duration(startNS)),
	}}
	if local.Addr().Is6() {
		p.rec.IPVersion = 6
	}
	self := flow.Endpoint{IP: local.Addr(), Port: local.Port()}
	peer := flow.Endpoint{IP: remote.Addr(), Port: remote.Port()}
	if role == flow.RoleClient {
		p.rec.Source, p.rec.Destination = self, peer
	} else {
		p.rec.Source, p.rec.Destination = peer, self
	}
	setOwner(&p.rec, role, o)
	t.pending[k] = p
	return p
}

func setOwner(r *flow.Record, role flow.Role, o flow.Owner) {
	ep := &r.Destination
	if role == flow.RoleClient {
		ep = &r.Source
	}
	ep.PID, ep.Netns, ep.CgroupID, ep.Command = o.PID, o.Netns, o.CgroupID, o.Command
}

// Flush returns the records of the interval [start, end) and starts a new
// one. A flow appears only if something happened on it in the interval.
func (t *Table) Flush(start, end time.Time) []flow.Record {
	out := make([]flow.Record, 0, len(t.pending))
	for k, p := range t.pending {
		r := p.rec
		if !active(&r) {
			continue
		}
		r.Start, r.Time = start, end
		if p.rttCount > 0 {
			rtt := *r.RTT
			rtt.AvgMicros = uint32(p.rttSum / uint64(p.rttCount))
			r.RTT = &rtt
		}
		r.Verdict = verdict(k.proto, p)
		out = append(out, r)
	}
	clear(t.pending)
	t.stats.Records += uint64(len(out))
	return out
}

func active(r *flow.Record) bool {
	return r.Opened+r.Closed+r.Refused+r.TimedOut+r.FailedOther+r.ResetsBySrc+r.ResetsByDst+
		r.RetransToDst+r.RetransToSrc+r.SegmentsToDst+r.SegmentsToSrc+r.DatagramsToDst+r.DatagramsToSrc > 0 ||
		r.BytesToDst+r.BytesToSrc > 0
}

func verdict(proto flow.Protocol, p *pending) flow.Verdict {
	r := &p.rec
	switch {
	case proto == flow.UDP && r.DatagramsToDst > 0 && r.DatagramsToSrc > 0:
		return flow.VerdictAnswered
	case proto == flow.UDP:
		return flow.VerdictUnanswered
	case p.open:
		return flow.VerdictEstablished
	case r.Closed > 0 && r.ResetsBySrc+r.ResetsByDst > 0:
		return flow.VerdictReset
	case r.Closed > 0:
		return flow.VerdictClosed
	case p.failure != "":
		return p.failure
	}
	// Traffic on a socket still in its handshake, or already gone.
	return flow.VerdictEstablished
}
