package conntable

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// Config bounds the table. Zero values take the defaults; Fit sizes the
// tables from the kernel maps they mirror.
type Config struct {
	Node string // written on every record
	// BootTime is the wall-clock time of CLOCK_MONOTONIC zero, read as
	// time.Now() minus CLOCK_MONOTONIC so that it carries Go's monotonic
	// reading: kernel timestamps plus BootTime give each record's
	// ConnStart. The table follows wall-clock steps from there (clock.go).
	BootTime time.Time
	// MaxSockets bounds the TCP sockets remembered between reads: those
	// live in the kernel map and those that left it without an end event
	// yet (SocketsFor).
	MaxSockets int
	// MaxConversations bounds the UDP conversations remembered: those live
	// in the kernel map and those released and remembered for their role
	// (ConversationsFor).
	MaxConversations int
	// UDPIdle is how long a UDP conversation may be silent before the
	// kernel entry is released (SyncUDP reports it as expired).
	UDPIdle time.Duration
	// UDPForget is how long the table remembers a released conversation,
	// so that its role survives the kernel entry being recreated.
	UDPForget time.Duration
	// DropHold is how long a drop waits for a record of its flow, and
	// MaxHeldDrops how many drops (kinds, not packets) may wait: a SYN
	// dropped on its way to a server shows on the client's connect when
	// the connect fails, which takes the kernel's SYN retries.
	DropHold     time.Duration
	MaxHeldDrops int
}

const (
	defaultUDPIdle   = 5 * time.Second
	defaultUDPForget = 12 * defaultUDPIdle
	// The kernel maps' default sizes (datapath.DefaultConfig), for a table
	// built without Fit.
	defaultKernelSockets       = 1 << 16
	defaultKernelConversations = 1 << 14
	defaultInterval            = time.Second
	// The kernel gives up on a connect after tcp_syn_retries (6) SYNs,
	// 127 s with the initial 1 s timeout.
	defaultDropHold     = 130 * time.Second
	defaultMaxHeldDrops = 4096
)

func (c *Config) defaults() {
	if c.UDPIdle <= 0 {
		c.UDPIdle = defaultUDPIdle
	}
	if c.UDPForget < c.UDPIdle {
		c.UDPForget = 12 * c.UDPIdle
	}
	if c.DropHold <= 0 {
		c.DropHold = defaultDropHold
	}
	if c.MaxHeldDrops <= 0 {
		c.MaxHeldDrops = defaultMaxHeldDrops
	}
	if c.MaxSockets <= 0 {
		c.MaxSockets = SocketsFor(defaultKernelSockets)
	}
	if c.MaxConversations <= 0 {
		c.MaxConversations = ConversationsFor(defaultKernelConversations, c.UDPIdle, c.UDPForget, defaultInterval)
	}
}

// Stats counts what the table holds and what it could not account. Each
// loss counter has one unit, named by the field.
type Stats struct {
	Sockets       int
	Conversations int
	// SocketsUntracked counts live sockets that did not fit in the table
	// when first read, once per socket (as far as a memory of MaxSockets
	// cookies reaches). Their traffic is reported late, when they fit or
	// end, and lost only if their end event is lost too.
	SocketsUntracked uint64
	// SocketsVanished counts sockets that left the kernel map without an
	// end event: their last interval's traffic is lost.
	SocketsVanished uint64
	// ConversationsReleasedEarly counts conversations that did not fit in
	// the table: accounted whole and their kernel entry released at once,
	// so that the kernel map does not fill. A role may flip when the
	// conversation resumes.
	ConversationsReleasedEarly uint64
	// ConversationsForgottenEarly counts released conversations forgotten
	// before UDPForget to make room. A role may flip when one resumes.
	ConversationsForgottenEarly uint64
	// DropsUnmatched counts dropped packets matched to no flow: none had
	// a record within DropHold, or more drops waited than MaxHeldDrops.
	// The kernel's counts by reason include them.
	DropsUnmatched uint64
	ClockSteps     uint64 // wall-clock steps followed
	Records        uint64 // records emitted
	// RecordsForRequests counts records made for requests alone: their
	// flow had no traffic accounted in the interval their samples were
	// read in.
	RecordsForRequests uint64
}

