package metrics

import (
	"slices"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/topology"
)

// DefaultMaxEdgeSeries is how many edge label sets get series of their own
// unless --max-edge-series says otherwise. Each costs at most
// SeriesPerEdgeLabelSet series: 10,000 is at most 210,000 series without
// requests, and 540,000 if every label set spoke all four L7 protocols.
// (A port speaks one: an HTTP edge adds at most 10.)
const DefaultMaxEdgeSeries = 10_000

// OtherLabel is every edge label's value on the series that the edges past
// the budget share.
const OtherLabel = "other"

// edgeLabelNames are the labels naming an edge, at workload level.
var edgeLabelNames = []string{"source_namespace", "source_workload", "destination_namespace",
	"destination_workload", "destination_port", "protocol"}

// rttBuckets are the RTT histogram's upper bounds in seconds: a factor of 5
// apart, from loopback and same-zone (200 µs) to across continents (500 ms).
// Few, because a histogram costs its buckets + 2 series per edge.
var rttBuckets = [...]float64{0.0002, 0.001, 0.005, 0.025, 0.1, 0.5}

// verdicts are the failure verdicts, as the topology's Failures names them.
var verdicts = [...]string{"refused", "timeout", "reset", "unanswered", "unreachable", "failed"}

const (
	failRefused = iota
	failTimeout
	failReset
	failUnanswered
	failUnreachable
	failFailed
)

// requestSeries is the most request series one label set has: a counter
// per L7 protocol and class, and per protocol one of failures and the
// duration's sum and count.
var requestSeries = func() int {
	n := 0
	for _, p := range flow.L7Protocols {
		n += len(topology.RequestClasses(p)) + 3
	}
	return n
}()

// SeriesPerEdgeLabelSet is the most series one edge label set has: opened,
// closed, bytes and retransmits each way, a failure counter per verdict,
// the RTT histogram (its buckets, +Inf, sum and count), and the requests'.
var SeriesPerEdgeLabelSet = 6 + len(verdicts) + len(rttBuckets) + 3 + requestSeries

var (
	edgeOpened = prometheus.NewDesc("flowlens_edge_connections_opened_total",
		"TCP connections opened on the edge, each counted once (from the client's side when both are observed), as the topology counts them.",
		edgeLabelNames, nil)
	edgeClosed = prometheus.NewDesc("flowlens_edge_connections_closed_total",
		"TCP connections closed on the edge.", edgeLabelNames, nil)
	edgeFailures = prometheus.NewDesc("flowlens_edge_connection_failures_total",
		"Connections that failed on the edge, by verdict (UDP: conversation intervals unanswered). A verdict's series appears at its first failure.",
		append(edgeLabelNames[:len(edgeLabelNames):len(edgeLabelNames)], "verdict"), nil)
	edgeBytes = prometheus.NewDesc("flowlens_edge_bytes_total",
		"Application payload bytes on the edge, by direction.",
		append(edgeLabelNames[:len(edgeLabelNames):len(edgeLabelNames)], "direction"), nil)
	edgeRetransmits = prometheus.NewDesc("flowlens_edge_retransmits_total",
		"TCP segments sent again on the edge, by direction, each counted by the side that sent it.",
		append(edgeLabelNames[:len(edgeLabelNames):len(edgeLabelNames)], "direction"), nil)
	edgeRTT = prometheus.NewDesc("flowlens_edge_rtt_seconds",
		"Smoothed round-trip time on the edge: one sample per flow record that measured one (its average). Appears with the first sample.",
		edgeLabelNames, nil)
	edgeRequests = prometheus.NewDesc("flowlens_edge_requests_total",
		"Application requests on the edge, by L7 protocol and class (HTTP: 1xx-5xx; DNS: the rcode; PostgreSQL, Redis: ok or error; none: never answered), from the side the topology counts the connection from. A class's series appears at its first request.",
		append(edgeLabelNames[:len(edgeLabelNames):len(edgeLabelNames)], "l7_protocol", "status_class"), nil)
	edgeRequestFailures = prometheus.NewDesc("flowlens_edge_request_failures_total",
		"Application requests on the edge that failed (HTTP 5xx, DNS other than noerror and nxdomain, PostgreSQL and Redis errors, never answered), by L7 protocol.",
		append(edgeLabelNames[:len(edgeLabelNames):len(edgeLabelNames)], "l7_protocol"), nil)
	edgeRequestDuration = prometheus.NewDesc("flowlens_edge_request_duration_seconds",
		"Request start to response start of the answered requests on the edge, by L7 protocol: a summary of sum and count only, the sum being each request group's average times its count (the records carry no per-request latency, so no quantiles or buckets).",
		append(edgeLabelNames[:len(edgeLabelNames):len(edgeLabelNames)], "l7_protocol"), nil)
	edgeFolded = prometheus.NewDesc("flowlens_edge_series_folded_total",
		"Flow records whose edge found the series budget (--max-edge-series) full: counted in the series whose edge labels are all \"other\" instead.",
		nil, nil)
	edgeLabelSets = prometheus.NewDesc("flowlens_edge_label_sets",
		"Edge label sets with series of their own.", nil, nil)
	edgeLabelSetsLimit = prometheus.NewDesc("flowlens_edge_label_sets_limit",
		"Edge label sets that may have series of their own (--max-edge-series); further ones fold into \"other\".", nil, nil)
)

