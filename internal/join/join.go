// Package join pairs the two observations of a connection whose destination
// address alone cannot name the workload behind it:
//
//   - a Service address: the client's socket knows only the ClusterIP (or
//     node port) it dialed, because kube-proxy's DNAT rewrote the
//     destination after the socket chose it;
//   - a node address: host-network pods share it with the node and with
//     each other.
//
// The server's socket knows the workload from its cgroup. Both sockets see
// the same client address and port (DNAT leaves the source alone), so that
// pair is the join key, and the connection starts choose between the
// connections a client port served (one port may serve two connections at
// once, to different destinations, and is reused later):
//
//	client record  10.244.1.10:43122 -> 10.96.0.20:80   (svc/api)
//	server record  10.244.1.10:43122 -> 10.244.2.20:8080 (pod api-5c…)
//	                 └──── key ────┘        └─ backend ─┘
//	joined client  10.244.1.10:43122 -> 10.96.0.20:80   (svc/api → pod api-5c…)
//
// Joiner is a pure core driven once per interval, like conntable: no clock,
// no I/O. It only indexes and matches; how long a client record waits for
// its server side is the caller's policy (package publish holds records
// for their pod's metadata and for their other side under one limit). The
// embedded `flowlens up` runs it over one host's records; the hub runs the
// same code over all agents'.
//
// # Which server side is the client's
//
// The server side never begins before the client (beyond MaxSkew: a round
// trip, and the clocks of two nodes), but it can begin much later: a first
// SYN that was dropped is retried after 1 s, then 3, 7, 15... s after the
// first, and the server's socket is born at the SYN that got through, while
// the client's connection started at the first. Those slow connections are
// the ones operators investigate, so a server side may start up to
// MaxSynDelay after its client.
//
// A client port is reused, though: for a connection to another destination
// at any time, and for the same destination once TIME_WAIT (60 s) is over.
// So the joiner also remembers when each client connection on a port began,
// and a server side belongs to the client connection that began closest
// before it (within MaxSkew after it, for clocks):
//
//	client port 43122   c1 ─────────────── c2 ──────────
//	server sides                 s1 (3 s: c1's retried SYN)  s2
//	                    c1 takes s1; s2 is closer to c2, so c1 never takes it
//
// A client connection the joiner has not seen yet cannot claim its server
// side; both sides of a connection on one host arrive in the same interval
// or the next, and the caller learns a whole interval before matching.
package join