// vanishAfter is how many consecutive complete syncs a socket may be
// missing from before it is presumed lost. One is not enough: a socket
// deleted from the kernel map just before a read has its end event still
// in the ring buffer.
const vanishAfter = 2

// sockEntry is one socket (cookie) and the connection last read on it.
type sockEntry struct {
	conn connection
	// synced is the count of complete syncs when it was last read, in
	// whole or as touched.
	synced uint64
	// earlier is the connection before a connect() again on this socket,
	// kept until its end event arrives.
	earlier *connection
}

// connection is what was accounted of one connection on a socket: a
// connect() again after a failed (or disconnected) one keeps the cookie
// but starts anew, from zeroed counters, at another StartNS.
type connection struct {
	start  uint64
	last   flow.TCPSocket // counters accounted so far; zero until established
	opened bool           // its opening was accounted, or it was adopted
}

// convKey finds a conversation. Pointer-free and without padding (an
// netip.AddrPort holds a zone pointer and padding), so that the map hashes
// and compares it as plain memory and, its entries holding no pointers
// either, the GC never scans it: at a thousand DNS queries a second it
// remembers two conversations a query for UDPForget.
type convKey struct {
	cookie        uint64
	local, remote [16]byte
	ports         uint64 // IPv4 bit, local port, remote port
}

func newConvKey(cookie uint64, local, remote netip.AddrPort) convKey {
	k := convKey{cookie: cookie, local: local.Addr().As16(), remote: remote.Addr().As16(),
		ports: uint64(local.Port())<<16 | uint64(remote.Port())}
	if local.Addr().Is4() {
		k.ports |= 1 << 32
	}
	return k
}

// udpCounts are a kernel entry's cumulative counters.
type udpCounts struct {
	txBytes, rxBytes uint64
	txd, rxd         uint32
}

// releasedConv queues a conversation released from the kernel map, to be
// forgotten UDPForget after its last datagram.
type releasedConv struct {
	key    convKey
	lastNS uint64
}

type convEntry struct {
	firstNS, lastNS uint64 // of the kernel entry last read
	counts          udpCounts
	initiator       bool
	seen            uint64 // the last UDP sync that read it
}

// pending is a flow's record in the making: what the record will name and
// count, not the record. Flush builds each flow.Record (≈700 bytes, most
// of them identity's fields, empty here) once, in place in the slice it
// returns; a whole record kept here was written when made, copied out at
// Flush and copied again into that slice, which was most of what a short
// connection cost.
type pending struct {
	key     recKey
	hash    uint64     // of key (flowIndex)
	owner   flow.Owner // the observing side's process (setOwner)
	rec     counts
	startNS uint64       // ConnStart, converted at Flush
	cookie  uint64       // the TCP socket last accounted on it
	open    bool         // a socket of this flow is established at the end
	flushed bool         // a slot FlushEnded released (arena.release), not a record
	failure flow.Verdict // the last failed connect's verdict
	rtt     micros       // the sockets' smoothed RTT samples
	connect micros       // the connects' handshake times
}

// counts are what a record counts, named as flow.Record names them.
type counts struct {
	Opened, Closed, Refused, TimedOut, FailedOther uint32
	ResetsBySrc, ResetsByDst                       uint32
	SYNRetrans                                     uint32
	BytesToDst, BytesToSrc                         uint64
	SegmentsToDst, SegmentsToSrc                   uint32
	DatagramsToDst, DatagramsToSrc                 uint32
	RetransToDst, RetransToSrc                     uint32
	Drops                                          map[string]uint64
	Requests                                       []flow.Requests
}

// micros gathers microsecond samples into a minimum, average and maximum.
type micros struct {
	sum       uint64
	n, lo, hi uint32
}

