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
// the same client address and port (DNAT leaves the source alone), and both
// began within a round trip of each other, so that pair and the connection
// start are the join key (a client port may serve two connections at once,
// to different destinations, and is reused later):
//
//	client record  10.244.1.10:43122 -> 10.96.0.20:80   (svc/api)
//	server record  10.244.1.10:43122 -> 10.244.2.20:8080 (pod api-5c…)
//	                 └──── key ────┘        └─ backend ─┘
//	joined client  10.244.1.10:43122 -> 10.96.0.20:80   (svc/api → pod api-5c…)
//
// Joiner is a pure core driven once per interval, like conntable: no clock,
// no I/O. The embedded `flowlens up` runs it over one host's records; the
// hub runs the same code over all agents'.
//
// A client record whose server side has not been seen yet is held back for
// up to Config.Hold intervals (the two sockets are established microseconds
// apart, and an interval boundary can fall between them); after that it is
// released as it is, and counted unmatched. Nothing is dropped.
package join

import (
	"net/netip"
	"slices"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// Config bounds the joiner. Zero values take the defaults.
type Config struct {
	// Hold is how many intervals a client record to a Service or node
	// address waits for its server side.
	Hold int
	// Remember is how many intervals a backend stays known after its last
	// record while its connection is open; closed ones are kept for Hold+1.
	Remember int
	// MaxBackends bounds the index of backends by client address.
	MaxBackends int
	// MaxSkew is how far apart the two sides' connection starts may be: a
	// round trip, plus the clock difference of two nodes for the hub.
	MaxSkew time.Duration
}

func (c *Config) defaults() {
	if c.Hold <= 0 {
		c.Hold = 1
	}
	if c.Remember <= c.Hold {
		c.Remember = 60
	}
	if c.MaxBackends <= 0 {
		c.MaxBackends = 1 << 17
	}
	if c.MaxSkew <= 0 {
		c.MaxSkew = time.Second
	}
}

// perKey bounds the connections remembered for one client address: more
// than a few at once means a port shared by unconnected UDP sockets.
const perKey = 4

// Stats counts what the joiner did.
type Stats struct {
	Matched   uint64 // client records given the workload behind their destination
	Unmatched uint64 // released after Hold intervals without one
	Dropped   uint64 // backends not indexed: MaxBackends reached
	Backends  int    // backends indexed now
	Held      int    // client records waiting now
}

type key struct {
	proto  flow.Protocol
	client netip.AddrPort
}

type backend struct {
	ep      flow.Endpoint
	start   time.Time // the server side's ConnStart
	expires uint64    // the interval after which it is forgotten
}

type held struct {
	rec   flow.Record
	until uint64 // released unmatched after this interval
}

// Joiner is not safe for concurrent use.
type Joiner struct {
	cfg      Config
	tick     uint64
	backends map[key][]backend
	count    int // backends in all keys
	held     []held
	stats    Stats
}

// New returns an empty joiner.
func New(cfg Config) *Joiner {
	cfg.defaults()
	return &Joiner{cfg: cfg, backends: make(map[key][]backend)}
}

// Stats reports counters and sizes.
func (j *Joiner) Stats() Stats {
	s := j.stats
	s.Backends, s.Held = j.count, len(j.held)
	return s
}

// Join takes one interval's records and returns those ready to publish:
// earlier held ones that matched or waited long enough, then this
// interval's, minus client records still waiting for their backend.
func (j *Joiner) Join(recs []flow.Record) []flow.Record {
	j.tick++
	for i := range recs {
		if r := &recs[i]; r.Observer == flow.RoleServer.String() {
			j.learn(r)
		}
	}
	out := make([]flow.Record, 0, len(recs)+len(j.held))
	waiting := j.held[:0]
	for _, h := range j.held {
		switch {
		case j.match(&h.rec):
			out = append(out, h.rec)
		case h.until <= j.tick:
			j.stats.Unmatched++
			out = append(out, h.rec)
		default:
			waiting = append(waiting, h)
		}
	}
	clear(j.held[len(waiting):])
	j.held = waiting
	for _, r := range recs {
		if ambiguous(&r) && !j.match(&r) {
			j.held = append(j.held, held{rec: r, until: j.tick + uint64(j.cfg.Hold)})
			continue
		}
		out = append(out, r)
	}
	for k, bs := range j.backends {
		live := slices.DeleteFunc(bs, func(b backend) bool { return b.expires < j.tick })
		j.count -= len(bs) - len(live)
		if len(live) == 0 {
			delete(j.backends, k)
		} else {
			j.backends[k] = live
		}
	}
	return out
}

// ambiguous says whether r is a client's view of a connection whose
// destination address does not name the workload behind it.
func ambiguous(r *flow.Record) bool {
	k := r.Destination.Kind
	return r.Observer == flow.RoleClient.String() && (k == flow.KindService || k == flow.KindNode)
}

func (j *Joiner) learn(r *flow.Record) {
	k := key{r.Protocol, netip.AddrPortFrom(r.Source.IP, r.Source.Port)}
	ttl := uint64(j.cfg.Remember)
	if r.Verdict != flow.VerdictEstablished {
		ttl = uint64(j.cfg.Hold) + 1
	}
	b := backend{ep: r.Destination, start: r.ConnStart, expires: j.tick + ttl}
	bs := j.backends[k]
	for i := range bs {
		if bs[i].start.Equal(b.start) { // the same connection, a later interval
			bs[i] = b
			return
		}
	}
	if len(bs) >= perKey { // give way to the newest: the oldest is the stalest
		oldest := 0
		for i := range bs {
			if bs[i].start.Before(bs[oldest].start) {
				oldest = i
			}
		}
		bs[oldest] = b
		return
	}
	if j.count >= j.cfg.MaxBackends {
		j.stats.Dropped++
		return
	}
	j.backends[k] = append(bs, b)
	j.count++
}

// match names r's destination after the workload its connection reached,
// keeping the Service and the address the client dialed: the backend whose
// connection began closest to r's, within MaxSkew.
func (j *Joiner) match(r *flow.Record) bool {
	var (
		best *backend
		gap  time.Duration
	)
	for _, b := range j.backends[key{r.Protocol, netip.AddrPortFrom(r.Source.IP, r.Source.Port)}] {
		d := b.start.Sub(r.ConnStart).Abs()
		if d <= j.cfg.MaxSkew && (best == nil || d < gap) {
			best, gap = &b, d
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
