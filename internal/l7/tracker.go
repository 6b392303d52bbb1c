package l7

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// ConnKey names a connection, or a UDP conversation: Cookie is the
// socket's, and a UDP socket talks to many peers, one conversation each.
// The rest never changes for a connection: it says which flow its
// requests go on.
type ConnKey struct {
	Cookie        uint64
	Local, Remote netip.AddrPort
	Netns         uint32
	Role          flow.Role
	UDP           bool
	// PeerCookie and PeerNetns name a TCP client's server end when it is
	// on this node and its samples are the client's: its requests go on
	// that end's flow too. PeerCookie 0: none.
	PeerCookie uint64
	PeerNetns  uint32
	// StartNS is when a TCP connection began (CLOCK_MONOTONIC), as its
	// end told Closed; 0 before. Requests a closed connection still gives
	// (those never answered, counted a Take after its close) go on a
	// record of their own, which the hub joins to its connection by it.
	StartNS uint64
	// PeerStartNS is when the pair's server end began, as its client saw
	// it: the end of the handshake, when the kernel makes the server's
	// socket. Told by Closed with StartNS; 0 before. The client's start is
	// no stand-in: after a SYN sent again it is a second or more earlier.
	PeerStartNS uint64
}

// connID is what the tracker finds a connection by: the socket, and the
// peer for UDP. Closed's key need only agree with the samples' on these.
// Plain memory (a netip.AddrPort holds a zone pointer and padding), so
// that the map hashes and compares it whole: a resolver's socket per
// query makes two conversations a query, each a map entry.
type connID struct {
	cookie uint64
	remote [16]byte
	port   uint64 // the remote port, and an IPv4 bit
}

func (k ConnKey) id() connID {
	if !k.UDP {
		return connID{cookie: k.Cookie}
	}
	id := connID{cookie: k.Cookie, remote: k.Remote.Addr().As16(), port: uint64(k.Remote.Port())}
	if k.Remote.Addr().Is4() {
		id.port |= 1 << 16
	}
	return id
}

// Hint is the kernel's guess at a socket's content (enum l7_hint).
type Hint uint8

const (
	HintNone Hint = iota
	HintHTTP
	HintPostgres
	HintRedis
	HintDNS
	HintTLS    // TLS records: ciphertext; plaintext comes from uprobes, if at all
	HintOpaque // nothing recognised: the kernel stops sampling
)

// protocol is the L7 protocol a hint points to, if any.
func (h Hint) protocol() flow.L7Protocol {
	switch h {
	case HintHTTP:
		return flow.HTTP
	case HintPostgres:
		return flow.Postgres
	case HintRedis:
		return flow.Redis
	case HintDNS:
		return flow.DNS
	}
	return ""
}

// Sample is one captured message of a connection.
type Sample struct {
	Key  ConnKey
	Hint Hint
	TLS  bool // plaintext read from a TLS library
	Send bool // the sampled socket wrote it
	// Seq and Early order a TCP client's samples (datapath.L7Sample):
	// a send's Seq is the end of its bytes in the stream; an Early
	// receive answered bytes up to its Seq that no send sampled before it
	// reaches. It is fed after the send that does, which follows it.
	Seq   uint32
	Early bool
	Msg   Message
}

// Config bounds the tracker. Zero values take the defaults.
type Config struct {
	// Protocols are tried in this order (the kernel's hint first).
	Protocols []Protocol
	// MaxConns bounds the connections followed at once; a new one past
	// it is refused (counted) until closed or idle ones are forgotten.
	MaxConns int
	// RequestTimeout is how long a request may wait for its response
	// before it is counted as never answered.
	RequestTimeout time.Duration
	// IdleTimeout forgets a connection with no sample for this long
	// (its close may never be reported); at least RequestTimeout.
	IdleTimeout time.Duration
	// UDPIdleTimeout forgets a UDP conversation, which has no close,
	// after this long without a datagram; its waiting requests are then
	// counted as never answered. A resolver gives up on a query sooner
	// (5 s is glibc's and Go's default), and a resolver that opens a
	// socket per lookup makes a conversation each: kept for
	// IdleTimeout, a thousand lookups a second would hold the tracker
	// full (MaxConns) and starve every other connection.
	UDPIdleTimeout time.Duration
	// MaxGroups bounds a connection's groups per interval; requests
	// that would make more are counted in its overflow group (Method
	// OverflowMethod, no other identifying field).
	MaxGroups int
	// DetectMessages is how many messages may fail every protocol's
	// Detect before a connection is opaque.
	DetectMessages int
}

