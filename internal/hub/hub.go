package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/flowlens/flowlens/internal/enrich"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/publish"
	"github.com/flowlens/flowlens/internal/ring"
	"github.com/flowlens/flowlens/internal/topology"
)

// Config is the hub's pipeline. Zero values take the defaults.
type Config struct {
	// Interval is the hub's tick: how often the records received since
	// the last one go through the join into the topology. Default 1s.
	Interval time.Duration
	// Publish is the join and the cap per source.
	Publish publish.Config
	// Topology bounds the store; its Observe feeds the per-edge metrics.
	Topology topology.Config
	// RingSize is how many recent flow records are kept for the API.
	RingSize int
	// MaxPending bounds the records received and not yet through a tick:
	// past it Receive refuses batches (the agents keep them and resend),
	// rather than the hub growing without bound when its tick falls behind.
	// Default 1<<20.
	MaxPending int
}

func (c *Config) defaults() {
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.RingSize <= 0 {
		c.RingSize = 1 << 16
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 1 << 20
	}
	c.Publish.RingSize = c.RingSize
}

// ErrBusy is Receive's answer while MaxPending records wait for a tick.
var ErrBusy = errors.New("hub busy: too many records waiting for the next interval; resend later")

// Hub is safe for concurrent use: Receive from every agent's stream, Tick
// from one clock, queries from the API.
type Hub struct {
	cfg  Config
	log  *slog.Logger
	ring *ring.Ring

	// in orders the inputs: positions, the log, the pending records and
	// the agents' marks change together under it.
	in      sync.Mutex
	pos     uint64
	pending []flow.Record
	agents  map[string]*agentState

	// mu guards the pipeline: the publisher, the store and what the next
	// checkpoint saves.
	mu   sync.Mutex
	pub  *publish.Publisher
	topo *topology.Store
	now  time.Time // the tick being processed, for the publisher's sink
	live bool      // records published now are new: to the ring and the history

	stats counters
}

// New returns a hub with an empty state.
func New(cfg Config, log *slog.Logger) *Hub {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Hub{cfg: cfg, log: log, ring: ring.New(cfg.RingSize), agents: map[string]*agentState{},
		topo: topology.New(cfg.Topology), live: true}
	// Agents name their records: the hub only joins and caps.
	h.pub = publish.New(cfg.Publish, enrich.Enricher{}, h.published, log)
	return h
}

// Ring is the recent flows, for the API.
func (h *Hub) Ring() *ring.Ring { return h.ring }

// Interval is the hub's tick.
func (h *Hub) Interval() time.Duration { return h.cfg.Interval }

// Receive takes one batch from an agent. It returns once the batch is
// durable, or recognised as one already received (a resend after a lost
// ack): either way the agent may forget it.
func (h *Hub) Receive(_ context.Context, b *Batch) error {
	h.in.Lock()
	defer h.in.Unlock()
	now := time.Now()
	a := h.agent(b.Agent, now)
	if a.incarnation == b.Agent.Incarnation && b.Seq <= a.seq {
		a.resent++
		h.stats.resent.Add(1)
		return nil
	}
	if len(h.pending)+len(b.Records) > h.cfg.MaxPending && len(h.pending) > 0 {
		h.stats.busy.Add(1)
		return ErrBusy
	}
	h.pos++
	a.received(b, now)
	h.pending = append(h.pending, b.Records...)
	h.stats.batches.Add(1)
	h.stats.records.Add(uint64(len(b.Records)))
	return nil
}

// Disconnected notes that an agent's stream ended.
func (h *Hub) Disconnected(a Agent, err error) {
	h.in.Lock()
	defer h.in.Unlock()
	if s := h.agents[a.ID]; s != nil && s.incarnation == a.Incarnation {
		s.connected = false
		if err != nil {
			s.lastError = err.Error()
		}
	}
}

// Tick closes an interval at now: the records received since the last
// tick go through the join into the topology, the ring and the history.
func (h *Hub) Tick(now time.Time) {
	h.in.Lock()
	h.pos++
	recs := h.pending
	h.pending = nil
	h.in.Unlock()

	h.mu.Lock()
	defer h.mu.Unlock()
	h.process(now, recs)
	h.stats.ticks.Add(1)
}

// process runs one tick's records through the pipeline. Callers hold mu.
func (h *Hub) process(now time.Time, recs []flow.Record) {
	h.now = now
	h.topo.Tick(now)
	h.pub.Publish(recs)
}

// published is the publisher's sink: the records of a tick, joined.
func (h *Hub) published(recs []flow.Record) {
	h.topo.Ingest(recs)
	if !h.live {
		return
	}
	h.ring.Write(recs)
}

// Run ticks every interval until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			h.Tick(now)
		}
	}
}

// Query answers a topology query.
func (h *Hub) Query(q topology.Query) (topology.Graph, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.topo.Query(q)
}

// Diff answers a topology diff.
func (h *Hub) Diff(q topology.Query, since time.Time, factor float64) (topology.Diff, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.topo.Diff(q, since, factor)
}

// Publish returns the publisher's counters.
func (h *Hub) Publish() publish.Stats { return h.pub.Stats() }

// Topology returns the store's counters.
func (h *Hub) Topology() topology.Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.topo.Stats()
}
