// Package dnsnames names addresses by the DNS answers seen on the node: a
// flow to an address a process of the same network namespace resolved is
// shown with the name it resolved (api.example.com), which is how external
// hosts get a name at all. Answers come from the DNS requests on flow
// records; the names go on the peer endpoints of later records.
//
// Names are kept per network namespace, since two pods may resolve
// different names to one address (a CDN), and node-wide as a fallback,
// where the answer was seen on another namespace's socket (a node-local
// resolver's). They expire Forget after the last answer that gave them,
// not at the answer's TTL: a TTL of 0 (dnsmasq's local answers) or a few
// seconds would unname the connection the lookup was made for.
package dnsnames

import (
	"net/netip"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// Config bounds the cache.
type Config struct {
	MaxNames int           // entries, per namespace and node-wide together
	Forget   time.Duration // after the last answer
}

// DefaultConfig is what the agent uses.
func DefaultConfig() Config { return Config{MaxNames: 65536, Forget: 10 * time.Minute} }

type key struct {
	netns uint32 // 0: node-wide
	addr  netip.Addr
}

type entry struct {
	name string
	seen time.Time
}

// Cache is not safe for concurrent use.
type Cache struct {
	cfg     Config
	names   map[key]entry
	evicted uint64
	swept   time.Time // the last expiry sweep
}

// New returns an empty cache.
func New(cfg Config) *Cache {
	return &Cache{cfg: cfg, names: make(map[key]entry)}
}

// Evicted counts names dropped before they expired, to stay within MaxNames.
func (c *Cache) Evicted() uint64 { return c.evicted }

// Len is the number of names held.
func (c *Cache) Len() int { return len(c.names) }

// Learn takes the answers of the DNS requests on recs, then names the peers
// of recs: a connection made in the interval its lookup answered is named.
func (c *Cache) Learn(recs []flow.Record, now time.Time) {
	for i := range recs {
		r := &recs[i]
		netns := r.Observing().Netns
		for _, q := range r.Requests {
			if q.Protocol != flow.DNS || q.Query == "" {
				continue
			}
			for _, a := range q.Answers {
				c.put(key{netns, a}, q.Query, now)
				c.put(key{0, a}, q.Query, now)
			}
		}
	}
	c.expire(now)
	for i := range recs {
		r := &recs[i]
		peer := &r.Destination
		if r.Observer == flow.RoleServer.String() {
			peer = &r.Source
		}
		if peer.DNSName != "" {
			continue
		}
		if e, ok := c.names[key{r.Observing().Netns, peer.IP}]; ok {
			peer.DNSName = e.name
		} else if e, ok := c.names[key{0, peer.IP}]; ok {
			peer.DNSName = e.name
		}
	}
}

func (c *Cache) put(k key, name string, now time.Time) {
	if _, ok := c.names[k]; !ok && len(c.names) >= c.cfg.MaxNames {
		c.evictOldest()
	}
	c.names[k] = entry{name: name, seen: now}
}

// evictOldest makes room for one. A full scan, only when full: a cache that
// fills every interval is sized too small, and says so in Evicted.
func (c *Cache) evictOldest() {
	var (
		oldest key
		at     time.Time
		found  bool
	)
	for k, e := range c.names {
		if !found || e.seen.Before(at) {
			oldest, at, found = k, e.seen, true
		}
	}
	if found {
		delete(c.names, oldest)
		c.evicted++
	}
}

// expire sweeps the cache a few times per Forget, not every interval.
func (c *Cache) expire(now time.Time) {
	if now.Sub(c.swept) < c.cfg.Forget/8 {
		return
	}
	c.swept = now
	for k, e := range c.names {
		if now.Sub(e.seen) > c.cfg.Forget {
			delete(c.names, k)
		}
	}
}
