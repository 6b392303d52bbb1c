package hub

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowlens/flowlens/internal/enrich"
	"github.com/flowlens/flowlens/internal/filter"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/history"
	"github.com/flowlens/flowlens/internal/publish"
	"github.com/flowlens/flowlens/internal/ring"
	"github.com/flowlens/flowlens/internal/topology"
)

// Config is the hub's pipeline. Zero values take the defaults.
type Config struct {
	// Interval is the hub's tick: how often the records received since
	// the last one go through the join into the topology. Default 1s.
	Interval time.Duration
	// ExternalTicks: the caller calls Tick (`up`, once per interval of
	// its own agent, so a record waits for no second clock); otherwise
	// Run ticks every Interval.
	ExternalTicks bool
	// Publish is the join.
	Publish publish.Config
	// MaxPerSource caps the records one source puts in the ring per tick
	// (publish.NewSourceCap: 0 is half the ring, -1 none); the topology,
	// the edge metrics and the history take every record.
	MaxPerSource int
	// CgroupPath, if set, names the cgroups the cap holds back in its log.
	CgroupPath func(cgroup uint64) string
	// Topology bounds the store; its Observe feeds the per-edge metrics.
	Topology topology.Config
	// RingSize is how many recent flow records are kept for the API.
	RingSize int
	// MaxPending bounds the records received and not yet through a tick:
	// past it Receive refuses batches (the agents keep them and resend),
	// rather than the hub growing without bound when its tick falls behind.
	// Default 1<<20.
	MaxPending int
	// Checkpoint is how often the history is checkpointed. Default 5s.
	Checkpoint time.Duration
	// MaxUnsaved bounds the flows published and not yet checkpointed (the
	// history failing to write): past it the oldest are not saved, and
	// counted. Default 1<<20.
	MaxUnsaved int
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
	if c.Checkpoint <= 0 {
		c.Checkpoint = 5 * time.Second
	}
	if c.MaxUnsaved <= 0 {
		c.MaxUnsaved = 1 << 20
	}
	// The two sides of a connection come from two agents, which can be
	// intervals apart (after an outage each replays its backlog when it
	// reconnects): a server record waits that long for its client's, and
	// an ended connection stays in the dedup index as long, so that its
	// second side is not counted again.
	if c.Topology.Linger <= 0 {
		c.Topology.Linger = hubLinger
	}
	if c.Topology.Hold <= 0 {
		c.Topology.Hold = hubLinger
	}
}

// hubLinger is how many ticks a server record waits for its client's in
// the hub's topology, and an ended connection stays in its dedup index
// (up's one agent needs 2).
const hubLinger = 10

// ErrBusy is Receive's answer while MaxPending records wait for a tick.
var ErrBusy = errors.New("hub busy: too many records waiting for the next interval; resend later")

// Hub is safe for concurrent use: Receive from every agent's stream, Tick
// from one clock, queries from the API.
type Hub struct {
	cfg  Config
	log  *slog.Logger
	ring *ring.Ring
	hist *history.DB // nil: everything in memory, nothing survives a restart

	// in orders the inputs: positions, the queue to the log, the pending
	// records and the agents' marks change together under it.
	in      sync.Mutex
	pos     uint64
	queue   []*logEntry   // inputs with a position, not logged yet
	waiting int           // records queued or pending: MaxPending bounds them
	pending []flow.Record // logged, waiting for the next tick
	agents  map[string]*agentState
	// commitMu makes one commit run at a time (commit).
	commitMu sync.Mutex

	// mu guards the pipeline: the publisher, the store, and what the next
	// checkpoint saves.
	mu        sync.Mutex
	pub       *publish.Publisher
	cap       *publish.SourceCap
	topo      *topology.Store
	live      bool   // records published now are new: to the ring and the history
	processed uint64 // the position of the last tick the store reflects
	// unlogged: that tick is not in the log (its append failed), so no
	// checkpoint can name it until a tick that is.
	unlogged bool
	now      time.Time
	unsaved  []flow.Record // published since the last checkpoint
	retry    *history.Checkpoint
	// saved is the ring position up to which published records are in
	// the history: the API reads the rest from the ring.
	saved atomic.Uint64

	stats counters
}