func (m *micros) add(v uint32) {
	if m.n == 0 || v < m.lo {
		m.lo = v
	}
	m.hi = max(m.hi, v)
	m.sum += uint64(v)
	m.n++
}

// stats is nil without samples; else it is appended to slab, which the
// records of one flush share: one allocation per flush, not one per
// record (100,000 a second with as many active connections).
func (m *micros) stats(slab *[]flow.RTT) *flow.RTT {
	if m.n == 0 {
		return nil
	}
	// Past its capacity append moves on to a new array: the records
	// already given keep the old one.
	*slab = append(*slab, flow.RTT{MinMicros: m.lo, AvgMicros: uint32(m.sum / uint64(m.n)), MaxMicros: m.hi})
	return &(*slab)[len(*slab)-1]
}

// opened counts a connection seen opening, with how long its handshake
// took and how many SYNs it needed where the kernel side saw it from
// connect() on.
func (p *pending) opened(s *flow.TCPSocket) {
	p.rec.Opened++
	if s.Role == flow.RoleClient && s.EstablishedNS > s.StartNS {
		p.connect.add(uint32(min((s.EstablishedNS-s.StartNS)/1000, math.MaxUint32)))
		p.rec.SYNRetrans += s.SYNRetrans
	}
}

// Table is the per-node connection table. It is not safe for concurrent use.
type Table struct {
	cfg       Config
	clock     clock
	socks     map[uint64]*sockEntry
	untracked map[uint64]uint64 // cookie -> last sync, of sockets counted in SocketsUntracked
	convs     map[convKey]convEntry
	released  []releasedConv // conversations gone from the kernel map, oldest first
	releasing []releasedConv // those ReleasedUDP took since the last SyncUDP
	pending   flowIndex
	arena     pendingArena              // where pending's records live
	ended     []*pending                // records with an end counted, not flushed yet (early.go)
	kept      map[recKey][]keptRequests // request groups waiting for their record (early.go)
	held      []heldDrop                // drops waiting for a record of their flow, oldest first
	syncs     uint64                    // SyncTCP calls so far: complete reads
	// missing counts the sockets the last SyncTCP missed for the first
	// time: another complete read confirms them vanished.
	missing  int
	vanished []flow.TCPSocket // what the last SyncTCP let go
	udpSyncs uint64           // SyncUDP calls so far
	stats    Stats
}

// New returns an empty table.
func New(cfg Config) *Table {
	cfg.defaults()
	return &Table{
		cfg:       cfg,
		clock:     newClock(cfg.BootTime),
		socks:     make(map[uint64]*sockEntry),
		untracked: make(map[uint64]uint64),
		convs:     make(map[convKey]convEntry),
		kept:      make(map[recKey][]keptRequests),
		pending:   newFlowIndex(),
	}
}

// Stats reports the table's size and losses.
func (t *Table) Stats() Stats {
	s := t.stats
	s.Sockets = len(t.socks)
	s.Conversations = len(t.convs)
	s.ClockSteps = t.clock.steps
	return s
}

// SyncTCP takes the complete set of live TCP sockets read from the kernel.
// Sockets missing from vanishAfter complete reads in a row (and read as
// touched in none between) are let go before new ones are added, so the
// table never holds more than vanishAfter kernel maps' worth plus what
// TouchedTCP added since. It returns those let go, counted in
// SocketsVanished, as last read (only the cookie and start of one never
// read established), for the caller to name; the slice is reused by the
// next call.
func (t *Table) SyncTCP(live []flow.TCPSocket) (vanished []flow.TCPSocket) {
	t.syncs++
	fresh := t.syncKnown(live)
	t.missing = 0
	t.vanished = t.vanished[:0]
	for cookie, e := range t.socks {
		switch t.syncs - e.synced {
		case 0:
		case vanishAfter - 1:
			t.missing++
		default:
			delete(t.socks, cookie)
			t.stats.SocketsVanished++
			s := e.conn.last
			s.Cookie, s.StartNS = cookie, e.conn.start
			t.vanished = append(t.vanished, s)
		}
	}
	for cookie, seen := range t.untracked {
		if t.syncs-seen >= vanishAfter {
			delete(t.untracked, cookie)
		}
	}
	t.addFresh(live, fresh)
	return t.vanished
}