// EdgeSeriesFlag registers --max-edge-series on fs.
func EdgeSeriesFlag(fs *pflag.FlagSet) *int {
	return fs.Int("max-edge-series", DefaultMaxEdgeSeries,
		"edge label sets (workload and namespace each end, port, protocol) with Prometheus series of their own; "+
			"further edges share one series labelled \"other\" and are counted in flowlens_edge_series_folded_total")
}

// edgeLabels names an edge at workload level, with the destination's port
// and the protocol.
type edgeLabels struct {
	srcNamespace, srcWorkload string
	dstNamespace, dstWorkload string
	port                      uint16
	protocol                  flow.Protocol
	other                     bool // the series of the edges past the budget
}

// edgeCounts is what one label set counted. RTT buckets are not
// cumulative here; Collect sums them.
type edgeCounts struct {
	labels                     edgeLabels
	opened, closed             uint64
	failures                   [len(verdicts)]uint64
	bytesToDst, bytesToSrc     uint64
	retransToDst, retransToSrc uint64
	rttBuckets                 [len(rttBuckets) + 1]uint64 // the last: above every bound
	rttCount                   uint64
	rttSum                     float64
	requests                   [l7Protocols]requestCounts // by flow.L7Protocols' index
}

// l7Protocols is len(flow.L7Protocols), as a constant; a test checks it.
const l7Protocols = 4

// requestCounts are one L7 protocol's requests on a label set.
type requestCounts struct {
	byClass          [topology.MaxRequestClasses]uint64 // by topology.RequestClasses' index
	failed, answered uint64
	durationSum      float64 // seconds
}

func (c *edgeCounts) addRequests(groups []flow.Requests) {
	for i := range groups {
		g := &groups[i]
		p := slices.Index(flow.L7Protocols, g.Protocol)
		if p < 0 {
			continue
		}
		rc := &c.requests[p]
		rc.byClass[slices.Index(topology.RequestClasses(g.Protocol), topology.RequestClass(g))] += uint64(g.Count)
		rc.failed += uint64(g.Failed)
		if g.Latency != nil {
			rc.answered += uint64(g.Count)
			rc.durationSum += float64(g.Latency.AvgMicros) / 1e6 * float64(g.Count)
		}
	}
}

