package metrics

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/topology"
)

var t0 = time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)

func podEnd(ns, pod, deploy, ip string, port uint16) flow.Endpoint {
	return flow.Endpoint{IP: netip.MustParseAddr(ip), Port: port, Kind: flow.KindPod, Namespace: ns, Pod: pod,
		Workload: &flow.Workload{Kind: "Deployment", Name: deploy}}
}

// clientRecord is a connection's record from its client, a pod of
// shop/Deployment/client, ending at t0+5s.
func clientRecord(port uint16, dst flow.Endpoint, r flow.Record) flow.Record {
	r.Time, r.Start, r.ConnStart = t0.Add(5*time.Second), t0.Add(4*time.Second), t0.Add(4500*time.Millisecond)
	r.Node, r.Observer = "node-a", "client"
	if r.Protocol == "" {
		r.Protocol = flow.TCP
	}
	r.Source = podEnd("shop", "client-1", "client", "10.244.1.10", port)
	r.Source.PID, r.Source.Command = 4711, "curl"
	r.Destination = dst
	return r
}

// edgeRecords are the records of TestEdgeMetricsCountsWhatTheGraphCounts:
//   - 2 connections client → Service shop/api:80 → backend pod :8080, each
//     seen by both sides: counted from the client (1000/100 bytes, 1
//     retransmit to the destination, 60 µs), and the server's records
//     add their 2 retransmits to the source each;
//   - a connection to shop/db:5432 refused;
//   - a connection to 203.0.113.9:443 reset (500 bytes, 30 ms);
//   - 2 UDP intervals to kube-system/coredns:53 unanswered (40 bytes each).
func edgeRecords() []flow.Record {
	var recs []flow.Record
	api := podEnd("shop", "api-1", "api", "10.96.0.20", 80)
	api.Service = &flow.ServiceRef{Namespace: "shop", Name: "api"}
	for _, port := range []uint16{43122, 43123} {
		c := clientRecord(port, api, flow.Record{Verdict: flow.VerdictClosed, Opened: 1, Closed: 1,
			BytesToDst: 1000, BytesToSrc: 100, RetransToDst: 1, RTT: &flow.RTT{MinMicros: 60, AvgMicros: 60, MaxMicros: 60}})
		s := c
		s.Node, s.Observer, s.ConnStart = "node-b", "server", c.ConnStart.Add(10*time.Millisecond)
		s.Source = podEnd("shop", "client-1", "client", "10.244.1.10", port)
		s.Destination = podEnd("shop", "api-1", "api", "10.244.2.20", 8080)
		s.Destination.PID, s.Destination.Command = 99, "api"
		s.RetransToDst, s.RetransToSrc, s.RTT = 0, 2, &flow.RTT{MinMicros: 90, AvgMicros: 90, MaxMicros: 90}
		recs = append(recs, c, s)
	}
	recs = append(recs,
		clientRecord(43200, podEnd("shop", "db-0", "db", "10.244.2.30", 5432), flow.Record{Verdict: flow.VerdictRefused, Refused: 1}),
		clientRecord(43300, flow.Endpoint{IP: netip.MustParseAddr("203.0.113.9"), Port: 443, Kind: flow.KindWorld},
			flow.Record{Verdict: flow.VerdictReset, Opened: 1, Closed: 1, BytesToDst: 500,
				RTT: &flow.RTT{MinMicros: 30000, AvgMicros: 30000, MaxMicros: 30000}}))
	for i := range 2 {
		recs = append(recs, clientRecord(uint16(50000+i), podEnd("kube-system", "coredns-1", "coredns", "10.244.0.5", 53),
			flow.Record{Protocol: flow.UDP, Verdict: flow.VerdictUnanswered, BytesToDst: 40, DatagramsToDst: 1}))
	}
	return recs
}

// ingest folds recs into a fresh store whose observer is m, and returns
// the store.
func ingest(m *EdgeMetrics, recs ...flow.Record) *topology.Store {
	s := topology.New(topology.Config{Observe: m.Observe})
	s.Tick(t0.Add(6 * time.Second))
	s.Ingest(recs)
	return s
}

// expositionText is what a scrape of c reads, in the text format.
func expositionText(t *testing.T, c prometheus.Collector) *bytes.Buffer {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&text, mf); err != nil {
			t.Fatal(err)
		}
	}
	return &text
}