// New returns a hub. With a history it first loads the topology from the
// last checkpoint and replays the log (see the package doc); without, it
// starts empty.
func New(ctx context.Context, cfg Config, hist *history.DB, log *slog.Logger) (*Hub, error) {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Hub{cfg: cfg, log: log, ring: ring.New(cfg.RingSize), hist: hist, agents: map[string]*agentState{},
		topo: topology.New(cfg.Topology), live: true}
	// Agents name their records: the hub only joins.
	h.pub = publish.New(cfg.Publish, enrich.Enricher{}, h.published)
	var err error
	if h.cap, err = publish.NewSourceCap(cfg.MaxPerSource, cfg.RingSize, cfg.CgroupPath, log); err != nil {
		return nil, err
	}
	if hist != nil {
		if err := h.recover(ctx); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// recover rebuilds the state the history holds.
func (h *Hub) recover(ctx context.Context) error {
	start := time.Now()
	checkpoint, err := h.hist.Restore(ctx, h.topo)
	if err != nil {
		return fmt.Errorf("restore the topology: %w", err)
	}
	marks, err := h.hist.HighWaters(ctx)
	if err != nil {
		return fmt.Errorf("read the agents' marks: %w", err)
	}
	for id, m := range marks {
		h.agents[id] = &agentState{id: id, incarnation: m.Incarnation, seq: m.Seq}
	}
	var learnt, counted int
	err = h.hist.Replay(ctx, 0, func(ev history.Event) error {
		h.pos = ev.Pos
		if !ev.Tick {
			h.pending = append(h.pending, ev.Records...)
			return nil
		}
		// Ticks up to the checkpoint are in its counts: relearn only.
		counting := ev.Pos > checkpoint
		if counting {
			counted++
		} else {
			learnt++
		}
		h.topo.SetCounting(counting)
		h.live = counting
		h.process(ev.Pos, ev.Time, h.pending)
		h.pending = nil
		return nil
	})
	h.topo.SetCounting(true)
	h.live = true
	h.waiting = len(h.pending)
	if err != nil {
		return fmt.Errorf("replay the log: %w", err)
	}
	h.log.Info("hub state restored", "checkpoint", checkpoint, "log_end", h.pos, "ticks_relearnt", learnt,
		"ticks_replayed", counted, "records_waiting", len(h.pending), "agents", len(marks), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Ring is the recent flows, for the API.
func (h *Hub) Ring() *ring.Ring { return h.ring }

// Receive takes one batch from an agent. It returns once the batch is
// durable, or recognised as one already received (a resend after a lost
// ack): either way the agent may forget it. The hub reads b.Records until
// the next tick: the caller must not change them before.
func (h *Hub) Receive(ctx context.Context, b *Batch) error {
	h.in.Lock()
	a := h.agent(b.Agent, time.Now())
	if a.incarnation == b.Agent.Incarnation && b.Seq <= a.seq {
		if e := a.logging[b.Seq]; e != nil {
			// Resent while the first is on its way into the log (the
			// agent reconnected): that one's outcome is this one's.
			h.in.Unlock()
			<-e.done
			return e.err
		}
		a.resent++
		h.stats.resent.Add(1)
		h.in.Unlock()
		return nil
	}
	if h.waiting+len(b.Records) > h.cfg.MaxPending && h.waiting > 0 {
		h.stats.busy.Add(1)
		h.in.Unlock()
		return ErrBusy
	}
	e := h.enqueue(history.Event{Time: time.Now(), Agent: b.Agent.ID, Incarnation: b.Agent.Incarnation, Seq: b.Seq, Records: b.Records}, b)
	a.seq = b.Seq
	if a.logging == nil {
		a.logging = map[uint64]*logEntry{}
	}
	a.logging[b.Seq] = e
	h.in.Unlock()
	h.commit(ctx)
	<-e.done
	return e.err
}

// logEntry is an input on its way into the log: a batch, or a tick.
type logEntry struct {
	ev    history.Event
	batch *Batch        // nil: a tick
	recs  []flow.Record // a tick's: the batches logged before it
	err   error
	done  chan struct{}
}

// enqueue gives an input the next position. Callers hold in.
func (h *Hub) enqueue(ev history.Event, b *Batch) *logEntry {
	h.pos++
	ev.Pos = h.pos
	if b != nil {
		h.waiting += len(b.Records)
	}
	e := &logEntry{ev: ev, batch: b, done: make(chan struct{})}
	h.queue = append(h.queue, e)
	return e
}

// commit logs every queued input in one append, unless a commit running
// before it took them along: an append costs the same for one batch as
// for many (≈10 ms with DuckDB here), so agents arriving together share
// one. Then, in log order, batches' records join the pending ones and a
// tick takes those before it, exactly as a replay of the log will.
func (h *Hub) commit(ctx context.Context) {
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	h.in.Lock()
	group := h.queue
	h.queue = nil
	h.in.Unlock()
	if len(group) == 0 {
		return
	}
	var err error
	if h.hist != nil {
		evs := make([]history.Event, len(group))
		for i, e := range group {
			evs[i] = e.ev
		}
		h.stats.logAppends.Add(1)
		if err = h.hist.Append(ctx, evs); err != nil {
			h.stats.logErrors.Add(uint64(len(group)))
			err = fmt.Errorf("log the batch: %w", err)
		}
	}
	now := time.Now()
	h.in.Lock()
	defer h.in.Unlock()
	for _, e := range group {
		e.err = err
		if b := e.batch; b != nil {
			a := h.agents[b.Agent.ID]
			if a.incarnation == b.Agent.Incarnation {
				delete(a.logging, b.Seq)
				if err != nil {
					// Not stored, not acked: the agent sends it again.
					a.seq = min(a.seq, b.Seq-1)
				}
			}
			if err != nil {
				h.waiting -= len(b.Records)
			} else {
				a.received(b, now)
				if len(h.pending) == 0 {
					// The batch's own records, clipped so that the next
					// batch's append copies: `up` gives one batch per
					// tick, which then goes through uncopied.
					h.pending = slices.Clip(b.Records)
				} else {
					h.pending = append(h.pending, b.Records...)
				}
				h.stats.batches.Add(1)
				h.stats.records.Add(uint64(len(b.Records)))
			}
		} else {
			// A tick goes on unlogged: a replay gives its batches to the next.
			e.recs, h.pending = h.pending, nil
			h.waiting -= len(e.recs)
		}
		close(e.done)
	}
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
func (h *Hub) Tick(ctx context.Context, now time.Time) {
	h.in.Lock()
	e := h.enqueue(history.Event{Time: now, Tick: true}, nil)
	h.in.Unlock()
	h.commit(ctx)
	<-e.done
	if e.err != nil {
		h.log.Warn("log a tick", "err", e.err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.process(e.ev.Pos, now, e.recs)
	h.unlogged = e.err != nil
	h.stats.ticks.Add(1)
}

// process runs one tick's records through the pipeline. Callers hold mu
// (or, recovering, own the hub alone).
func (h *Hub) process(pos uint64, now time.Time, recs []flow.Record) {
	h.processed, h.now = pos, now
	h.topo.Tick(now)
	h.pub.Publish(recs)
}

// published is the publisher's sink: the records of a tick, joined.
func (h *Hub) published(recs []flow.Record) {
	h.topo.Ingest(recs)
	if !h.live {
		return
	}
	if h.hist != nil {
		if over := len(h.unsaved) + len(recs) - h.cfg.MaxUnsaved; over > 0 {
			over = min(over, len(h.unsaved))
			h.unsaved = h.unsaved[over:]
			h.stats.unsaved.Add(uint64(over))
		}
		h.unsaved = append(h.unsaved, recs...)
	}
	// Last: the cap compacts recs in place.
	h.ring.Write(h.cap.Keep(recs))
}

// Run ticks every interval (unless the caller ticks) and checkpoints the
// history until ctx ends, then checkpoints once more.
func (h *Hub) Run(ctx context.Context) error {
	var tick, save <-chan time.Time
	if !h.cfg.ExternalTicks {
		t := time.NewTicker(h.cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	if h.hist != nil {
		t := time.NewTicker(h.cfg.Checkpoint)
		defer t.Stop()
		save = t.C
	}
	for {
		select {
		case <-ctx.Done():
			if h.hist == nil {
				return nil
			}
			// The last checkpoint: a clean restart replays nothing.
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return h.checkpoint(sctx)
		case now := <-tick:
			h.Tick(ctx, now)
		case <-save:
			if err := h.checkpoint(ctx); err != nil {
				h.log.Warn("checkpoint the history", "err", err)
			}
		}
	}
}

// checkpoint saves the buckets changed and the flows published since the
// last checkpoint. What a failed one held is saved by the next. While the
// last tick is not in the log it saves nothing: a checkpoint there would
// be past the log's end, and one at the tick before would claim records
// the log gives to the next tick. A restart then replays from the
// checkpoint before, and counts them once.
func (h *Hub) checkpoint(ctx context.Context) error {
	h.mu.Lock()
	if h.unlogged {
		h.mu.Unlock()
		h.log.Warn("checkpoint put off: the last tick is not in the log", "tick", h.processed)
		return nil
	}
	c := history.Checkpoint{Pos: h.processed, Time: h.now, Edges: h.topo.Dirty(), Flows: h.unsaved}
	upTo := h.ring.Next()
	if r := h.retry; r != nil {
		c.Edges = mergeBuckets(r.Edges, c.Edges)
		c.Flows = append(r.Flows, c.Flows...)
		h.retry = nil
	}
	h.unsaved = nil
	h.mu.Unlock()
	if c.Pos == 0 {
		return nil // nothing processed yet
	}
	start := time.Now()
	if err := h.hist.Checkpoint(ctx, c); err != nil {
		h.stats.checkpointErrors.Add(1)
		h.mu.Lock()
		h.retry = &c
		h.mu.Unlock()
		return err
	}
	h.saved.Store(upTo)
	h.stats.checkpoints.Add(1)
	h.stats.checkpointNanos.Add(uint64(time.Since(start)))
	return nil
}

// Flows returns the newest limit saved records in [since, until) that
// match, oldest first: the API's time-bounded queries, with Saved.
func (h *Hub) Flows(ctx context.Context, since, until time.Time, match filter.Filter, limit int) ([]flow.Record, error) {
	return h.hist.Flows(ctx, history.FlowQuery{Since: since, Until: until, Match: match, Limit: limit})
}

// Saved is the ring position up to which published records are saved.
func (h *Hub) Saved() uint64 { return h.saved.Load() }

// mergeBuckets keeps every bucket of newer, and of older those newer does
// not have: a bucket's rows are whole, the newer ones supersede.
func mergeBuckets(older, newer []topology.EdgeRow) []topology.EdgeRow {
	have := map[int64]bool{}
	for _, r := range newer {
		have[r.Bucket] = true
	}
	out := newer
	for _, r := range older {
		if !have[r.Bucket] {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b topology.EdgeRow) int { return cmp.Compare(a.Bucket, b.Bucket) })
	return out
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

// Series answers a topology series: edges' figures step by step.
func (h *Hub) Series(q topology.Query, step time.Duration, ids []string) (topology.Series, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.topo.Series(q, step, ids)
}

// Publish returns the publisher's counters.
func (h *Hub) Publish() publish.Stats { return h.pub.Stats() }

// Topology returns the store's counters.
func (h *Hub) Topology() topology.Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.topo.Stats()
}
