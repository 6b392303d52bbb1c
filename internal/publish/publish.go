// Package publish is the path from an agent's interval records to the
// records people read: name the endpoints, hold back what is not ready,
// join the two sides of a connection, and cap what one source may put in
// the API ring. An agent names its records with one (no join: the hub
// joins); the hub runs one over every agent's records (join), and caps
// what one source puts in its ring; `flowlens up` runs both in one process,
// the join in the agent's, where a record's wait for its names and for its
// other side are one wait.
//
//	records of an interval ─▶ enrich.Enricher ─▶ wait for the pod ─┐
//	                                                               ▼
//	               ring ◀── cap per source ◀── join.Joiner ◀── wait for the other side
//
// # One hold policy
//
// A record may need to wait for two things: its pod's metadata (its cgroup
// names a pod that identity cannot confirm yet: the watch, or the pod's
// container status, trails the pod's first connections), and, for a client
// record to a Service or node address, its server side, whose cgroup names
// the backend. The two waits chain: a brand-new backend's server record
// waits for its pod, and the client record of the same connection can only
// be joined once it has. So one number, Config.Hold, bounds both: a record
// waits at most Hold intervals from its arrival, for whatever it lacks, and
// a client record whose server side is itself still waiting for its pod
// waits with it. Nothing is dropped: a record whose wait ends goes out as
// it is, and is counted (Stats); so do the later records of a connection
// whose first record waited for its server side in vain (a long-lived
// connection to a backend on another node waits once, not every interval).
//
// What goes into the API ring is capped per source by SourceCap (cap.go).
//
// The Publisher's core (interval) is pure and driven once per interval,
// like conntable: no clock, no I/O.
package publish

import (
	"fmt"
	"net/netip"
	"sync"

	flag "github.com/spf13/pflag"

	"github.com/flowlens/flowlens/internal/enrich"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/join"
)

// Config is the publishing policy. Zero values take the defaults.
type Config struct {
	// Hold is how many intervals a record may wait for its pod's metadata
	// and, for a client record to a Service or node address, its server
	// side. Default 3.
	Hold int
	// MaxHeld bounds the records waiting; past it records go out at once
	// and are counted. Default 65536.
	MaxHeld int
	// Join pairs a client record to a Service or node address with its
	// server side, which names the backend. Off, records wait only for
	// their names: an agent that ships to a hub leaves the join to the
	// hub, which sees both sides whatever node each is on.
	Join bool
	// JoinIndex bounds the join's index; its Linger follows Hold.
	JoinIndex join.Config
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{Hold: 3, MaxHeld: 1 << 16} }

// Flags registers the policy's flags on fs.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.IntVar(&c.Hold, "hold", c.Hold,
		"intervals a record waits for its pod's Kubernetes metadata and for the server side of its connection")
}

// Validate reports an unusable policy.
func (c *Config) Validate() error {
	switch {
	case c.Hold < 1:
		return fmt.Errorf("hold %d: records must wait at least 1 interval, the two sides of a connection can be one apart", c.Hold)
	}
	return nil
}

func (c *Config) defaults() {
	d := DefaultConfig()
	if c.Hold <= 0 {
		c.Hold = d.Hold
	}
	if c.MaxHeld <= 0 {
		c.MaxHeld = d.MaxHeld
	}
	// A closed connection's server side must stay known as long as its
	// client record may wait for it, and one interval more: the sides can
	// arrive an interval apart.
	c.JoinIndex.Linger = c.Hold + 1
}

// Stats counts what waited, how each wait ended, and what was capped.
type Stats struct {
	Held      int    // records waiting now, for either reason
	NamedLate uint64 // named after waiting for their pod
	Unnamed   uint64 // waited Hold intervals for a pod that was not confirmed; named by address
	Overflow  uint64 // released at once rather than held: MaxHeld records were waiting
	Unmatched uint64 // client records to a Service or node address released without their server side
	Join      join.Stats
}

// Publisher is safe for concurrent use: Publish runs in the agent's
// goroutine, Stats in metric scrapes.
type Publisher struct {
	cfg   Config
	names enrich.Enricher
	// naming: records are named here. The hub's records come named by
	// their agents, and naming them again without the agent's cgroups
	// would wipe what only the agent could tell.
	naming bool
	join   *join.Joiner // nil without identities: no address is ambiguous
	sink   func([]flow.Record)

	mu    sync.Mutex
	tick  uint64
	held  []held // oldest first
	stats Stats

	// Reused every interval: a record is about 1.3 KB, and growing these
	// afresh each interval cost more than the rest of the publishing.
	joining []held
	out     []flow.Record
}