// Defaults.
const (
	DefaultMaxConns       = 16384
	DefaultRequestTimeout = 30 * time.Second
	DefaultIdleTimeout    = 5 * time.Minute
	DefaultUDPIdleTimeout = 5 * time.Second
	DefaultMaxGroups      = 64
	DefaultDetectMessages = 4
)

// OverflowMethod marks the group that holds a connection's requests past
// Config.MaxGroups in one interval.
const OverflowMethod = "*"

func (c *Config) setDefaults() {
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	c.IdleTimeout = max(c.IdleTimeout, c.RequestTimeout)
	if c.UDPIdleTimeout <= 0 {
		c.UDPIdleTimeout = DefaultUDPIdleTimeout
	}
	if c.MaxGroups <= 0 {
		c.MaxGroups = DefaultMaxGroups
	}
	if c.DetectMessages <= 0 {
		c.DetectMessages = DefaultDetectMessages
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if len(c.Protocols) == 0 {
		return fmt.Errorf("l7: no protocols")
	}
	seen := map[flow.L7Protocol]bool{}
	for _, p := range c.Protocols {
		if seen[p.Name()] {
			return fmt.Errorf("l7: protocol %s given twice", p.Name())
		}
		seen[p.Name()] = true
	}
	return nil
}

// Stats are the tracker's counters since it started.
type Stats struct {
	Protocols []ProtocolStats // in Config.Protocols order
	Conns     int             // connections followed now (detecting, parsed, opaque)
	Refused   uint64          // connections not followed: MaxConns reached
	Opaque    uint64          // connections no protocol detected, or whose parser failed
	Ignored   uint64          // samples of opaque connections, skipped
	Gaps      uint64          // samples after a capture gap
	// Early receives (Sample.Early) fed after the send they answered, and
	// those fed without it: its sample was lost, or still not read at the
	// second Take after them, or more than maxHeld waited.
	Reordered, Unordered uint64
}

// ProtocolStats count one protocol's work.
type ProtocolStats struct {
	Protocol   flow.L7Protocol
	Conns      uint64 // connections detected as this protocol
	Requests   uint64 // requests counted in groups (answered or not)
	Failed     uint64 // of which failed, never answered included
	Unanswered uint64 // of which never answered
	Unparsed   uint64 // connections whose bytes the parser rejected
	Dropped    uint64 // requests let go without an outcome: gaps, rejected bytes, parser bounds
	Overflow   uint64 // requests counted in an overflow group
}

type connState uint8

const (
	detecting connState = iota
	parsing
	opaque
)

type conn struct {
	key    ConnKey // as its first sample gave it
	state  connState
	tries  int
	proto  int // index in Config.Protocols, when parsing
	parser Parser
	tls    bool
	closed bool
	// lingered: a Take has passed since the close. Its waiting requests
	// are given up on at the next one, so that samples the reader had
	// taken from the ring but not yet fed when the close's Take ran
	// still answer them.
	lingered bool
	lastNS   uint64
	groups   groups
	// asleep: Take has nothing to do for it until its next sample, its
	// close or its idle timeout (due, its entry in Tracker.sleepers).
	asleep    bool
	forgotten bool // deleted from Tracker.conns; skipped where still listed
	due       uint64
	// held are receives waiting to be fed: an early one, and those that
	// came after it, in order.
	held []heldSample
}

// heldSample is a receive held back, with its own copy of the bytes (a
// sample's bytes alias the ring reader's buffer), and the Takes begun
// before it.
type heldSample struct {
	s    Sample
	take uint64
}

// maxHeld bounds the receives a connection holds back; past it the oldest
// goes on without its send.
const maxHeld = 16

// Tracker follows connections' samples: it detects each one's protocol,
// feeds its parser and folds the requests into per-connection groups
// until Take. It is not safe for concurrent use: one goroutine calls it.
type Tracker struct {
	cfg   Config
	hints [HintOpaque + 1]int // protocol index per hint, -1: none
	conns map[connID]*conn
	// awake are the connections Take visits; the others sleep in
	// sleepers until their idle timeout, so that a thousand answered DNS
	// conversations a second, each kept UDPIdleTimeout, cost Take nothing
	// while they linger.
	awake    []*conn
	sleepers sleepers
	stats    Stats
	protos   []ProtocolStats
	done     []Request // scratch for parsers' output
	takes    uint64    // Takes begun
}

// NewTracker returns a tracker; cfg must pass Validate.
func NewTracker(cfg Config) *Tracker {
	cfg.setDefaults()
	t := &Tracker{cfg: cfg, conns: make(map[connID]*conn)}
	for h := range t.hints {
		t.hints[h] = -1
		for i, p := range cfg.Protocols {
			if name := Hint(h).protocol(); name != "" && p.Name() == name {
				t.hints[h] = i
			}
		}
	}
	for _, p := range cfg.Protocols {
		t.protos = append(t.protos, ProtocolStats{Protocol: p.Name()})
	}
	return t
}

// Sample takes a connection's next message; a connection's samples come
// in the order the kernel took them, which Sample.Early amends.
func (t *Tracker) Sample(s Sample) {
	id := s.Key.id()
	c := t.conns[id]
	if c == nil {
		if len(t.conns) >= t.cfg.MaxConns {
			t.stats.Refused++
			return
		}
		c = &conn{key: s.Key}
		t.conns[id] = c
		t.awake = append(t.awake, c)
	}
	t.wake(c)
	switch {
	case s.Early || len(c.held) > 0 && !s.Send:
		t.hold(c, s)
	case len(c.held) > 0:
		// Receives answering bytes before this send's go first; those
		// its bytes complete, after it.
		t.releaseSent(c, s.Seq-uint32(s.Msg.Len))
		t.feed(c, s)
		t.releaseSent(c, s.Seq)
	default:
		t.feed(c, s)
	}
}

// hold keeps a receive back, behind those already held.
func (t *Tracker) hold(c *conn, s Sample) {
	if len(c.held) == maxHeld {
		// The oldest is early (the others wait behind one), and goes.
		t.stats.Unordered++
		t.unhold(c)
		for len(c.held) > 0 && !c.held[0].s.Early {
			t.unhold(c)
		}
	}
	s.Msg.Data = append([]byte(nil), s.Msg.Data...)
	c.held = append(c.held, heldSample{s: s, take: t.takes})
}

// releaseSent feeds the held receives in order, up to the first early one
// that answered bytes past sent (in sequence space: sent is before them).
func (t *Tracker) releaseSent(c *conn, sent uint32) {
	for len(c.held) > 0 {
		if h := &c.held[0].s; h.Early {
			if int32(h.Seq-sent) > 0 {
				return
			}
			t.stats.Reordered++
		}
		t.unhold(c)
	}
}

// releaseAged feeds, at a Take, the held receives that came before the
// previous Take (all of them when the connection is gone): the send an
// early one waits for had its sample lost, or is later than a Take's
// drain of the ring can wait for.
func (t *Tracker) releaseAged(c *conn, gone bool) {
	for len(c.held) > 0 {
		if h := &c.held[0]; h.s.Early {
			if !gone && h.take+1 >= t.takes {
				return
			}
			t.stats.Unordered++
		}
		t.unhold(c)
	}
}

// unhold feeds the oldest held receive.
func (t *Tracker) unhold(c *conn) {
	s := c.held[0].s
	n := copy(c.held, c.held[1:])
	c.held[n] = heldSample{}
	c.held = c.held[:n]
	t.feed(c, s)
}

// feed hands a sample, in order, to its connection's parser.
func (t *Tracker) feed(c *conn, s Sample) {
	c.lastNS = max(c.lastNS, s.Msg.NS)
	// A closed connection's samples are still parsed: its end and its
	// last samples travel in two rings, and the end is often read first.
	// Take, after the reader drained, counts what is still unanswered.
	switch {
	case c.state == opaque:
		t.stats.Ignored++
		return
	case c.state == detecting && !t.detect(c, s):
		return
	}
	c.tls = c.tls || s.TLS
	if s.Msg.Gap {
		t.stats.Gaps++
		t.drop(c, c.parser.Expire(math.MaxUint64, t.done[:0]))
	}
	done, err := c.parser.Feed(s.Msg, t.done[:0])
	t.add(c, done)
	if d, ok := c.parser.(Dropper); ok {
		t.protos[c.proto].Dropped += uint64(d.TakeDropped())
	}
	if err != nil {
		// Not this protocol after all, or broken: stop here rather than
		// flap between parsing and not.
		t.protos[c.proto].Unparsed++
		t.drop(c, c.parser.Expire(math.MaxUint64, t.done[:0]))
		c.state, c.parser = opaque, nil
		t.stats.Opaque++
	}
}

// detect tries the protocols on a detecting connection's sample and starts
// a parser when one accepts it.
func (t *Tracker) detect(c *conn, s Sample) bool {
	if s.Hint == HintTLS && !s.TLS {
		return false // ciphertext says nothing; its plaintext may follow
	}
	first := -1
	if s.Hint <= HintOpaque {
		first = t.hints[s.Hint]
	}
	found := -1
	if first >= 0 && t.cfg.Protocols[first].Detect(s.Msg) {
		found = first
	}
	for i := 0; found < 0 && i < len(t.cfg.Protocols); i++ {
		if i != first && t.cfg.Protocols[i].Detect(s.Msg) {
			found = i
		}
	}
	if found < 0 {
		if c.tries++; c.tries >= t.cfg.DetectMessages {
			c.state = opaque
			t.stats.Opaque++
		}
		return false
	}
	c.state, c.proto, c.parser = parsing, found, t.cfg.Protocols[found].New()
	t.protos[found].Conns++
	return true
}

// Closed says a connection ended: what it still waits for is given up on
// at the next Take, which then forgets it.
func (t *Tracker) Closed(key ConnKey, ns uint64) {
	id := key.id()
	c := t.conns[id]
	if c == nil {
		return
	}
	if c.parser == nil && len(c.groups.list) == 0 && len(c.held) == 0 {
		t.forget(c) // nothing pending, nothing to report
		return
	}
	t.wake(c)
	c.closed = true
	c.lastNS = max(c.lastNS, ns)
	c.key.StartNS, c.key.PeerStartNS = key.StartNS, key.PeerStartNS
}

// Take hands over each connection's groups completed since the last Take
// (fn owns the slice: it is the connection's no more), after counting as never answered the requests older than RequestTimeout
// and all those of idle connections and of connections closed before the
// previous Take, which it then forgets.
// Connections come in no particular order; each one's groups are sorted.
func (t *Tracker) Take(nowNS uint64, fn func(ConnKey, []flow.Requests)) {
	timeout := uint64(t.cfg.RequestTimeout.Nanoseconds())
	t.takes++
	awake := t.awake[:0]
	for _, c := range t.awake {
		if c.forgotten {
			continue
		}
		idle := t.idle(c)
		gone := c.closed && c.lingered || nowNS > idle && c.lastNS < nowNS-idle
		c.lingered = c.closed
		t.releaseAged(c, gone)
		if c.parser != nil {
			before := uint64(math.MaxUint64)
			if !gone {
				before = 0
				if nowNS > timeout {
					before = nowNS - timeout
				}
			}
			t.add(c, c.parser.Expire(before, t.done[:0]))
		}
		if len(c.groups.list) > 0 {
			fn(c.key, c.groups.take())
		}
		switch {
		case gone:
			t.forget(c)
		case !c.closed && !waiting(c.parser) && len(c.held) == 0:
			c.asleep, c.due = true, c.lastNS+idle
			t.sleepers.push(sleeper{c, c.due})
		default:
			awake = append(awake, c)
		}
	}
	clear(t.awake[len(awake):])
	t.awake = awake
	// A sleeping connection waits for nothing and has no groups: past its
	// idle timeout it is only forgotten.
	for len(t.sleepers) > 0 && t.sleepers[0].due < nowNS {
		s := t.sleepers.pop()
		if s.c.asleep && s.c.due == s.due && !s.c.forgotten {
			t.forget(s.c)
		}
	}
}

func (t *Tracker) idle(c *conn) uint64 {
	if c.key.UDP {
		return uint64(t.cfg.UDPIdleTimeout.Nanoseconds())
	}
	return uint64(t.cfg.IdleTimeout.Nanoseconds())
}

// wake puts a sleeping connection back among those Take visits.
func (t *Tracker) wake(c *conn) {
	if c.asleep {
		c.asleep = false
		t.awake = append(t.awake, c)
	}
}

func (t *Tracker) forget(c *conn) {
	delete(t.conns, c.key.id())
	c.forgotten = true
}

// waiting reports whether a parser may hold requests waiting for an answer:
// those that cannot tell are taken to.
func waiting(p Parser) bool {
	if p == nil {
		return false
	}
	w, ok := p.(Waiter)
	return !ok || w.Waiting()
}

// sleeper is a sleeping connection's idle timeout; a connection woken
// and put to sleep again has a newer one, and the old entry is skipped.
type sleeper struct {
	c   *conn
	due uint64
}

// sleepers is a min-heap by due (container/heap would box each entry).
type sleepers []sleeper

func (h *sleepers) push(s sleeper) {
	*h = append(*h, s)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if q[p].due <= q[i].due {
			break
		}
		q[p], q[i] = q[i], q[p]
		i = p
	}
}

