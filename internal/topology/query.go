package topology

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Windows a query may ask for.
const (
	MinWindow = 10 * time.Second
	MaxWindow = 24 * time.Hour
)

// ParseWindow reads a window as the API spells it ("10s", "1m", "24h"): a
// Go duration from MinWindow to MaxWindow.
func ParseWindow(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("window %q: %w", s, err)
	}
	if d < MinWindow || d > MaxWindow {
		return 0, fmt.Errorf("window %q: want from %s to %s", s, MinWindow, MaxWindow)
	}
	return d, nil
}

// Query asks for the graph of one window.
type Query struct {
	Level  Level
	Window time.Duration // a multiple of the store's resolution, within what it retains
	// At is the window's end, rounded up to the store's resolution: the
	// window is the Window/Resolution buckets ending there, the last one
	// still filling when At is now.
	At        time.Time
	Namespace string // when set, only edges with an endpoint in this namespace
}

// Graph is the topology of one window: the JSON of GET /api/v1/topology.
type Graph struct {
	Level         Level     `json:"level"`
	WindowStart   time.Time `json:"window_start"`
	WindowEnd     time.Time `json:"window_end"`
	WindowSeconds float64   `json:"window_seconds"`
	Nodes         []Node    `json:"nodes"` // sorted by id
	Edges         []Edge    `json:"edges"` // sorted by id
}

// Edge is what went from one node to another in a window. Counts are
// totals in the window; rates are those totals over window_seconds.
type Edge struct {
	ID          string `json:"id"`          // stable: a hash of source and destination ids
	Source      string `json:"source"`      // node id of the side that opened the connections
	Destination string `json:"destination"` // node id of the side that accepted them

	ConnectionsOpened          uint64   `json:"connections_opened"`
	ConnectionsClosed          uint64   `json:"connections_closed"`
	ConnectionsOpenedPerSecond float64  `json:"connections_opened_per_second"`
	ConnectionsClosedPerSecond float64  `json:"connections_closed_per_second"`
	Failures                   Failures `json:"failures"`
	FailuresPerSecond          float64  `json:"failures_per_second"` // all verdicts together

	RetransmitsToDestination uint64 `json:"retransmits_to_destination"` // segments the client sent again
	RetransmitsToSource      uint64 `json:"retransmits_to_source"`      // segments the server sent again
	BytesToDestination       uint64 `json:"bytes_to_destination"`
	BytesToSource            uint64 `json:"bytes_to_source"`

	// RTT of the connection intervals that sampled one (each record's
	// average smoothed RTT is one sample): p50 and p95 to RelativeError
	// (or 1 µs), max exact (the largest of the records' max).
	RTTSamples uint64 `json:"rtt_samples"`
	RTTP50     uint32 `json:"rtt_p50_us"`
	RTTP95     uint32 `json:"rtt_p95_us"`
	RTTMax     uint32 `json:"rtt_max_us"`

	// How connecting went, from the clients' records: SYNs sent again,
	// and connect latency (connect() to established) of the connections
	// opened, p50 and p95 to RelativeError, max exact.
	SYNRetransmits        uint64 `json:"syn_retransmits"`
	ConnectLatencySamples uint64 `json:"connect_latency_samples"`
	ConnectLatencyP50     uint32 `json:"connect_latency_p50_us"`
	ConnectLatencyP95     uint32 `json:"connect_latency_p95_us"`
	ConnectLatencyMax     uint32 `json:"connect_latency_max_us"`
	// Drops are the packets of the edge's flows the kernel dropped, by
	// reason (each side's own).
	Drops map[string]uint64 `json:"drops,omitempty"`

	// Application requests of the counted side (requests.go): all
	// protocols together, and by protocol and class.
	Requests          uint64           `json:"requests,omitempty"`
	RequestsFailed    uint64           `json:"requests_failed,omitempty"`
	RequestsPerSecond float64          `json:"requests_per_second,omitempty"`
	RequestFigures    []RequestFigures `json:"request_figures,omitempty"`

	Records uint64 `json:"records"` // flow records folded in (the counted side's)
}

// Failures counts connections (UDP: conversation intervals) by how they
// failed.
type Failures struct {
	Refused     uint64 `json:"refused"`     // connect answered by RST
	Timeout     uint64 `json:"timeout"`     // connect never answered
	Reset       uint64 `json:"reset"`       // closed by a RST
	Unanswered  uint64 `json:"unanswered"`  // UDP intervals with datagrams from the source only
	Unreachable uint64 `json:"unreachable"` // connect failed: host or network unreachable
	Failed      uint64 `json:"failed"`      // connect failed otherwise
}

// window returns the first and last bucket index of q, checked.
func (s *Store) window(q *Query) (first, last int64, err error) {
	res := s.cfg.Resolution
	if q.Window < res || q.Window%res != 0 {
		return 0, 0, fmt.Errorf("window %s: want a multiple of the resolution %s", q.Window, res)
	}
	if n := int64(q.Window / res); n > int64(s.cfg.MaxBuckets) {
		return 0, 0, fmt.Errorf("window %s: longer than the %s retained", q.Window, time.Duration(s.cfg.MaxBuckets)*res)
	}
	if !slices.Contains(Levels, q.Level) {
		return 0, 0, fmt.Errorf("unknown level %q", q.Level)
	}
	last = s.bucketIndex(q.At)
	return last - int64(q.Window/res) + 1, last, nil
}

// levelEdge is one edge of a graph being summed.
type levelEdge struct {
	src, dst Node
	counts
}