// held is a record waiting, for its pod (names) and then for its server
// side, until its deadline.
type held struct {
	rec      flow.Record
	deadline uint64 // the last interval it may wait through
	names    bool   // still waiting for its pod's metadata
}

// New returns a Publisher that names records with names and writes what is
// ready to sink each interval (sink must not keep the slice).
func New(cfg Config, names enrich.Enricher, sink func([]flow.Record)) *Publisher {
	cfg.defaults()
	p := &Publisher{cfg: cfg, names: names, naming: names.Cgroups != nil || names.Processes != nil || names.Identities != nil, sink: sink}
	if cfg.Join {
		p.join = join.New(cfg.JoinIndex)
	}
	return p
}

// Publish takes one interval's records and writes those ready to the sink.
func (p *Publisher) Publish(recs []flow.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Under the lock: out is the Publisher's own buffer, reused next interval.
	p.sink(p.interval(recs))
}

// Stats returns the counters.
func (p *Publisher) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Held = len(p.held)
	if p.join != nil {
		s.Join = p.join.Stats()
	}
	return s
}

// interval is Publish's pure core: it returns the records ready to write,
// earlier held ones first. Callers hold p.mu.
func (p *Publisher) interval(recs []flow.Record) []flow.Record {
	p.tick++
	if p.join != nil {
		p.join.Tick()
	}
	hold := uint64(p.cfg.Hold)
	// 1. Names. Records whose pod is not confirmed wait; the rest, and
	// those whose wait for names ends now, go on to the join.
	joining := p.joining[:0]
	waiting := p.held[:0]
	for _, h := range p.held {
		if h.names {
			switch {
			case !p.names.Record(&h.rec):
				p.stats.NamedLate++
				h.names = false
			case h.deadline <= p.tick:
				p.stats.Unnamed++
				h.names = false
			default:
				waiting = append(waiting, h)
				continue
			}
		}
		joining = append(joining, h)
	}
	// Records that need no wait stay where they are in recs, compacted,
	// and are copied only where the join must hold some of them back.
	ready := recs[:0]
	for i := range recs {
		r := &recs[i]
		if p.naming && p.names.Record(r) {
			if len(waiting) < p.cfg.MaxHeld {
				waiting = append(waiting, held{rec: *r, deadline: p.tick + hold, names: true})
				continue
			}
			p.stats.Overflow++
		}
		if p.join != nil {
			joining = append(joining, held{rec: *r, deadline: p.tick + hold})
		} else if len(ready) != i {
			ready = append(ready, *r)
		} else {
			ready = ready[:i+1]
		}
	}
	// 2. The join: learn every side that has its names, then match.
	// Without one (no cluster identity, where no address is ambiguous, or
	// an agent leaving the join to its hub) what is ready goes out, after
	// what waited for its names.
	out := ready
	if len(joining) > 0 {
		out = p.out[:0]
	}
	if p.join == nil {
		if len(joining) > 0 {
			for _, h := range joining {
				out = append(out, h.rec)
			}
			out = append(out, ready...)
		}
	} else {
		for i := range joining {
			p.join.Learn(&joining[i].rec)
		}
		pending := p.serversWaiting(waiting)
		for _, h := range joining {
			r := &h.rec
			switch {
			case !join.Ambiguous(r) || p.join.Match(r):
			case p.join.GivenUp(r): // an earlier record of its connection waited in vain
				p.stats.Unmatched++
			case (h.deadline > p.tick || pending[sideKey(r)]) && len(waiting) < p.cfg.MaxHeld:
				waiting = append(waiting, h)
				continue
			case h.deadline > p.tick || pending[sideKey(r)]:
				p.stats.Overflow++
			default:
				p.stats.Unmatched++
				p.join.GiveUp(r)
			}
			out = append(out, *r)
		}
	}
	clear(p.held[min(len(waiting), len(p.held)):]) // let records that left be collected
	p.held = waiting
	clear(joining)
	p.joining = joining[:0]
	if len(joining) > 0 {
		p.out = out[:0]
	}
	return out
}

type clientKey struct {
	proto flow.Protocol
	addr  netip.AddrPort
}

func sideKey(r *flow.Record) clientKey {
	return clientKey{r.Protocol, netip.AddrPortFrom(r.Source.IP, r.Source.Port)}
}

// serversWaiting returns the client addresses of server records still
// waiting for their pod: a client record on one of them waits with it,
// since its server side may be that one.
func (p *Publisher) serversWaiting(waiting []held) map[clientKey]bool {
	var m map[clientKey]bool
	for i := range waiting {
		if r := &waiting[i].rec; waiting[i].names && r.Observer == flow.RoleServer.String() {
			if m == nil {
				m = map[clientKey]bool{}
			}
			m[sideKey(r)] = true
		}
	}
	return m
}