// exposition is what a scrape of c reads, one series per key:
// `name{label="value",...}` (labels sorted) → value.
func exposition(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	got := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(expositionText(t, c).String()), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got[line[:i]] = v
	}
	return got
}

// edge names a label set as the exposition spells it, labels sorted.
type edge struct{ srcNS, src, dstNS, dst, port, proto string }

var otherEdge = edge{"other", "other", "other", "other", "other", "other"}

func (e edge) series(name string, extra ...string) string {
	labels := []string{`destination_namespace="` + e.dstNS + `"`, `destination_port="` + e.port + `"`,
		`destination_workload="` + e.dst + `"`}
	if len(extra) == 2 && extra[0] == "direction" { // sorts before protocol
		labels = append(labels, extra[0]+`="`+extra[1]+`"`)
	}
	labels = append(labels, `protocol="`+e.proto+`"`, `source_namespace="`+e.srcNS+`"`, `source_workload="`+e.src+`"`)
	if len(extra) == 2 && extra[0] != "direction" { // verdict sorts last, le is printed last
		labels = append(labels, extra[0]+`="`+extra[1]+`"`)
	}
	return name + "{" + strings.Join(labels, ",") + "}"
}

// want adds an edge's always-present series: opened, closed, bytes and
// retransmits.
func (e edge) want(into map[string]float64, opened, closed, bytesToDst, bytesToSrc, retransToDst, retransToSrc float64) {
	into[e.series("flowlens_edge_connections_opened_total")] = opened
	into[e.series("flowlens_edge_connections_closed_total")] = closed
	into[e.series("flowlens_edge_bytes_total", "direction", "to_destination")] = bytesToDst
	into[e.series("flowlens_edge_bytes_total", "direction", "to_source")] = bytesToSrc
	into[e.series("flowlens_edge_retransmits_total", "direction", "to_destination")] = retransToDst
	into[e.series("flowlens_edge_retransmits_total", "direction", "to_source")] = retransToSrc
}

// wantRTT adds an edge's histogram: every sample in the bucket of bound le.
func (e edge) wantRTT(into map[string]float64, le string, samples, sum float64) {
	bounds := []string{"0.0002", "0.001", "0.005", "0.025", "0.1", "0.5", "+Inf"}
	n := 0.0
	for _, b := range bounds {
		if b == le {
			n = samples
		}
		into[e.series("flowlens_edge_rtt_seconds_bucket", "le", b)] = n
	}
	into[e.series("flowlens_edge_rtt_seconds_sum")] = sum
	into[e.series("flowlens_edge_rtt_seconds_count")] = samples
}

func diffSeries(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			t.Errorf("missing %s (want %g)", k, want[k])
		} else if g != want[k] {
			t.Errorf("%s = %g, want %g", k, g, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s = %g", k, got[k])
		}
	}
}