// add counts r as the topology's counts do: whole, everything it carries;
// else only its own retransmits.
func (c *edgeCounts) add(r *flow.Record, whole bool) {
	c.retransToDst += uint64(r.RetransToDst)
	c.retransToSrc += uint64(r.RetransToSrc)
	if !whole {
		return
	}
	c.opened += uint64(r.Opened)
	c.closed += uint64(r.Closed)
	c.failures[failRefused] += uint64(r.Refused)
	c.failures[failTimeout] += uint64(r.TimedOut)
	switch r.Verdict {
	case flow.VerdictUnreachable:
		c.failures[failUnreachable] += uint64(r.FailedOther)
	case flow.VerdictReset:
		c.failures[failReset] += uint64(r.Closed)
	case flow.VerdictUnanswered:
		c.failures[failUnanswered]++
	default:
		c.failures[failFailed] += uint64(r.FailedOther)
	}
	c.bytesToDst += r.BytesToDst
	c.bytesToSrc += r.BytesToSrc
	if r.RTT != nil {
		s := float64(r.RTT.AvgMicros) / 1e6
		i := 0
		for i < len(rttBuckets) && s > rttBuckets[i] {
			i++
		}
		c.rttBuckets[i]++
		c.rttCount++
		c.rttSum += s
	}
	c.addRequests(r.Requests)
}

// edgeKey is what Observe looks an edge's series up by: the edge at the
// topology's finest naming (comparable, so hashing it allocates nothing),
// with the labels that come from the record itself.
type edgeKey struct {
	edge     topology.EdgeKey
	port     uint16
	protocol flow.Protocol
}

// EdgeMetrics counts, per edge at workload level, what the topology
// counts: it is fed by topology.Config.Observe, so its counters and the
// graph agree record for record. A budget bounds the label sets: past it,
// a new one's records go to one series labelled "other" and are counted.
// Label sets are never forgotten (a counter that vanished and came back
// would read as a reset), so the budget holds for the process's lifetime.
// Safe for concurrent use: Observe under the hub's lock, Collect from
// scrapes.
type EdgeMetrics struct {
	maxSeries int
	maxCached int

	mu sync.Mutex
	// cache names a finest edge's label set without naming the edge again:
	// many finest edges (pods, processes) share one label set, so it is
	// bounded apart, and emptied when full.
	cache    map[edgeKey]*edgeCounts
	byLabels map[edgeLabels]*edgeCounts
	// last is the edge Observe met last, and its counts: the topology
	// folds a connection's two records one after the other, onto one
	// edge, and comparing the key costs less than hashing it again.
	// A key's counts never change (label sets are never forgotten).
	last       edgeKey
	lastCounts *edgeCounts
	other      *edgeCounts // nil until an edge folds
	folded     uint64
}

// NewEdgeMetrics returns edge metrics giving at most maxSeries label sets
// series of their own (below 1: none, everything is "other").
func NewEdgeMetrics(maxSeries int) *EdgeMetrics {
	maxSeries = max(maxSeries, 0)
	return &EdgeMetrics{maxSeries: maxSeries, maxCached: max(4*maxSeries, 1024),
		cache: map[edgeKey]*edgeCounts{}, byLabels: map[edgeLabels]*edgeCounts{}}
}

// Observe counts r on edge e: whole when its connection is counted from
// r's side, else only r's retransmits. It has topology.Config.Observe's
// signature. An edge met before costs a map lookup (the one met last, a
// comparison) and no allocation.
func (m *EdgeMetrics) Observe(r *flow.Record, e topology.EdgeRef, whole bool) {
	k := edgeKey{edge: e.Key(), port: r.Destination.Port, protocol: r.Protocol}
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.lastCounts
	if c == nil || k != m.last {
		if c = m.cache[k]; c == nil {
			c = m.labelSet(e, &k)
		}
		m.last, m.lastCounts = k, c
	}
	if c == m.other {
		m.folded++
	}
	c.add(r, whole)
}

// labelSet finds or makes the counts of k's label set, or the other one
// past the budget, and caches it for k.
func (m *EdgeMetrics) labelSet(e topology.EdgeRef, k *edgeKey) *edgeCounts {
	src, dst := e.Names(topology.LevelWorkload)
	l := edgeLabels{srcNamespace: src.Namespace, srcWorkload: workloadLabel(src),
		dstNamespace: dst.Namespace, dstWorkload: workloadLabel(dst), port: k.port, protocol: k.protocol}
	c := m.byLabels[l]
	switch {
	case c != nil:
	case len(m.byLabels) < m.maxSeries:
		c = &edgeCounts{labels: l}
		m.byLabels[l] = c
	default:
		if m.other == nil {
			m.other = &edgeCounts{labels: edgeLabels{other: true}}
		}
		c = m.other
	}
	if len(m.cache) >= m.maxCached {
		clear(m.cache)
	}
	m.cache[*k] = c
	return c
}