// TouchedTCP takes the live TCP sockets whose state changed since they
// were last read (the kernel marks them), each at most once: what an
// interval costs is what moved, not what is open. Sockets not given are
// unchanged, not gone: only SyncTCP finds vanished ones.
func (t *Table) TouchedTCP(touched []flow.TCPSocket) {
	t.addFresh(touched, t.syncKnown(touched))
}

// MissingTCP reports how many sockets the last SyncTCP missed once, whose
// loss only another SyncTCP can confirm.
func (t *Table) MissingTCP() int { return t.missing }

// syncKnown accounts the sockets the table knows and returns the indexes
// of the others.
func (t *Table) syncKnown(socks []flow.TCPSocket) (fresh []int) {
	for i := range socks {
		if e, ok := t.socks[socks[i].Cookie]; ok {
			t.syncSocket(e, &socks[i])
		} else {
			fresh = append(fresh, i)
		}
	}
	return fresh
}

func (t *Table) addFresh(socks []flow.TCPSocket, fresh []int) {
	for _, i := range fresh {
		s := &socks[i]
		if len(t.socks) >= t.cfg.MaxSockets {
			t.untrack(s.Cookie)
			continue
		}
		delete(t.untracked, s.Cookie)
		e := &sockEntry{conn: connection{start: s.StartNS}}
		t.socks[s.Cookie] = e
		t.syncSocket(e, s)
	}
}

// untrack counts a live socket that does not fit, once: the memory of
// those counted is bounded by MaxSockets, past which a socket may be
// counted again.
func (t *Table) untrack(cookie uint64) {
	if _, ok := t.untracked[cookie]; !ok {
		t.stats.SocketsUntracked++
		if len(t.untracked) >= t.cfg.MaxSockets {
			return
		}
	}
	t.untracked[cookie] = t.syncs
}

func (t *Table) syncSocket(e *sockEntry, s *flow.TCPSocket) {
	e.synced = t.syncs
	if s.StartNS != e.conn.start {
		// connect() again on the same socket: the earlier connection's
		// end event may still be queued, and is accounted against it.
		earlier := e.conn
		e.earlier, e.conn = &earlier, connection{start: s.StartNS}
	}
	if !s.Established {
		// Still in its handshake: SYN retransmits are accounted when
		// it is established or fails, under the verdict it ends with.
		return
	}
	c := &e.conn
	opening := !c.opened && !s.Adopted
	if p := t.accountTCP(s, &c.last, opening); p != nil {
		p.open = !s.Closed
		if opening {
			p.opened(s)
		}
	}
	c.opened = true
	c.last = *s
}