// levelEdges names the store's edges at a query's level as its buckets are
// summed: each retained edge maps to one level edge, or to none (-1: the
// query's filters or want leave it out), computed once per edge.
type levelEdges struct {
	s    *Store
	q    *Query
	want map[string]bool // edge ids wanted; nil: every edge
	slot []int32         // by the store's edge id; unknown until computed
	byID map[string]int32
	ends []levelEdge
}

const unknownEdge = -2

func (s *Store) levelEdges(q *Query, want map[string]bool) *levelEdges {
	l := &levelEdges{s: s, q: q, want: want, slot: make([]int32, len(s.edges)), byID: map[string]int32{}}
	for i := range l.slot {
		l.slot[i] = unknownEdge
	}
	return l
}

// of returns the index in ends of the level edge store edge e falls in,
// or -1.
func (l *levelEdges) of(e uint32) int32 {
	if j := l.slot[e]; j != unknownEdge {
		return j
	}
	j := int32(-1)
	if k := &l.s.edges[e].key; keep(k, l.q) {
		src, dst := k.src.name(l.q.Level), k.dst.name(l.q.Level)
		id := src.ID + "\x00" + dst.ID
		if l.want == nil || l.want[EdgeID(src.ID, dst.ID)] {
			var ok bool
			if j, ok = l.byID[id]; !ok {
				j = int32(len(l.ends))
				l.byID[id] = j
				l.ends = append(l.ends, levelEdge{src: src, dst: dst})
			}
		}
	}
	l.slot[e] = j
	return j
}

// eachBucket calls fn with every retained bucket from first to last.
// Buckets no longer (or not yet) retained count as empty.
func (s *Store) eachBucket(first, last int64, fn func(b *bucket)) {
	for idx := max(first, s.head-int64(s.cfg.MaxBuckets)+1); idx <= last; idx++ {
		if b := s.ring[s.slotOf(idx)]; b != nil && b.index == idx {
			fn(b)
		}
	}
}

// Query sums the window's buckets into a graph at the query's level.
func (s *Store) Query(q Query) (Graph, error) {
	first, last, err := s.window(&q)
	if err != nil {
		return Graph{}, err
	}
	res := int64(s.cfg.Resolution)
	g := Graph{Level: q.Level, WindowStart: time.Unix(0, first*res).UTC(), WindowEnd: time.Unix(0, (last+1)*res).UTC(),
		WindowSeconds: q.Window.Seconds()}
	l := s.levelEdges(&q, nil)
	s.eachBucket(first, last, func(b *bucket) {
		for i := range b.entries {
			if j := l.of(b.entries[i].edge); j >= 0 {
				l.ends[j].merge(&b.entries[i].counts)
			}
		}
	})
	sum := l.ends

	nodes := map[string]Node{}
	for i := range sum {
		le := &sum[i]
		nodes[le.src.ID], nodes[le.dst.ID] = le.src, le.dst
		g.Edges = append(g.Edges, le.edge(g.WindowSeconds))
	}
	g.Nodes = make([]Node, 0, len(nodes))
	for _, n := range nodes {
		g.Nodes = append(g.Nodes, n)
	}
	slices.SortFunc(g.Nodes, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	if g.Edges == nil {
		g.Edges = []Edge{}
	}
	slices.SortFunc(g.Edges, func(a, b Edge) int { return strings.Compare(a.ID, b.ID) })
	return g, nil
}

// keep applies the query's filters to an edge at the finest naming.
func keep(k *edgeKey, q *Query) bool {
	if q.Level == LevelExternal && !k.src.external() && !k.dst.external() {
		return false
	}
	if q.Namespace == "" {
		return true
	}
	return k.src.namespace == q.Namespace || k.dst.namespace == q.Namespace || k.dst.serviceNS == q.Namespace
}

// EdgeID is the stable id of the edge from node src to node dst.
func EdgeID(src, dst string) string {
	h := sha256.Sum256([]byte(src + "\x00" + dst))
	return hex.EncodeToString(h[:8])
}

func (le *levelEdge) edge(seconds float64) Edge {
	c := &le.counts
	p50, p95 := c.rttQuantiles()
	c50, c95 := quantiles(&c.connect, c.connectMax)
	requests, failed := c.requestTotals()
	return Edge{
		ID: EdgeID(le.src.ID, le.dst.ID), Source: le.src.ID, Destination: le.dst.ID,
		ConnectionsOpened: c.opened, ConnectionsClosed: c.closed,
		ConnectionsOpenedPerSecond: float64(c.opened) / seconds,
		ConnectionsClosedPerSecond: float64(c.closed) / seconds,
		Failures: Failures{Refused: c.refused, Timeout: c.timedOut, Reset: c.reset, Unanswered: c.unanswered,
			Unreachable: c.unreachable, Failed: c.failed},
		FailuresPerSecond:        float64(c.failures()) / seconds,
		RetransmitsToDestination: c.retransToDst, RetransmitsToSource: c.retransToSrc,
		BytesToDestination: c.bytesToDst, BytesToSource: c.bytesToSrc,
		RTTSamples: c.rtt.total(), RTTP50: p50, RTTP95: p95, RTTMax: c.rttMax,
		SYNRetransmits: c.synRetrans, ConnectLatencySamples: c.connect.total(),
		ConnectLatencyP50: c50, ConnectLatencyP95: c95, ConnectLatencyMax: c.connectMax,
		Drops: maps.Clone(c.drops), Records: c.records,
		Requests: requests, RequestsFailed: failed, RequestsPerSecond: float64(requests) / seconds,
		RequestFigures: c.requestFigures(seconds),
	}
}
