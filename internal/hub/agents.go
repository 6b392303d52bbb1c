package hub

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flowlens/flowlens/internal/ingest"
)

// Agent and Batch are what the ingest service hands the hub; `up` makes
// them for its own agent.
type (
	Agent = ingest.Agent
	Batch = ingest.Batch
)

// agentState is what the hub knows of one agent. Guarded by Hub.in.
type agentState struct {
	id, node, version, addr string
	incarnation, seq        uint64
	connected               bool
	connectedSince          time.Time
	lastBatch               time.Time
	lag                     time.Duration
	batches, records        uint64
	resent                  uint64
	dropped                 uint64
	backlog                 int
	lastError               string
	// logging are the agent's batches on their way into the log, by seq:
	// a resend of one of them waits for its outcome.
	logging map[uint64]*logEntry
}

func (h *Hub) agent(a Agent, now time.Time) *agentState {
	s := h.agents[a.ID]
	if s == nil {
		s = &agentState{id: a.ID}
		h.agents[a.ID] = s
	}
	if s.incarnation != a.Incarnation {
		// A restarted agent numbers its batches from 1 again.
		s.incarnation, s.seq, s.connectedSince, s.logging = a.Incarnation, 0, now, nil
	}
	if !s.connected {
		s.connected, s.connectedSince, s.lastError = true, now, ""
	}
	s.node, s.version, s.addr = a.Node, a.Version, a.Addr
	return s
}

// received notes a new batch, logged.
func (s *agentState) received(b *Batch, now time.Time) {
	s.lastBatch = now
	s.batches++
	s.records += uint64(len(b.Records))
	s.dropped, s.backlog = b.AgentDropped, b.Backlog
	var newest time.Time
	for i := range b.Records {
		if t := b.Records[i].Time; t.After(newest) {
			newest = t
		}
	}
	if !newest.IsZero() {
		s.lag = now.Sub(newest)
	}
}

// AgentStatus is one agent as GET /api/v1/agents shows it.
type AgentStatus struct {
	ID          string `json:"id"`
	Node        string `json:"node"`
	Version     string `json:"version,omitempty"`
	Incarnation string `json:"incarnation"` // hex: changes when the agent restarts
	Address     string `json:"address,omitempty"`
	Connected   bool   `json:"connected"`
	// Since is when the agent connected (or, disconnected, when it last did).
	Since     time.Time `json:"since"`
	LastBatch time.Time `json:"last_batch"`
	// LagSeconds is how long after the end of its newest record the last
	// batch arrived: the agent's interval, its hold, and the network.
	LagSeconds float64 `json:"lag_seconds"`
	Sequence   uint64  `json:"sequence"` // the last batch received
	Batches    uint64  `json:"batches"`
	Records    uint64  `json:"records"`
	// ResentBatches are batches received again after a lost ack, not
	// counted again.
	ResentBatches uint64 `json:"resent_batches"`
	// DroppedRecords are records the agent's backlog could not keep while
	// the hub was away, as the agent reports them.
	DroppedRecords uint64 `json:"dropped_records"`
	Backlog        int    `json:"backlog_records"`
	LastError      string `json:"last_error,omitempty"`
}

// Agents lists the agents the hub has heard from since it started, by id.
func (h *Hub) Agents() []AgentStatus {
	h.in.Lock()
	defer h.in.Unlock()
	out := make([]AgentStatus, 0, len(h.agents))
	for _, s := range h.agents {
		out = append(out, AgentStatus{ID: s.id, Node: s.node, Version: s.version,
			Incarnation: fmt.Sprintf("%016x", s.incarnation), Address: s.addr, Connected: s.connected,
			Since: s.connectedSince, LastBatch: s.lastBatch, LagSeconds: s.lag.Seconds(), Sequence: s.seq,
			Batches: s.batches, Records: s.records, ResentBatches: s.resent, DroppedRecords: s.dropped,
			Backlog: s.backlog, LastError: s.lastError})
	}
	slices.SortFunc(out, func(a, b AgentStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Stats is the hub's counters, for metrics.
type Stats struct {
	Ticks, Batches, Records uint64
	Resent                  uint64 // batches recognised as resends
	Busy                    uint64 // batches refused: MaxPending records waited
	Capped                  uint64 // records kept out of the ring by the cap per source
	Pending                 int
	Agents, Connected       int
	// The history's side: log appends that failed (the batch was refused,
	// or a tick went unlogged), checkpoints written and failed, their
	// total time, and flows never saved because MaxUnsaved waited.
	LogAppends, LogErrors, Checkpoints, CheckpointErrors uint64
	CheckpointTime                                       time.Duration
	Unsaved                                              uint64
}

type counters struct {
	ticks, batches, records, resent, busy                atomic.Uint64
	logAppends, logErrors, checkpoints, checkpointErrors atomic.Uint64
	checkpointNanos, unsaved                             atomic.Uint64
}

// Stats reads the counters.
func (h *Hub) Stats() Stats {
	h.in.Lock()
	defer h.in.Unlock()
	s := Stats{Ticks: h.stats.ticks.Load(), Batches: h.stats.batches.Load(), Records: h.stats.records.Load(),
		Resent: h.stats.resent.Load(), Busy: h.stats.busy.Load(), Capped: h.cap.Capped(), Pending: len(h.pending), Agents: len(h.agents),
		LogAppends: h.stats.logAppends.Load(), LogErrors: h.stats.logErrors.Load(), Checkpoints: h.stats.checkpoints.Load(), CheckpointErrors: h.stats.checkpointErrors.Load(),
		CheckpointTime: time.Duration(h.stats.checkpointNanos.Load()), Unsaved: h.stats.unsaved.Load()}
	for _, a := range h.agents {
		if a.connected {
			s.Connected++
		}
	}
	return s
}