func TestEdgeMetricsCountsWhatTheGraphCounts(t *testing.T) {
	m := NewEdgeMetrics(100)
	store := ingest(m, edgeRecords()...)

	client := func(dstNS, dst, port, proto string) edge {
		return edge{"shop", "Deployment/client", dstNS, dst, port, proto}
	}
	api := client("shop", "Deployment/api", "80", "tcp")
	// The server's records add only their retransmits, under the port
	// they saw: the backend's, not the Service's the client dialed.
	apiBackend := client("shop", "Deployment/api", "8080", "tcp")
	db := client("shop", "Deployment/db", "5432", "tcp")
	world := client("", "external:203.0.113.9", "443", "tcp")
	dns := client("kube-system", "Deployment/coredns", "53", "udp")

	want := map[string]float64{
		"flowlens_edge_series_folded_total": 0,
		"flowlens_edge_label_sets":          5,
		"flowlens_edge_label_sets_limit":    100,
	}
	api.want(want, 2, 2, 2000, 200, 2, 0)
	api.wantRTT(want, "0.0002", 2, 0.00012)
	apiBackend.want(want, 0, 0, 0, 0, 0, 4)
	db.want(want, 0, 0, 0, 0, 0, 0)
	want[db.series("flowlens_edge_connection_failures_total", "verdict", "refused")] = 1
	world.want(want, 1, 1, 500, 0, 0, 0)
	want[world.series("flowlens_edge_connection_failures_total", "verdict", "reset")] = 1
	world.wantRTT(want, "0.1", 1, 0.03)
	dns.want(want, 0, 0, 80, 0, 0, 0)
	want[dns.series("flowlens_edge_connection_failures_total", "verdict", "unanswered")] = 2
	got := exposition(t, m)
	diffSeries(t, got, want)

	// And the graph of the same records holds the same totals: the
	// metrics take the counts as the store does.
	g, err := store.Query(topology.Query{Level: topology.LevelWorkload, Window: time.Minute, At: t0.Add(6 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	var graph, metrics [7]float64 // opened, closed, failures, bytes, retransmits, RTT samples, edges
	for _, e := range g.Edges {
		graph[0] += float64(e.ConnectionsOpened)
		graph[1] += float64(e.ConnectionsClosed)
		f := e.Failures
		graph[2] += float64(f.Refused + f.Timeout + f.Reset + f.Unanswered + f.Unreachable + f.Failed)
		graph[3] += float64(e.BytesToDestination + e.BytesToSource)
		graph[4] += float64(e.RetransmitsToDestination + e.RetransmitsToSource)
		graph[5] += float64(e.RTTSamples)
		graph[6]++
	}
	for k, v := range got {
		for i, prefix := range []string{"flowlens_edge_connections_opened_total{", "flowlens_edge_connections_closed_total{",
			"flowlens_edge_connection_failures_total{", "flowlens_edge_bytes_total{", "flowlens_edge_retransmits_total{",
			"flowlens_edge_rtt_seconds_count{"} {
			if strings.HasPrefix(k, prefix) {
				metrics[i] += v
			}
		}
	}
	metrics[6] = 4 // the backend's port splits one graph edge in two label sets
	if graph != metrics {
		t.Errorf("graph totals %v, metrics %v", graph, metrics)
	}
}

// workloadEdge is a TCP connection from pod i of Deployment from-<i%from>
// to Deployment to-<i%to> in namespace ns, closed, 10 bytes each way.
func workloadEdge(i, from, to int) flow.Record {
	dst := podEnd("ns", fmt.Sprintf("to-%d", i), fmt.Sprintf("to-%d", i%to), "10.1.0.1", 80)
	r := clientRecord(uint16(20000+i), dst, flow.Record{Verdict: flow.VerdictClosed, Opened: 1, Closed: 1, BytesToDst: 10, BytesToSrc: 10})
	r.Source = podEnd("ns", fmt.Sprintf("from-%d", i), fmt.Sprintf("from-%d", i%from), "10.0.0.1", uint16(20000+i))
	return r
}

// Past the budget every new label set goes to the other series, counted
// record by record; label sets that got series keep them.
func TestEdgeMetricsBudgetFolds(t *testing.T) {
	m := NewEdgeMetrics(2)
	// Five label sets (from-0 → to-0 ... from-4 → to-4), records 0..4
	// first: 0 and 1 take the budget, 2, 3, 4 fold. Then 5..9 repeat the
	// five label sets (i%5): two more on their own series, three folded.
	var recs []flow.Record
	for i := range 10 {
		recs = append(recs, workloadEdge(i, 5, 5))
	}
	ingest(m, recs...)
	want := map[string]float64{
		"flowlens_edge_series_folded_total": 6,
		"flowlens_edge_label_sets":          2,
		"flowlens_edge_label_sets_limit":    2,
	}
	for _, i := range []string{"0", "1"} {
		edge{"ns", "Deployment/from-" + i, "ns", "Deployment/to-" + i, "80", "tcp"}.want(want, 2, 2, 20, 20, 0, 0)
	}
	otherEdge.want(want, 6, 6, 60, 60, 0, 0)
	diffSeries(t, exposition(t, m), want)
}

// A budget of 0 gives no edge a series: everything is other.
func TestEdgeMetricsNoBudget(t *testing.T) {
	m := NewEdgeMetrics(0)
	ingest(m, workloadEdge(0, 1, 1), workloadEdge(1, 1, 1))
	want := map[string]float64{
		"flowlens_edge_series_folded_total": 2,
		"flowlens_edge_label_sets":          0,
		"flowlens_edge_label_sets_limit":    0,
	}
	otherEdge.want(want, 2, 2, 20, 20, 0, 0)
	diffSeries(t, exposition(t, m), want)
}

// Many finest edges (a pod each) share few label sets: the cache of
// finest edges fills, is emptied, and the counts stay exact.
func TestEdgeMetricsCacheRefills(t *testing.T) {
	m := NewEdgeMetrics(3)
	const n = 3000 // over the cache's 1024
	var recs []flow.Record
	for i := range n {
		recs = append(recs, workloadEdge(i, 3, 1))
	}
	ingest(m, recs...)
	if len(m.cache) >= m.maxCached || len(m.cache) == 0 {
		t.Errorf("cache holds %d of %d finest edges: it was not emptied when full", len(m.cache), m.maxCached)
	}
	want := map[string]float64{
		"flowlens_edge_series_folded_total": 0,
		"flowlens_edge_label_sets":          3,
		"flowlens_edge_label_sets_limit":    3,
	}
	for _, i := range []string{"0", "1", "2"} {
		edge{"ns", "Deployment/from-" + i, "ns", "Deployment/to-0", "80", "tcp"}.want(want, n/3, n/3, 10*n/3, 10*n/3, 0, 0)
	}
	diffSeries(t, exposition(t, m), want)
}

// captureEdge returns the edge the store counts r on.
func captureEdge(t testing.TB, r flow.Record) topology.EdgeRef {
	var ref topology.EdgeRef
	s := topology.New(topology.Config{Observe: func(_ *flow.Record, e topology.EdgeRef, _ bool) { ref = e }})
	s.Tick(t0.Add(6 * time.Second))
	s.Ingest([]flow.Record{r})
	if ref == (topology.EdgeRef{}) {
		t.Fatal("the store counted nothing")
	}
	return ref
}

// Observe allocates nothing for an edge it met before, also once the
// budget folds it.
func TestEdgeMetricsObserveAllocatesNothing(t *testing.T) {
	for _, budget := range []int{1, 0} {
		m := NewEdgeMetrics(budget)
		r := edgeRecords()[0]
		ref := captureEdge(t, r)
		m.Observe(&r, ref, true)
		if n := testing.AllocsPerRun(1000, func() { m.Observe(&r, ref, true) }); n != 0 {
			t.Errorf("budget %d: %g allocations per Observe of a known edge, want 0", budget, n)
		}
	}
}

// BenchmarkEdgeMetricsObserve: Observe over 1,000 known edges, each its
// own label set, as the hub's ingest calls it.
func BenchmarkEdgeMetricsObserve(b *testing.B) {
	const edges = 1000
	m := NewEdgeMetrics(DefaultMaxEdgeSeries)
	recs := make([]flow.Record, edges)
	refs := make([]topology.EdgeRef, edges)
	for i := range recs {
		recs[i] = workloadEdge(i, edges, edges)
		refs[i] = captureEdge(b, recs[i])
		m.Observe(&recs[i], refs[i], true)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Observe(&recs[i], refs[i], true)
		i = (i + 1) % edges
	}
}

// promtool, Prometheus' own checker, finds nothing to say about the
// collector's exposition: names, types, help, units and suffixes.
func TestEdgeMetricsPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skip("promtool not installed (Debian package prometheus; hack/setup.sh installs it as root)")
		}
		t.Fatal("promtool not installed: run hack/setup.sh (it installs Debian's prometheus package)")
	}
	m := NewEdgeMetrics(4)
	ingest(m, edgeRecords()...)
	ingest(m, workloadEdge(0, 1, 1), workloadEdge(1, 2, 2)) // over the budget: the other series too
	text := expositionText(t, m)
	if !strings.Contains(text.String(), `source_workload="other"`) {
		t.Fatalf("no other series in\n%s", text.String())
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = text
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	if len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics says:\n%s", out)
	}
}