// workloadLabel is a node's workload label: Kind/name for a workload, and
// the topology's node id for an end no workload names (a process, an
// external address, the API server), so the two never collide.
func workloadLabel(n topology.Node) string {
	if n.Kind == topology.NodeWorkload {
		return n.Name
	}
	return n.ID
}

// Describe implements prometheus.Collector.
func (*EdgeMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{edgeOpened, edgeClosed, edgeFailures, edgeBytes, edgeRetransmits, edgeRTT,
		edgeRequests, edgeRequestFailures, edgeRequestDuration, edgeFolded, edgeLabelSets, edgeLabelSetsLimit} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It copies the counts under the
// lock and builds the metrics after, so a scrape holds Observe up only for
// the copy.
func (m *EdgeMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	snap := make([]edgeCounts, 0, len(m.byLabels)+1)
	for _, c := range m.byLabels {
		snap = append(snap, *c)
	}
	if m.other != nil {
		snap = append(snap, *m.other)
	}
	folded, sets := m.folded, len(m.byLabels)
	m.mu.Unlock()

	ch <- prometheus.MustNewConstMetric(edgeFolded, prometheus.CounterValue, float64(folded))
	ch <- prometheus.MustNewConstMetric(edgeLabelSets, prometheus.GaugeValue, float64(sets))
	ch <- prometheus.MustNewConstMetric(edgeLabelSetsLimit, prometheus.GaugeValue, float64(m.maxSeries))
	for i := range snap {
		collectEdge(ch, &snap[i])
	}
}

func collectEdge(ch chan<- prometheus.Metric, c *edgeCounts) {
	labels := c.labels.values()
	counter := func(d *prometheus.Desc, v uint64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append(labels, extra...)...)
	}
	counter(edgeOpened, c.opened)
	counter(edgeClosed, c.closed)
	for i, n := range c.failures {
		if n > 0 {
			counter(edgeFailures, n, verdicts[i])
		}
	}
	counter(edgeBytes, c.bytesToDst, "to_destination")
	counter(edgeBytes, c.bytesToSrc, "to_source")
	counter(edgeRetransmits, c.retransToDst, "to_destination")
	counter(edgeRetransmits, c.retransToSrc, "to_source")
	if c.rttCount > 0 {
		cumulative := make(map[float64]uint64, len(rttBuckets))
		var n uint64
		for i, le := range rttBuckets {
			n += c.rttBuckets[i]
			cumulative[le] = n
		}
		ch <- prometheus.MustNewConstHistogram(edgeRTT, c.rttCount, c.rttSum, cumulative, labels...)
	}
	for p, rc := range c.requests {
		proto := string(flow.L7Protocols[p])
		seen := false
		for i, class := range topology.RequestClasses(flow.L7Protocols[p]) {
			if rc.byClass[i] > 0 {
				counter(edgeRequests, rc.byClass[i], proto, class)
				seen = true
			}
		}
		if !seen && rc.failed == 0 {
			continue // the protocol's series appear with its first request
		}
		counter(edgeRequestFailures, rc.failed, proto)
		ch <- prometheus.MustNewConstSummary(edgeRequestDuration, rc.answered, rc.durationSum, nil, append(labels, proto)...)
	}
}

// values are the label values in edgeLabelNames' order, with a spare
// slot for the verdict or direction a caller appends.
func (l *edgeLabels) values() []string {
	v := make([]string, 0, len(edgeLabelNames)+1)
	if l.other {
		return append(v, OtherLabel, OtherLabel, OtherLabel, OtherLabel, OtherLabel, OtherLabel)
	}
	return append(v, l.srcNamespace, l.srcWorkload, l.dstNamespace, l.dstWorkload,
		strconv.FormatUint(uint64(l.port), 10), string(l.protocol))
}
