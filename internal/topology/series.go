package topology

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// Bounds of a series request: a sparkline or a chart needs a few dozen
// points, and one request is for the edges of one node or one edge.
const (
	MaxSeriesPoints = 360
	MaxSeriesEdges  = 64
	// DefaultSeriesPoints is about how many points a series has when the
	// step is left to the store (see Series).
	DefaultSeriesPoints = 60
)

// Series is the figures of some edges over a window, step by step: the
// JSON of GET /api/v1/topology/series. Point i of every list covers
// [window_start + i*step, window_start + (i+1)*step), and its figures are
// what a Query of that step's window says of the edge.
type Series struct {
	Level       Level     `json:"level"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	StepSeconds float64   `json:"step_seconds"`
	Points      int       `json:"points"`
	// Edges are those of the ids asked for that have traffic in the
	// window, sorted by id; an id without any is left out.
	Edges []EdgeSeries `json:"edges"`
}

// EdgeSeries is one edge's figures per step, each list Points long.
type EdgeSeries struct {
	ID          string `json:"id"`
	Source      string `json:"source"`
	Destination string `json:"destination"`

	ConnectionsOpened        []uint64 `json:"connections_opened"`
	ConnectionsClosed        []uint64 `json:"connections_closed"`
	Failures                 []uint64 `json:"failures"` // all verdicts together
	BytesToDestination       []uint64 `json:"bytes_to_destination"`
	BytesToSource            []uint64 `json:"bytes_to_source"`
	RetransmitsToDestination []uint64 `json:"retransmits_to_destination"`
	RetransmitsToSource      []uint64 `json:"retransmits_to_source"`
	RTTSamples               []uint64 `json:"rtt_samples"`
	RTTP50                   []uint32 `json:"rtt_p50_us"`
	RTTP95                   []uint32 `json:"rtt_p95_us"`
	RTTMax                   []uint32 `json:"rtt_max_us"`
	Requests                 []uint64 `json:"requests"` // application requests, every protocol
	RequestsFailed           []uint64 `json:"requests_failed"`
}

// seriesSteps checks step against q's window (a multiple of the
// resolution dividing the window into at most MaxSeriesPoints), or with
// step 0 picks the smallest such step giving at most DefaultSeriesPoints.
// It returns the step in buckets and the number of points.
func (s *Store) seriesSteps(window, step time.Duration) (perStep, points int64, err error) {
	res := s.cfg.Resolution
	buckets := int64(window / res) // window is checked already
	if step == 0 {
		perStep = (buckets + DefaultSeriesPoints - 1) / DefaultSeriesPoints
		for buckets%perStep != 0 { // ends by perStep == buckets at the latest
			perStep++
		}
		return perStep, buckets / perStep, nil
	}
	if step < res || step%res != 0 {
		return 0, 0, fmt.Errorf("step %s: want a multiple of the resolution %s", step, res)
	}
	perStep = int64(step / res)
	if buckets%perStep != 0 {
		return 0, 0, fmt.Errorf("step %s: does not divide the window %s", step, window)
	}
	if points = buckets / perStep; points > MaxSeriesPoints {
		return 0, 0, fmt.Errorf("step %s: %d points in the window %s, at most %d are served", step, points, window, MaxSeriesPoints)
	}
	return perStep, points, nil
}

// Series sums the window's buckets step by step for the edges ids (as
// Query names them at q.Level), in one pass over the buckets. A step of 0
// lets the store choose one (about DefaultSeriesPoints points).
func (s *Store) Series(q Query, step time.Duration, ids []string) (Series, error) {
	first, last, err := s.window(&q)
	if err != nil {
		return Series{}, err
	}
	if len(ids) > MaxSeriesEdges {
		return Series{}, fmt.Errorf("%d edges: at most %d in one series", len(ids), MaxSeriesEdges)
	}
	perStep, points, err := s.seriesSteps(q.Window, step)
	if err != nil {
		return Series{}, err
	}
	res := int64(s.cfg.Resolution)
	out := Series{Level: q.Level, WindowStart: time.Unix(0, first*res).UTC(), WindowEnd: time.Unix(0, (last+1)*res).UTC(),
		StepSeconds: (time.Duration(perStep) * s.cfg.Resolution).Seconds(), Points: int(points), Edges: []EdgeSeries{}}

	wanted := map[string]bool{}
	for _, id := range ids {
		wanted[id] = true
	}
	l := s.levelEdges(&q, wanted)
	var steps [][]counts // per wanted edge found, per step
	s.eachBucket(first, last, func(b *bucket) {
		at := (b.index - first) / perStep
		for i := range b.entries {
			j := l.of(b.entries[i].edge)
			if j < 0 {
				continue
			}
			for int(j) >= len(steps) {
				steps = append(steps, make([]counts, points))
			}
			steps[j][at].merge(&b.entries[i].counts)
		}
	})
	ends := l.ends // only their nodes are used
	for j := range ends {
		out.Edges = append(out.Edges, edgeSeries(&ends[j], steps[j]))
	}
	slices.SortFunc(out.Edges, func(a, b EdgeSeries) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func edgeSeries(le *levelEdge, steps []counts) EdgeSeries {
	n := len(steps)
	es := EdgeSeries{ID: EdgeID(le.src.ID, le.dst.ID), Source: le.src.ID, Destination: le.dst.ID,
		ConnectionsOpened: make([]uint64, n), ConnectionsClosed: make([]uint64, n), Failures: make([]uint64, n),
		BytesToDestination: make([]uint64, n), BytesToSource: make([]uint64, n),
		RetransmitsToDestination: make([]uint64, n), RetransmitsToSource: make([]uint64, n),
		RTTSamples: make([]uint64, n), RTTP50: make([]uint32, n), RTTP95: make([]uint32, n), RTTMax: make([]uint32, n),
		Requests: make([]uint64, n), RequestsFailed: make([]uint64, n)}
	for i := range steps {
		c := &steps[i]
		es.ConnectionsOpened[i], es.ConnectionsClosed[i], es.Failures[i] = c.opened, c.closed, c.failures()
		es.BytesToDestination[i], es.BytesToSource[i] = c.bytesToDst, c.bytesToSrc
		es.RetransmitsToDestination[i], es.RetransmitsToSource[i] = c.retransToDst, c.retransToSrc
		p50, p95 := c.rttQuantiles()
		es.RTTSamples[i], es.RTTP50[i], es.RTTP95[i], es.RTTMax[i] = c.rtt.total(), p50, p95, c.rttMax
		es.Requests[i], es.RequestsFailed[i] = c.requestTotals()
	}
	return es
}

// NodeOf is the graph node at level l that one end of r is counted on:
// its destination, or its source. It is the naming Query applies to the
// records the store ingested, so a record from the same flows (the ring
// the hub writes them to) names the node the map shows.
func NodeOf(r *flow.Record, destination bool, l Level) Node {
	ep := &r.Source
	if destination {
		ep = &r.Destination
	}
	id := identOf(ep, r.Node, destination)
	return id.name(l)
}