// EndTCP takes a socket's end event from the ring buffer.
func (t *Table) EndTCP(ev flow.TCPEnd) {
	s := &ev.Socket
	// A connection no read saw carries its whole history in its end event.
	var c connection
	if e, ok := t.socks[s.Cookie]; ok {
		switch {
		case e.conn.start == s.StartNS && !(ev.Failed && e.conn.opened):
			// (A failed connect cannot end a connection read established:
			// it is an earlier one, even if the clock gave both one start.)
			c = e.conn
			delete(t.socks, s.Cookie)
		case e.earlier != nil && e.earlier.start == s.StartNS:
			c, e.earlier = *e.earlier, nil
		}
	} else {
		delete(t.untracked, s.Cookie)
	}
	p := t.accountTCP(s, &c.last, true)
	if p.rec.ends() == 0 {
		t.ended = append(t.ended, p) // its first end, counted below
	}
	p.open = false
	if ev.Failed {
		v := failure(ev.Errno)
		p.failure = v
		// A connect that never completed sent nothing but SYNs.
		p.rec.SYNRetrans += s.Retrans
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
	if !c.opened && !s.Adopted {
		p.opened(s)
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

// delta32 is how far a 32-bit kernel counter moved from prev to cur. The
// kernel's counters wrap; within one connection they only grow, so the
// modular difference is the true one as long as fewer than 2^32 events
// happen between two reads.
//
//	prev 0xFFFFFF00 ──(+0x100 to wrap)──▶ 0 ──(+0x100)──▶ cur 0x100: 0x200
func delta32(cur, prev uint32) uint32 { return cur - prev }

// delta64 is how far a 64-bit byte counter moved. Bytes do not wrap; a
// counter going back would be a new connection misread as the same one,
// and counts nothing rather than 2^64.
func delta64(cur, prev uint64) uint64 { return cur - min(prev, cur) }

// accountTCP adds what changed since prev to the socket's pending record.
// It returns nil, creating nothing, when nothing changed and force is false:
// idle long-lived sockets cost no record.
func (t *Table) accountTCP(s, prev *flow.TCPSocket, force bool) *pending {
	role := s.Role
	if role == flow.RoleUnknown {
		role = flow.RoleClient
	}
	sent, recv := delta64(s.BytesSent, prev.BytesSent), delta64(s.BytesRecv, prev.BytesRecv)
	out, in := delta32(s.SegsOut, prev.SegsOut), delta32(s.SegsIn, prev.SegsIn)
	retrans := delta32(s.Retrans, prev.Retrans)
	rstOut, rstIn := delta32(s.RSTSent, prev.RSTSent), delta32(s.RSTRecv, prev.RSTRecv)
	if !force && sent+recv == 0 && out|in|retrans|rstOut|rstIn == 0 {
		return nil
	}
	p := t.record(flow.TCP, role, s.Local, s.Remote, s.Owner, s.StartNS)
	p.cookie = s.Cookie
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
		p.rtt.add(s.SRTTMicros)
	}
	return p
}

// SyncUDP takes the UDP conversations read from the kernel at monotonic
// time now: at least those that changed since the last read and those
// gone idle (a complete read will do). It returns the indexes into changed
// of those the caller should release from the kernel map, and then hand
// to ReleasedUDP: idle ones, and new ones that find the table full of live
// ones (counted in ConversationsReleasedEarly). Every datagram in changed
// is accounted.
func (t *Table) SyncUDP(changed []flow.UDPConversation, now uint64) (expired []int) {
	t.udpSyncs++
	t.release()
	var fresh []int
	for i := range changed {
		c := &changed[i]
		k := newConvKey(c.Cookie, c.Local, c.Remote)
		e, ok := t.convs[k]
		if !ok {
			fresh = append(fresh, i)
			continue
		}
		t.syncConv(&e, c)
		t.convs[k] = e
		if t.idle(c, now) {
			expired = append(expired, i)
		}
	}
	t.forget(now, len(fresh))
	for _, i := range fresh {
		c := &changed[i]
		e := convEntry{initiator: c.Initiator}
		t.syncConv(&e, c)
		if len(t.convs) >= t.cfg.MaxConversations {
			t.stats.ConversationsReleasedEarly++
			expired = append(expired, i)
			continue
		}
		t.convs[newConvKey(c.Cookie, c.Local, c.Remote)] = e
		if t.idle(c, now) {
			expired = append(expired, i)
		}
	}
	return expired
}

// ReleasedUDP accounts what a conversation counted between its read (as
// given to SyncUDP) and the deletion of its kernel entry: a datagram can
// land in between, and the deletion returns the entry's final counts. The
// conversation is then remembered, for its role, until forgotten.
func (t *Table) ReleasedUDP(read, final *flow.UDPConversation) {
	prev := udpCounts{txBytes: read.TxBytes, rxBytes: read.RxBytes, txd: read.TxDatagrams, rxd: read.RxDatagrams}
	if final.FirstNS != read.FirstNS {
		prev = udpCounts{} // a new entry made after the read under the same key
	}
	initiator := final.Initiator
	k := newConvKey(final.Cookie, final.Local, final.Remote)
	if e, ok := t.convs[k]; ok {
		initiator = e.initiator
		e.lastNS = max(e.lastNS, final.LastNS)
		t.convs[k] = e
		t.releasing = append(t.releasing, releasedConv{k, e.lastNS})
	}
	t.accountUDP(final, prev, initiator)
}

// UDPIdle is the silence after which SyncUDP releases a conversation.
func (t *Table) UDPIdle() time.Duration { return t.cfg.UDPIdle }

// EndedUDP accounts a conversation that ended with its socket, moved out
// of the kernel map with its final counts: what an earlier read of the
// same kernel entry did not account. It is then remembered for its role,
// as a released one, so that a datagram that comes after all starts no
// conversation of the other role. Call it before SyncUDP of the same
// interval: a later read may hold a new entry under the same key.
func (t *Table) EndedUDP(final *flow.UDPConversation) {
	k := newConvKey(final.Cookie, final.Local, final.Remote)
	e, ok := t.convs[k]
	if !ok {
		e = convEntry{initiator: final.Initiator}
	}
	t.syncConv(&e, final)
	if ok || len(t.convs) < t.cfg.MaxConversations {
		t.convs[k] = e
	}
	t.releasing = append(t.releasing, releasedConv{k, e.lastNS})
}

func (t *Table) idle(c *flow.UDPConversation, now uint64) bool {
	return now >= c.LastNS && now-c.LastNS >= uint64(t.cfg.UDPIdle)
}

func (t *Table) syncConv(e *convEntry, c *flow.UDPConversation) {
	prev := e.counts
	if e.firstNS != c.FirstNS {
		// The kernel entry was released and created anew: it counts
		// from zero again, but the conversation keeps its roles.
		prev = udpCounts{}
	}
	t.accountUDP(c, prev, e.initiator)
	e.firstNS, e.lastNS, e.seen = c.FirstNS, c.LastNS, t.udpSyncs
	e.counts = udpCounts{txBytes: c.TxBytes, rxBytes: c.RxBytes, txd: c.TxDatagrams, rxd: c.RxDatagrams}
}

// release queues the conversations released since the last sync. Each
// was idle at that sync, and heard after the idle cutoff of the sync
// before, when it was not: each batch, sorted, comes after every earlier
// one, and the queue stays ordered by last datagram.
func (t *Table) release() {
	slices.SortFunc(t.releasing, func(a, b releasedConv) int { return cmp.Compare(a.lastNS, b.lastNS) })
	t.released = append(t.released, t.releasing...)
	t.releasing = t.releasing[:0]
}

// forget drops released conversations silent for UDPForget, oldest first,
// and more of them if the adding conversations would not fit: they are
// remembered only so that a role survives a pause, while a new
// conversation's traffic must be accounted.
func (t *Table) forget(now uint64, adding int) {
	for len(t.released) > 0 {
		r := t.released[0]
		// Stale: forgotten already, or heard again since its release.
		if e, ok := t.convs[r.key]; ok && e.seen != t.udpSyncs && e.lastNS == r.lastNS {
			due := now >= r.lastNS && now-r.lastNS >= uint64(t.cfg.UDPForget)
			if !due && len(t.convs)+adding <= t.cfg.MaxConversations {
				return
			}
			delete(t.convs, r.key)
			if !due {
				t.stats.ConversationsForgottenEarly++
			}
		}
		t.released = t.released[1:]
	}
}

func (t *Table) accountUDP(c *flow.UDPConversation, prev udpCounts, initiator bool) {
	tx, rx := delta64(c.TxBytes, prev.txBytes), delta64(c.RxBytes, prev.rxBytes)
	txd, rxd := delta32(c.TxDatagrams, prev.txd), delta32(c.RxDatagrams, prev.rxd)
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

// record returns the pending record of a flow, creating it. The record
// names the latest known owner.
func (t *Table) record(proto flow.Protocol, role flow.Role, local, remote netip.AddrPort, o flow.Owner, startNS uint64) *pending {
	k := newRecKey(proto, role, local, remote, o.Netns)
	p, added := t.pending.findOrAdd(&t.arena, &k)
	if added {
		p.startNS = startNS
	}
	p.setOwner(o)
	return p
}

// setOwner takes o as the observing side's process, unless o knows nothing.
// A command unknown for the same process keeps the one known.
func (p *pending) setOwner(o flow.Owner) {
	if o == (flow.Owner{Netns: o.Netns}) {
		return
	}
	if o.Command == "" && o.PID == p.owner.PID {
		o.Command = p.owner.Command
	}
	p.owner = o
}

// Flush returns the records of the interval [start, end) and starts a new
// one. A flow appears only if something happened on it in the interval.
// end is the wall-clock time now, from time.Now(): the table follows a
// wall-clock step before it dates the records.
func (t *Table) Flush(start, end time.Time) []flow.Record {
	t.clock.follow(end)
	t.matchDrops(end)
	t.placeAllKept()
	out := make([]flow.Record, t.pending.n)
	rtts := make([]flow.RTT, 0, t.pending.n)
	n := 0
	for p := range t.arena.all() {
		if !p.flushed && active(&p.rec) {
			t.finish(&out[n], p, start, end, &rtts)
			n++
		}
	}
	out = out[:n]
	clear(t.ended)
	t.ended = t.ended[:0]
	t.pending.reset()
	t.arena.reset()
	t.stats.Records += uint64(len(out))
	return out
}

// finish builds the record of p into r, which is zero, dated for the
// window [start, end), with its latencies in rtts (see micros.stats).
// Fields are written one by one: a zero record needs only those set, and
// its pointers only the write barriers of those.
func (t *Table) finish(r *flow.Record, p *pending, start, end time.Time, rtts *[]flow.RTT) {
	k := &p.key
	r.Start, r.Time = start, end
	r.Node = t.cfg.Node
	r.Observer = k.role.String()
	r.Protocol = k.proto()
	r.IPVersion = 4
	if k.localFamily == ipv6 {
		r.IPVersion = 6
	}
	r.Verdict = verdict(p)
	r.ConnStart = t.clock.wall(p.startNS)
	self, peer := &r.Source, &r.Destination
	if k.role != flow.RoleClient {
		self, peer = peer, self
	}
	self.IP, self.Port = k.localAddr(), k.localPort
	peer.IP, peer.Port = k.remoteAddr(), k.remotePort
	o := &p.owner
	self.PID, self.Netns, self.CgroupID, self.Command = o.PID, o.Netns, o.CgroupID, o.Command
	c := &p.rec
	r.Opened, r.Closed, r.Refused, r.TimedOut, r.FailedOther = c.Opened, c.Closed, c.Refused, c.TimedOut, c.FailedOther
	r.ResetsBySrc, r.ResetsByDst, r.SYNRetrans = c.ResetsBySrc, c.ResetsByDst, c.SYNRetrans
	r.BytesToDst, r.BytesToSrc = c.BytesToDst, c.BytesToSrc
	r.SegmentsToDst, r.SegmentsToSrc = c.SegmentsToDst, c.SegmentsToSrc
	r.DatagramsToDst, r.DatagramsToSrc = c.DatagramsToDst, c.DatagramsToSrc
	r.RetransToDst, r.RetransToSrc = c.RetransToDst, c.RetransToSrc
	r.Drops, r.Requests = c.Drops, c.Requests
	r.RTT, r.ConnectLatency = p.rtt.stats(rtts), p.connect.stats(rtts)
}

func active(r *counts) bool {
	return r.Opened+r.Closed+r.Refused+r.TimedOut+r.FailedOther+r.ResetsBySrc+r.ResetsByDst+
		r.RetransToDst+r.RetransToSrc+r.SegmentsToDst+r.SegmentsToSrc+r.DatagramsToDst+r.DatagramsToSrc > 0 ||
		r.BytesToDst+r.BytesToSrc > 0 || len(r.Drops) > 0 || len(r.Requests) > 0
}

func verdict(p *pending) flow.Verdict {
	r, proto := &p.rec, p.key.proto()
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
