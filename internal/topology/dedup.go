package topology

import (
	"net/netip"
	"slices"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// The dedup rule. A connection observed on both ends arrives as two
// streams of records, the client's and the server's. Each connection is
// counted from exactly one side, chosen once:
//
//   - the client's, when its client record is known by the time the
//     connection is first counted: connections, failures, bytes and RTT
//     come from the client's records only, the edge is named as the client
//     saw it (a Service stays the Service), and the destination takes the
//     process (command, container) that only the server's records name;
//   - the server's, when a server record waited Hold batches and no
//     client record came: the client is not observed (outside the
//     cluster, or on a node without an agent).
//
// Retransmits are the exception: each side counts only the segments it
// sent again (the client's are retransmits_to_destination, the server's
// retransmits_to_source), so they are taken from both sides' records and
// added onto the edge of the counted side; no segment is counted twice.
//
// Two records are of one connection when they have the same protocol and
// client address and port, their connection_start is within the join's
// tolerance (the server side begins between MaxSkew before and
// MaxSynDelay+MaxSkew after the client), and the server's address and
// port are the client's destination, or the client dialed a Service or
// node address and the join named the same backend pod (or none).

type side uint8

const (
	sideNone side = iota
	sideClient
	sideServer
)

type connKey struct {
	udp    bool // else TCP: a bool, not the protocol's name, to hash less and hold less
	client netip.AddrPort
}

// conn is one connection in the dedup index: 176 bytes, of which a burst
// of short connections holds one each for Linger (issue 17's peak RSS;
// with whole endpoints and its own edge key it was 1 KB, with both sides'
// destinations 384 bytes).
type conn struct {
	seenClient, seenServer   bool
	counted                  side
	gone                     bool  // forgotten: left the index
	clientStart, serverStart int64 // each side's connection_start, Unix ns
	// await is the seen side's destination while the other side is not
	// seen: what that side must match (the client's dialed address, or
	// the server's own socket). Let go once both are.
	await *dest
	proc  serverProc // the server's process, from its own records

	edge    *sharedEdge   // the counted side's edge, for the other side's retransmits
	held    []flow.Record // server records waiting for their client
	heldAt  uint64        // the tick the first of them came
	expires uint64        // the tick after which the connection is forgotten

	key   connKey // its list in the index
	check uint64  // the tick expire looks at it next (connIndex.due)
}

// serverProc is what names a server's process: only its own records do.
type serverProc struct{ command, containerID, node string }

// dest is what the dedup rule needs of a record's destination to match
// the other side: what sameServer compares.
type dest struct {
	ip             netip.Addr
	port           uint16
	translated     bool // a Service or node address, the server behind it
	namespace, pod string
}

func destOf(ep *flow.Endpoint) dest {
	return dest{ip: ep.IP, port: ep.Port, namespace: ep.Namespace, pod: ep.Pod,
		translated: ep.Service != nil || ep.Kind == flow.KindService || ep.Kind == flow.KindNode}
}

// sharedEdge is an edge key shared by the indexed connections counted
// onto it: a key is 400 bytes, and a node's connections are of far fewer
// edges than there are connections.
type sharedEdge struct {
	key   edgeKey
	conns int // indexed connections holding it; 0: held by a forgotten one alone
}

// countOn makes k c's counted edge and returns it, shared with the other
// connections of the index counted onto it.
func (ix *connIndex) countOn(c *conn, k *edgeKey) *edgeKey {
	if c.edge != nil && c.edge.key == *k {
		return &c.edge.key
	}
	ix.dropEdge(c)
	if c.gone {
		// Given way to a newer connection during this batch: it leaves
		// with the batch, holding its edge alone.
		c.edge = &sharedEdge{key: *k}
		return &c.edge.key
	}
	// The edge met last is compared before the map is asked: a key's
	// hash is ≈20 strings, and a node's connections come in runs of one
	// edge.
	e := ix.lastEdge
	if e == nil || e.key != *k {
		if e = ix.edges[*k]; e == nil {
			e = &sharedEdge{key: *k}
			ix.edges[*k] = e
		}
		ix.lastEdge = e
	}
	e.conns++
	c.edge = e
	return &e.key
}

// dropEdge lets go of c's counted edge.
func (ix *connIndex) dropEdge(c *conn) {
	e := c.edge
	c.edge = nil
	if e == nil || e.conns == 0 {
		return
	}
	if e.conns--; e.conns == 0 {
		delete(ix.edges, e.key)
		if ix.lastEdge == e {
			ix.lastEdge = nil
		}
	}
}

// perKey bounds the connections of one client address and port: more at
// once means an unconnected UDP socket talking to many peers.
const perKey = 16

// connIndex finds connections by client address. Each connection is due
// for a look at one tick (due): when its held records have waited Hold
// batches, or its time is up. A Tick looks only at the connections due
// then, not at the whole index: `up` ticks its hub at every early flush,
// ten times an interval, with every open connection indexed.
type connIndex struct {
	byKey map[connKey][]*conn
	count int
	due   map[uint64][]*conn // tick → connections to look at then; stale entries are skipped
	// spare holds forgotten connections for reuse: one is 176 bytes, and a
	// node's short connections would allocate one each. A stale entry in
	// due may name a reused one: it is looked at only if due then. It
	// keeps at most as many as are indexed (or minSpare): what a steady
	// load forgets in a tick is far fewer, and after a burst the rest
	// is given back (100,000 connections in 2 s kept 20 MB for good).
	spare      []*conn
	spareAwait []*dest                 // conn.await's let go, for reuse as spare's
	edges      map[edgeKey]*sharedEdge // the counted edges of indexed connections
	lastEdge   *sharedEdge             // of edges, the one countOn met last
}

// minSpare is the least spare keeps, however few connections are indexed.
const minSpare = 1024

// forget takes c out of the index at a tick (its list is the caller's to
// fix) and keeps it for reuse: between batches, no record holds it.
func (ix *connIndex) forget(c *conn) {
	ix.dropEdge(c)
	ix.dropAwait(c)
	c.gone = true
	ix.count--
	ix.spare = append(ix.spare, c)
}

// fresh returns an empty connection of key k.
func (ix *connIndex) fresh(k connKey) *conn {
	n := len(ix.spare)
	if n == 0 {
		return &conn{key: k}
	}
	c := ix.spare[n-1]
	ix.spare[n-1] = nil
	ix.spare = ix.spare[:n-1]
	*c = conn{key: k}
	return c
}

func connKeyOf(r *flow.Record) connKey {
	return connKey{r.Protocol == flow.UDP, netip.AddrPortFrom(r.Source.IP, r.Source.Port)}
}

// learn finds (or indexes) r's connection and notes r's side on it; nil
// when the index is full.
func (ix *connIndex) learn(r *flow.Record, s *Store) *conn {
	k := connKeyOf(r)
	client := r.Observer != flow.RoleServer.String()
	c := ix.find(k, r, client, &s.cfg)
	if c == nil {
		if ix.count >= s.cfg.MaxConnections {
			return nil
		}
		c = ix.fresh(k)
		list := ix.byKey[k]
		if len(list) >= perKey { // give way: the one forgotten soonest goes
			i := 0
			for j := range list {
				if list[j].expires < list[i].expires {
					i = j
				}
			}
			s.release(list[i])
			// Not kept for reuse: a record of this batch may hold it.
			ix.dropEdge(list[i])
			list[i].gone = true
			ix.count--
			list = slices.Delete(list, i, i+1)
		}
		ix.byKey[k] = append(list, c)
		ix.count++
	}
	if client {
		c.seenClient, c.clientStart = true, r.ConnStart.UnixNano()
	} else {
		c.seenServer, c.serverStart = true, r.ConnStart.UnixNano()
		c.proc = serverProc{r.Destination.Command, r.Destination.ContainerID, r.Node}
	}
	ix.awaitOther(c, r)
	ttl := uint64(s.cfg.Remember)
	if r.Verdict != flow.VerdictEstablished {
		ttl = uint64(s.cfg.Linger)
	}
	c.expires = max(c.expires, s.tick+ttl)
	ix.schedule(c, s)
	return c
}

// awaitOther keeps r's destination for c's other side to match while that
// side is not seen (the newest record's, as a side's records come), and
// lets it go once it is.
func (ix *connIndex) awaitOther(c *conn, r *flow.Record) {
	switch {
	case c.seenClient && c.seenServer:
		ix.dropAwait(c)
	case c.await == nil:
		if n := len(ix.spareAwait); n > 0 {
			c.await, ix.spareAwait = ix.spareAwait[n-1], ix.spareAwait[:n-1]
		} else {
			c.await = new(dest)
		}
		fallthrough
	default:
		*c.await = destOf(&r.Destination)
	}
}

// dropAwait lets go of c's awaited destination, for another connection.
func (ix *connIndex) dropAwait(c *conn) {
	if c.await != nil {
		ix.spareAwait = append(ix.spareAwait, c.await)
		c.await = nil
	}
}

// schedule makes c due at the first tick expire has something to do with
// it. A later need than the one scheduled waits for that look, which
// schedules again.
func (ix *connIndex) schedule(c *conn, s *Store) {
	t := c.expires + 1
	if len(c.held) > 0 {
		t = min(t, c.heldAt+uint64(s.cfg.Hold)+1)
	}
	if c.check > s.tick && c.check <= t {
		return
	}
	c.check = t
	ix.due[t] = append(ix.due[t], c)
}

// find returns the indexed connection r belongs to, or nil: the same
// side's record of the same start, or the other side's within tolerance,
// whichever is closest.
func (ix *connIndex) find(k connKey, r *flow.Record, client bool, cfg *Config) *conn {
	var (
		best *conn
		gap  time.Duration
	)
	list := ix.byKey[k]
	if len(list) == 0 {
		return nil
	}
	dst, start := destOf(&r.Destination), r.ConnStart.UnixNano()
	for _, c := range list {
		var d time.Duration
		switch {
		case client && c.seenClient:
			d = time.Duration(c.clientStart - start)
			if d.Abs() > cfg.Sides.MaxSkew {
				continue
			}
		case !client && c.seenServer:
			d = time.Duration(c.serverStart - start)
			if d.Abs() > cfg.Sides.MaxSkew {
				continue
			}
		case client: // a server side waiting for its client
			d = time.Duration(c.serverStart - start)
			if !cfg.Sides.Admits(d) || !sameServer(&dst, c.await) {
				continue
			}
		default: // a client side, and this its server
			d = time.Duration(start - c.clientStart)
			if !cfg.Sides.Admits(d) || !sameServer(c.await, &dst) {
				continue
			}
		}
		if best == nil || d.Abs() < gap {
			best, gap = c, d.Abs()
		}
	}
	return best
}

// sameServer reports whether a server socket at server can be the one the
// client reached by dialing dialed.
func sameServer(dialed, server *dest) bool {
	if dialed.ip == server.ip && dialed.port == server.port {
		return true
	}
	return dialed.translated && (dialed.pod == "" || dialed.pod == server.pod && dialed.namespace == server.namespace)
}

// fold counts r by the dedup rule; c is its connection, nil if unindexed.
func (s *Store) fold(r *flow.Record, c *conn) {
	if c == nil {
		k := keyOf(r)
		s.stats.RecordsUndeduplicated++
		s.countAll(r, &k)
		return
	}
	client := r.Observer != flow.RoleServer.String()
	switch {
	case client && c.counted != sideServer:
		c.counted = sideClient
		k := keyOf(r)
		if c.seenServer && k.dst.command == "" {
			name(&k.dst, &c.proc)
		}
		s.countAll(r, s.conns.countOn(c, &k))
		s.release(c)
	case !client && c.counted == sideNone:
		if len(c.held) == 0 {
			c.heldAt = s.tick
		}
		c.held = append(c.held, *r)
		s.stats.RecordsHeld++
		s.conns.schedule(c, s)
	case !client && c.counted == sideServer:
		k := keyOf(r)
		s.countAll(r, s.conns.countOn(c, &k))
	default: // the other side of a connection counted from one side
		s.countRetransmits(r, &c.edge.key)
	}
}

// name gives a destination the process that only its server's own record
// names.
func name(dst *ident, server *serverProc) {
	dst.command, dst.containerID = server.command, server.containerID
	if dst.nodeName == "" {
		dst.nodeName = server.node
	}
	if dst.command != "" || dst.containerID != "" {
		dst.addr = netip.Addr{}
	}
}

// release counts c's held server records: as the other side's if its
// client is counted, else as the counted side, for no client will come.
func (s *Store) release(c *conn) {
	if len(c.held) == 0 {
		return
	}
	if c.counted == sideNone {
		c.counted = sideServer
	}
	for i := range c.held {
		r := &c.held[i]
		if c.counted == sideClient {
			s.countRetransmits(r, &c.edge.key)
			continue
		}
		k := keyOf(r)
		s.countAll(r, s.conns.countOn(c, &k))
	}
	s.stats.RecordsHeld -= len(c.held)
	c.held = nil
}

// expire counts server records that waited Hold batches and forgets
// connections whose time is up, of the connections due at this tick.
func (ix *connIndex) expire(s *Store) {
	due := ix.due[s.tick]
	delete(ix.due, s.tick)
	for _, c := range due {
		if c.gone || c.check != s.tick {
			continue // forgotten, or due at another tick since
		}
		if len(c.held) > 0 && s.tick-c.heldAt > uint64(s.cfg.Hold) {
			s.release(c)
		}
		if c.expires >= s.tick {
			ix.schedule(c, s)
			continue
		}
		s.release(c)
		ix.forget(c)
		list := ix.byKey[c.key]
		if i := slices.Index(list, c); i >= 0 {
			list = slices.Delete(list, i, i+1)
		}
		if len(list) == 0 {
			delete(ix.byKey, c.key)
		} else {
			ix.byKey[c.key] = list
		}
	}
	keep := max(ix.count, minSpare)
	if len(ix.spare) > keep {
		ix.spare = slices.Delete(ix.spare, keep, len(ix.spare))
	}
	if len(ix.spareAwait) > keep {
		ix.spareAwait = slices.Delete(ix.spareAwait, keep, len(ix.spareAwait))
	}
}