import (
	"net/netip"
	"slices"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// Config bounds the joiner. Zero values take the defaults.
type Config struct {
	// Remember is how many intervals a connection's side stays known after
	// its last record while it is open. Default 60.
	Remember int
	// Linger is how many intervals a closed connection's side stays known:
	// as long as its other side may wait. Default 2.
	Linger int
	// MaxBackends bounds the index of server sides by client address, and
	// the index of client connection starts alike.
	MaxBackends int
	Window
}

// Window is when the server side of a connection may begin, seen from its
// client's connection_start: one definition for the join and for the
// hub's topology, which both pair the two sides of one connection.
type Window struct {
	// MaxSkew is how far before its client a server side may seem to
	// begin, and how much later than the last SYN retry: a round trip, plus
	// the clock difference of two nodes for the hub. Default 1s.
	MaxSkew time.Duration
	// MaxSynDelay is how long after its client a server side may begin:
	// the last SYN retry (Linux's default tcp_syn_retries=6 sends the last
	// one 63 s after the first). Default 63s.
	MaxSynDelay time.Duration
}

// Defaults fills what is zero.
func (w *Window) Defaults() {
	if w.MaxSkew <= 0 {
		w.MaxSkew = time.Second
	}
	if w.MaxSynDelay <= 0 {
		w.MaxSynDelay = 63 * time.Second
	}
}

// Admits reports whether a server side that began d after its client
// (negative: before) can be that client's connection.
func (w Window) Admits(d time.Duration) bool {
	return d >= -w.MaxSkew && d <= w.MaxSynDelay+w.MaxSkew
}

func (c *Config) defaults() {
	if c.Remember <= 0 {
		c.Remember = 60
	}
	if c.Linger <= 0 {
		c.Linger = 2
	}
	if c.MaxBackends <= 0 {
		c.MaxBackends = 1 << 17
	}
	c.Window.Defaults()
}

// perKey bounds the connections remembered for one client address: more
// than a few at once means a port shared by unconnected UDP sockets.
const perKey = 4

// Stats counts what the joiner did.
type Stats struct {
	Matched  uint64 // client records given the workload behind their destination
	Dropped  uint64 // connection sides not indexed: MaxBackends reached
	Backends int    // server sides indexed now
}

type key struct {
	proto  flow.Protocol
	client netip.AddrPort
}

// side is one side of a connection as the index keeps it: the server's
// destination (the backend), or only the client's start.
type side struct {
	ep      flow.Endpoint
	start   time.Time // the side's ConnStart
	expires uint64    // the interval after which it is forgotten
	gaveUp  bool      // a client connection whose record was released without its server side
}

// index is a bounded multimap of connection sides by client address.
type index struct {
	byKey map[key][]side
	count int
}

// Joiner is not safe for concurrent use.
type Joiner struct {
	cfg      Config
	tick     uint64
	backends index // server sides
	clients  index // client connection starts
	stats    Stats
}

// New returns an empty joiner.
func New(cfg Config) *Joiner {
	cfg.defaults()
	return &Joiner{cfg: cfg, backends: index{byKey: map[key][]side{}}, clients: index{byKey: map[key][]side{}}}
}

// Stats reports counters and sizes.
func (j *Joiner) Stats() Stats {
	s := j.stats
	s.Backends = j.backends.count
	return s
}

// Tick starts the next interval: sides whose time is up are forgotten.
func (j *Joiner) Tick() {
	j.tick++
	j.backends.expire(j.tick)
	j.clients.expire(j.tick)
}

// Learn indexes a record's side of its connection: a server's backend, or
// a client connection's start. Learn a whole interval's records before
// matching any.
func (j *Joiner) Learn(r *flow.Record) {
	ttl := uint64(j.cfg.Remember)
	if r.Verdict != flow.VerdictEstablished {
		ttl = uint64(j.cfg.Linger)
	}
	k := key{r.Protocol, netip.AddrPortFrom(r.Source.IP, r.Source.Port)}
	s := side{start: r.ConnStart, expires: j.tick + ttl}
	ix := &j.clients
	if r.Observer == flow.RoleServer.String() {
		s.ep, ix = r.Destination, &j.backends
	}
	if !ix.add(k, s, j.cfg.MaxBackends) {
		j.stats.Dropped++
	}
}

// Ambiguous says whether r is a client's view of a connection whose
// destination address does not name the workload behind it.
func Ambiguous(r *flow.Record) bool {
	k := r.Destination.Kind
	return r.Observer == flow.RoleClient.String() && (k == flow.KindService || k == flow.KindNode)
}

// Match names r's destination after the workload its connection reached,
// keeping the Service and the address the client dialed. It reports
// whether a server side was found: the one that began closest to r's
// start, within [-MaxSkew, MaxSynDelay+MaxSkew] of it, and not closer to
// another client connection on the same port.
func (j *Joiner) Match(r *flow.Record) bool {
	k := key{r.Protocol, netip.AddrPortFrom(r.Source.IP, r.Source.Port)}
	var (
		best *side
		gap  time.Duration
	)
	for i, b := range j.backends.byKey[k] {
		d := b.start.Sub(r.ConnStart)
		if !j.cfg.Admits(d) || j.closerClient(k, r.ConnStart, b.start) {
			continue
		}
		if best == nil || d.Abs() < gap {
			best, gap = &j.backends.byKey[k][i], d.Abs()
		}
	}
	if best == nil {
		return false
	}
	d := &r.Destination
	d.Kind, d.Namespace, d.Pod, d.Container = best.ep.Kind, best.ep.Namespace, best.ep.Pod, best.ep.Container
	d.Workload, d.Labels, d.NodeName, d.HostNetwork = best.ep.Workload, best.ep.Labels, best.ep.NodeName, best.ep.HostNetwork
	j.stats.Matched++
	return true
}

// GiveUp records that the caller released r, a client record, without its
// server side: the later records of its connection need not wait again,
// for a server side that did not come while the first waited will not.
func (j *Joiner) GiveUp(r *flow.Record) {
	if c := j.client(r); c != nil {
		c.gaveUp = true
	}
}

// GivenUp reports whether the caller gave up on r's connection (GiveUp).
func (j *Joiner) GivenUp(r *flow.Record) bool {
	c := j.client(r)
	return c != nil && c.gaveUp
}

// client returns the indexed client side of r's connection, or nil.
func (j *Joiner) client(r *flow.Record) *side {
	ss := j.clients.byKey[key{r.Protocol, netip.AddrPortFrom(r.Source.IP, r.Source.Port)}]
	for i := range ss {
		if ss[i].start.Equal(r.ConnStart) {
			return &ss[i]
		}
	}
	return nil
}

// closerClient reports whether another client connection on k began
// closer to a server side that began at server than the one that began at
// client: the server side is that one's (a reused port).
func (j *Joiner) closerClient(k key, client, server time.Time) bool {
	own := pairGap(client, server, j.cfg.MaxSkew)
	for _, c := range j.clients.byKey[k] {
		if !c.start.Equal(client) && pairGap(c.start, server, j.cfg.MaxSkew) < own {
			return true
		}
	}
	return false
}

// pairGap is how far a server side's start is from a client's, for
// choosing between clients: a server side cannot begin before its client
// (beyond skew), so a client that began after it is never closer.
func pairGap(client, server time.Time, skew time.Duration) time.Duration {
	d := server.Sub(client)
	if d < -skew {
		return time.Duration(1<<63 - 1)
	}
	return d.Abs()
}

// add indexes s under k, replacing the entry of the same connection (same
// start, a later interval), or the oldest when k holds perKey; false when
// the index is full.
func (ix *index) add(k key, s side, limit int) bool {
	ss := ix.byKey[k]
	for i := range ss {
		if ss[i].start.Equal(s.start) {
			s.gaveUp = ss[i].gaveUp
			ss[i] = s
			return true
		}
	}
	if len(ss) >= perKey { // give way to the newest: the oldest is the stalest
		oldest := 0
		for i := range ss {
			if ss[i].start.Before(ss[oldest].start) {
				oldest = i
			}
		}
		ss[oldest] = s
		return true
	}
	if ix.count >= limit {
		return false
	}
	ix.byKey[k] = append(ss, s)
	ix.count++
	return true
}

func (ix *index) expire(tick uint64) {
	for k, ss := range ix.byKey {
		live := slices.DeleteFunc(ss, func(s side) bool { return s.expires < tick })
		ix.count -= len(ss) - len(live)
		if len(live) == 0 {
			delete(ix.byKey, k)
		} else {
			ix.byKey[k] = live
		}
	}
}