func (h *sleepers) pop() sleeper {
	q := *h
	top, n := q[0], len(q)-1
	q[0] = q[n]
	q[n] = sleeper{}
	q = q[:n]
	for i := 0; ; {
		m, l, r := i, 2*i+1, 2*i+2
		if l < n && q[l].due < q[m].due {
			m = l
		}
		if r < n && q[r].due < q[m].due {
			m = r
		}
		if m == i {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	*h = q
	return top
}

// Stats returns the counters.
func (t *Tracker) Stats() Stats {
	s := t.stats
	s.Conns = len(t.conns)
	s.Protocols = append([]ProtocolStats(nil), t.protos...)
	return s
}

// add counts a connection's finished requests in its groups.
func (t *Tracker) add(c *conn, done []Request) {
	st := &t.protos[c.proto]
	name := t.cfg.Protocols[c.proto].Name()
	for i := range done {
		r := &done[i]
		r.Info.Protocol, r.Info.TLS = name, c.tls
		st.Requests++
		if r.ResponNS == 0 {
			st.Unanswered++
		}
		if r.Failed || r.ResponNS == 0 {
			st.Failed++
		}
		if !c.groups.add(r, t.cfg.MaxGroups) {
			st.Overflow++
		}
	}
	clear(done) // the scratch holds no strings or maps past this call
	t.done = done[:0]
}

// drop counts requests given up on without an outcome.
func (t *Tracker) drop(c *conn, gone []Request) {
	t.protos[c.proto].Dropped += uint64(len(gone))
	clear(gone)
	t.done = gone[:0]
}