// reqSeries names a request series of edge e, labels sorted as the
// exposition prints them (l7_protocol before protocol, status_class last).
func (e edge) reqSeries(name, l7 string, class ...string) string {
	s := name + `{destination_namespace="` + e.dstNS + `",destination_port="` + e.port + `",destination_workload="` + e.dst +
		`",l7_protocol="` + l7 + `",protocol="` + e.proto + `",source_namespace="` + e.srcNS + `",source_workload="` + e.src + `"`
	if len(class) == 1 {
		s += `,status_class="` + class[0] + `"`
	}
	return s + "}"
}

// TestEdgeMetricsRequests: requests seen from both sides are counted once,
// from the client (whose latencies they carry), per class; the duration's
// sum is each group's average times its count; the graph agrees.
func TestEdgeMetricsRequests(t *testing.T) {
	if l7Protocols != len(flow.L7Protocols) {
		t.Fatalf("l7Protocols is %d, flow has %d protocols", l7Protocols, len(flow.L7Protocols))
	}
	recs := edgeRecords()
	client := []flow.Requests{
		{Protocol: flow.HTTP, Method: "GET", Path: "/users/{id}", Status: 200, Count: 900, Latency: &flow.RTT{MinMicros: 100, AvgMicros: 1000, MaxMicros: 9000}},
		{Protocol: flow.HTTP, Method: "GET", Path: "/users/{id}", Status: 404, Count: 60, Latency: &flow.RTT{MinMicros: 100, AvgMicros: 500, MaxMicros: 900}},
		{Protocol: flow.HTTP, Method: "POST", Path: "/orders", Status: 500, Count: 40, Failed: 40, Latency: &flow.RTT{MinMicros: 100, AvgMicros: 2500, MaxMicros: 9000}},
	}
	recs[0].Requests = client // the first connection's client record
	recs[1].Requests = []flow.Requests{{Protocol: flow.HTTP, Method: "GET", Path: "/users/{id}", Status: 200, Count: 900,
		Latency: &flow.RTT{AvgMicros: 10}}} // its server's: not counted
	dnsRec := &recs[len(recs)-1]
	dnsRec.Requests = []flow.Requests{
		{Protocol: flow.DNS, Query: "api.example.com", QType: "A", RCode: "nxdomain", Count: 3, Latency: &flow.RTT{AvgMicros: 200}},
		{Protocol: flow.DNS, Query: "api.example.com", QType: "AAAA", Count: 2, Failed: 2},
	}
	m := NewEdgeMetrics(100)
	store := ingest(m, recs...)
	api := edge{"shop", "Deployment/client", "shop", "Deployment/api", "80", "tcp"}
	dns := edge{"shop", "Deployment/client", "kube-system", "Deployment/coredns", "53", "udp"}
	got := exposition(t, m)
	want := map[string]float64{
		api.reqSeries("flowlens_edge_requests_total", "http", "2xx"):          900,
		api.reqSeries("flowlens_edge_requests_total", "http", "4xx"):          60,
		api.reqSeries("flowlens_edge_requests_total", "http", "5xx"):          40,
		api.reqSeries("flowlens_edge_request_failures_total", "http"):         40,
		api.reqSeries("flowlens_edge_request_duration_seconds_count", "http"): 1000,
		api.reqSeries("flowlens_edge_request_duration_seconds_sum", "http"):   0.9 + 0.03 + 0.1,
		dns.reqSeries("flowlens_edge_requests_total", "dns", "nxdomain"):      3,
		dns.reqSeries("flowlens_edge_requests_total", "dns", "none"):          2,
		dns.reqSeries("flowlens_edge_request_failures_total", "dns"):          2,
		dns.reqSeries("flowlens_edge_request_duration_seconds_count", "dns"):  3,
		dns.reqSeries("flowlens_edge_request_duration_seconds_sum", "dns"):    0.0006,
	}
	requestSeries := map[string]float64{}
	var metricRequests float64
	for k, v := range got {
		if strings.Contains(k, "_request") {
			requestSeries[k] = v
		}
		if strings.HasPrefix(k, "flowlens_edge_requests_total{") {
			metricRequests += v
		}
	}
	// Sums of float products: compare within a rounding error.
	for k, v := range want {
		if strings.Contains(k, "_sum{") && requestSeries[k] != v && math.Abs(requestSeries[k]-v) < 1e-9 {
			requestSeries[k] = v
		}
	}
	diffSeries(t, requestSeries, want)

	g, err := store.Query(topology.Query{Level: topology.LevelWorkload, Window: time.Minute, At: t0.Add(6 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	var graphRequests float64
	for _, e := range g.Edges {
		graphRequests += float64(e.Requests)
	}
	if graphRequests != 1005 || metricRequests != 1005 {
		t.Errorf("requests: graph %g, metrics %g, want 1005", graphRequests, metricRequests)
	}
}
