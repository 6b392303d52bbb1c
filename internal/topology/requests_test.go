package topology

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// httpGroups are 1,000 requests as a client sees them: 900×200 and 60×404
// on one template, 40×500 on another, each group with its own latency.
func httpGroups(scale uint32) []flow.Requests {
	return []flow.Requests{
		{Protocol: flow.HTTP, Method: "GET", Path: "/users/{id}", Status: 200, Count: 900, Latency: &flow.RTT{MinMicros: 100 * scale, AvgMicros: 300 * scale, MaxMicros: 900 * scale}},
		{Protocol: flow.HTTP, Method: "GET", Path: "/users/{id}", Status: 404, Count: 60, Latency: &flow.RTT{MinMicros: 80 * scale, AvgMicros: 200 * scale, MaxMicros: 400 * scale}},
		{Protocol: flow.HTTP, Method: "POST", Path: "/orders/{id}", Status: 500, Count: 40, Failed: 40, Latency: &flow.RTT{MinMicros: 1000 * scale, AvgMicros: 2000 * scale, MaxMicros: 5000 * scale}},
	}
}

// TestRequestsCountedOnceFromTheClient: both sides carry the same 1,000
// requests (the server with its own, shorter latencies); the edge counts
// them once, with the client's latencies, per status class.
func TestRequestsCountedOnceFromTheClient(t *testing.T) {
	s := New(Config{})
	end := t0.Add(5 * time.Second)
	s.Tick(end)
	c, srv := clientServer(end, 40000)
	c.Requests, srv.Requests = httpGroups(2), httpGroups(1)
	s.Ingest([]flow.Record{srv, c}) // the server's first: still the client's counts
	g := query(t, s, LevelWorkload, 10*time.Second, end)
	if len(g.Edges) != 1 {
		t.Fatalf("%d edges, want 1", len(g.Edges))
	}
	e := g.Edges[0]
	want := []RequestFigures{
		{Protocol: flow.HTTP, Class: "2xx", Requests: 900, RequestsPerSecond: 90, LatencySamples: 900, LatencyMin: 200, LatencyAvg: 600, LatencyMax: 1800},
		{Protocol: flow.HTTP, Class: "4xx", Requests: 60, RequestsPerSecond: 6, LatencySamples: 60, LatencyMin: 160, LatencyAvg: 400, LatencyMax: 800},
		{Protocol: flow.HTTP, Class: "5xx", Requests: 40, RequestsPerSecond: 4, Failed: 40, LatencySamples: 40, LatencyMin: 2000, LatencyAvg: 4000, LatencyMax: 10000},
	}
	if e.Requests != 1000 || e.RequestsFailed != 40 || e.RequestsPerSecond != 100 || !reflect.DeepEqual(e.RequestFigures, want) {
		t.Errorf("requests %d failed %d rate %v figures\n%+v\nwant 1000 40 100\n%+v", e.Requests, e.RequestsFailed, e.RequestsPerSecond, e.RequestFigures, want)
	}
}

// TestRequestsFromTheServerAlone: a client outside the cluster is not
// observed; once the server's record waited Hold batches its requests are
// counted, once, and merged over buckets with exact averages.
func TestRequestsFromTheServerAlone(t *testing.T) {
	s := New(Config{Hold: 1})
	var last time.Time
	for i := range 4 {
		last = t0.Add(time.Duration(10*i+5) * time.Second)
		s.Tick(last)
		if i < 2 {
			_, srv := clientServer(last, uint16(41000+i))
			srv.Requests = []flow.Requests{
				{Protocol: flow.DNS, Query: "api.example.com", QType: "A", RCode: "noerror", Count: 3, Latency: &flow.RTT{MinMicros: 10, AvgMicros: uint32(20 + 10*i), MaxMicros: 40}},
				{Protocol: flow.DNS, Query: "nope.example.com", QType: "A", RCode: "nxdomain", Count: 2, Latency: &flow.RTT{MinMicros: 5, AvgMicros: 5, MaxMicros: 5}},
				{Protocol: flow.DNS, Query: "slow.example.com", QType: "A", Count: 1, Failed: 1},
				{Protocol: flow.Redis, Method: "GET", Error: "WRONGTYPE", Count: 1, Failed: 1, Latency: &flow.RTT{MinMicros: 7, AvgMicros: 7, MaxMicros: 7}},
			}
			s.Ingest([]flow.Record{srv})
		}
	}
	g := query(t, s, LevelWorkload, time.Minute, last)
	if len(g.Edges) != 1 {
		t.Fatalf("%d edges, want 1", len(g.Edges))
	}
	want := []RequestFigures{
		{Protocol: flow.DNS, Class: "noerror", Requests: 6, RequestsPerSecond: 6.0 / 60, LatencySamples: 6, LatencyMin: 10, LatencyAvg: 25, LatencyMax: 40},
		{Protocol: flow.DNS, Class: "none", Requests: 2, RequestsPerSecond: 2.0 / 60, Failed: 2},
		{Protocol: flow.DNS, Class: "nxdomain", Requests: 4, RequestsPerSecond: 4.0 / 60, LatencySamples: 4, LatencyMin: 5, LatencyAvg: 5, LatencyMax: 5},
		{Protocol: flow.Redis, Class: "error", Requests: 2, RequestsPerSecond: 2.0 / 60, Failed: 2, LatencySamples: 2, LatencyMin: 7, LatencyAvg: 7, LatencyMax: 7},
	}
	if e := g.Edges[0]; e.Requests != 14 || e.RequestsFailed != 4 || !reflect.DeepEqual(e.RequestFigures, want) {
		t.Errorf("requests %d failed %d figures\n%+v\nwant 14 4\n%+v", e.Requests, e.RequestsFailed, e.RequestFigures, want)
	}
	se, err := s.Series(Query{Level: LevelWorkload, Window: time.Minute, At: last}, 10*time.Second, []string{g.Edges[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	// The minute's six steps: t0-20s..t0+40s; the records end at t0+5s and t0+15s.
	if got := se.Edges[0]; !reflect.DeepEqual(got.Requests, []uint64{0, 0, 7, 7, 0, 0}) ||
		!reflect.DeepEqual(got.RequestsFailed, []uint64{0, 0, 2, 2, 0, 0}) {
		t.Errorf("series requests %v failed %v, want [0 0 7 7 0 0] [0 0 2 2 0 0]", got.Requests, got.RequestsFailed)
	}
}

func TestRequestClass(t *testing.T) {
	lat := &flow.RTT{AvgMicros: 1}
	for _, tc := range []struct {
		g    flow.Requests
		want string
	}{
		{flow.Requests{Protocol: flow.HTTP, Status: 101}, "1xx"},
		{flow.Requests{Protocol: flow.HTTP, Status: 204}, "2xx"},
		{flow.Requests{Protocol: flow.HTTP, Status: 308}, "3xx"},
		{flow.Requests{Protocol: flow.HTTP, Status: 599}, "5xx"},
		{flow.Requests{Protocol: flow.HTTP, Status: 600}, "other"},
		{flow.Requests{Protocol: flow.HTTP, Status: 99}, "other"},
		{flow.Requests{Protocol: flow.HTTP, Count: 2, Failed: 2}, "none"},
		{flow.Requests{Protocol: flow.DNS, RCode: "servfail"}, "servfail"},
		{flow.Requests{Protocol: flow.DNS, RCode: "rcode9"}, "other"},
		{flow.Requests{Protocol: flow.DNS}, "none"},
		{flow.Requests{Protocol: flow.Postgres, Error: "42P01", Count: 1, Failed: 1, Latency: lat}, "error"},
		{flow.Requests{Protocol: flow.Postgres, Count: 3, Latency: lat}, "ok"},
		{flow.Requests{Protocol: flow.Postgres, Count: 3, Failed: 3}, "none"},
		{flow.Requests{Protocol: flow.Redis, Count: 1, Latency: lat}, "ok"},
	} {
		if got := RequestClass(&tc.g); got != tc.want {
			t.Errorf("%+v: class %q, want %q", tc.g, got, tc.want)
		}
		if !slices.Contains(RequestClasses(tc.g.Protocol), tc.want) {
			t.Errorf("%s: RequestClasses lacks %q", tc.g.Protocol, tc.want)
		}
	}
	for _, p := range flow.L7Protocols {
		if n := len(RequestClasses(p)); n == 0 || n > MaxRequestClasses {
			t.Errorf("%s: %d classes, want 1 to %d", p, n, MaxRequestClasses)
		}
	}
}

// TestExternalNamedByDNS: a world address the client resolved shows as
// its name at every level that names it by address, one node for the
// name's two addresses; an address without a name stays an address.
func TestExternalNamedByDNS(t *testing.T) {
	s := New(Config{})
	end := t0.Add(5 * time.Second)
	s.Tick(end)
	var recs []flow.Record
	for i, dst := range []flow.Endpoint{
		{IP: netip.MustParseAddr("203.0.113.9"), Port: 443, Kind: flow.KindWorld, DNSName: "api.example.com"},
		{IP: netip.MustParseAddr("2001:db8::9"), Port: 443, Kind: flow.KindWorld, DNSName: "api.example.com"},
		{IP: netip.MustParseAddr("198.51.100.7"), Port: 443, Kind: flow.KindWorld},
		{IP: netip.MustParseAddr("192.0.2.1"), Port: 80, DNSName: "plain.example.com"}, // a plain host's peer
	} {
		c, _ := clientServer(end, uint16(42000+i))
		c.Destination = dst
		recs = append(recs, c)
	}
	s.Ingest(recs)
	for _, l := range []Level{LevelWorkload, LevelExternal, LevelPod} {
		nodes, _ := ids(query(t, s, l, 10*time.Second, end))
		var ext []string
		for _, n := range nodes {
			if len(n) > 9 && n[:9] == "external:" {
				ext = append(ext, n)
			}
		}
		want := []string{"external:198.51.100.7", "external:api.example.com", "external:plain.example.com"}
		if !reflect.DeepEqual(ext, want) {
			t.Errorf("%s: external nodes %v, want %v", l, ext, want)
		}
	}
	g := query(t, s, LevelExternal, 10*time.Second, end)
	for _, n := range g.Nodes {
		if n.ID == "external:api.example.com" && (n.Name != "api.example.com" || n.Kind != NodeExternal) {
			t.Errorf("node %+v, want named api.example.com, kind external", n)
		}
	}
	for _, e := range g.Edges {
		if e.Destination == "external:api.example.com" && e.ConnectionsOpened != 2 {
			t.Errorf("edge to the name: %d connections, want 2", e.ConnectionsOpened)
		}
	}
}
