package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/ring"
	"github.com/flowlens/flowlens/internal/topology"
)

// seriesCall is what fakeTopology.Series was asked.
type seriesCall struct {
	q    topology.Query
	step time.Duration
	ids  []string
}

var fakeSeriesCalls []seriesCall

func (f *fakeTopology) Series(q topology.Query, step time.Duration, ids []string) (topology.Series, error) {
	f.queries = append(f.queries, q)
	fakeSeriesCalls = append(fakeSeriesCalls, seriesCall{q, step, ids})
	return topology.Series{Level: q.Level, Edges: []topology.EdgeSeries{}}, nil
}

func getPath(t *testing.T, s *Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(newTestServer(t, s) + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

const (
	edgeA = "0123456789abcdef"
	edgeB = "fedcba9876543210"
)

func TestSeriesRejectsBadParameters(t *testing.T) {
	for _, c := range []struct {
		query, want string
		reason      string
	}{
		{"edge=" + edgeA + "&since=2026-11-29T20:00:00Z", `unknown query parameter "since"`, "unknown_parameter"},
		{"edge=" + edgeA + "&stepp=10s", `unknown query parameter "stepp"`, "unknown_parameter"},
		{"", "edge given 0 times: want 1 to 64 edge ids", "invalid_parameter"},
		{"edge=" + strings.Repeat("&edge="+edgeA, 65)[6:], "edge given 65 times: want 1 to 64 edge ids", "invalid_parameter"},
		{"edge=0123456789ABCDEF", `edge="0123456789ABCDEF": want an edge id, 16 hex digits`, "invalid_parameter"},
		{"edge=" + edgeA + "0", `want an edge id, 16 hex digits`, "invalid_parameter"},
		{"edge=" + edgeA + "&step=soon", `step="soon": want a positive duration, e.g. 30s`, "invalid_parameter"},
		{"edge=" + edgeA + "&step=-10s", `step="-10s": want a positive duration`, "invalid_parameter"},
		{"edge=" + edgeA + "&step=10s&step=20s", "step given 2 times", "invalid_parameter"},
		{"edge=" + edgeA + "&level=cluster", `unknown level "cluster"`, "invalid_parameter"},
		{"edge=" + edgeA + "&window=5s", `window "5s": want from 10s to 24h0m0s`, "invalid_parameter"},
		{"edge=" + edgeA + "&at=yesterday", `at="yesterday": want an RFC 3339 time`, "invalid_parameter"},
	} {
		t.Run(c.query[:min(len(c.query), 40)], func(t *testing.T) {
			fake := &fakeTopology{}
			s := newServer(ring.New(1), testLimits)
			s.SetTopology(fake)
			code, body := getPath(t, s, "/api/v1/topology/series?"+c.query)
			if code != http.StatusBadRequest || !strings.Contains(body, c.want) {
				t.Fatalf("%s: got %d %q, want 400 with %q", c.query, code, body, c.want)
			}
			if len(fake.queries) != 0 {
				t.Fatalf("%s: the store was asked %d times, want 0", c.query, len(fake.queries))
			}
			if got := s.Stats().Rejected[c.reason]; got != 1 {
				t.Fatalf("%s: rejected[%s] = %d, want 1", c.query, c.reason, got)
			}
		})
	}
}

func TestSeriesPassesTheQuery(t *testing.T) {
	fakeSeriesCalls = nil
	fake := &fakeTopology{}
	s := newServer(ring.New(1), testLimits)
	s.SetTopology(fake)
	q := url.Values{"level": {"pod"}, "window": {"5m"}, "at": {"2026-11-29T20:00:05Z"}, "namespace": {"shop"}, "step": {"30s"}, "edge": {edgeA, edgeB}}
	if code, body := getPath(t, s, "/api/v1/topology/series?"+q.Encode()); code != http.StatusOK {
		t.Fatalf("got %d %q", code, body)
	}
	if code, body := getPath(t, s, "/api/v1/topology/series?edge="+edgeB); code != http.StatusOK {
		t.Fatalf("got %d %q", code, body)
	}
	want := seriesCall{topology.Query{Level: topology.LevelPod, Window: 5 * time.Minute, At: time.Date(2026, 11, 29, 20, 0, 5, 0, time.UTC), Namespace: "shop"},
		30 * time.Second, []string{edgeA, edgeB}}
	if len(fakeSeriesCalls) != 2 || fakeSeriesCalls[0].q != want.q || fakeSeriesCalls[0].step != want.step || !slices.Equal(fakeSeriesCalls[0].ids, want.ids) {
		t.Fatalf("asked %+v, want first %+v", fakeSeriesCalls, want)
	}
	if c := fakeSeriesCalls[1]; c.q.Level != DefaultTopologyLevel || c.q.Window != DefaultTopologyWindow || c.step != 0 || !slices.Equal(c.ids, []string{edgeB}) {
		t.Fatalf("defaults: asked %+v", c)
	}
}

// hostRecords are a plain host's records of one connection from curl at
// 10.0.0.2 to nginx at 10.0.0.1: the client's knows the server by its
// address only, the server's knows its own process. Then a refused
// connect to 10.0.0.1:81, which names nobody there.
func hostRecords(end time.Time) (client, server, refused flow.Record) {
	cli := flow.Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Port: 40000, PID: 7, Command: "curl"}
	srv := flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), Port: 80}
	client = flow.Record{Time: end, Node: "host-1", Observer: "client", Protocol: flow.TCP, Verdict: flow.VerdictClosed,
		ConnStart: end.Add(-time.Second), Source: cli, Destination: srv, Opened: 1, Closed: 1}
	server = client
	server.Observer = "server"
	server.Source = flow.Endpoint{IP: cli.IP, Port: cli.Port}
	server.Destination = flow.Endpoint{IP: srv.IP, Port: 80, PID: 9, Command: "nginx"}
	refused = client
	refused.Time = end.Add(time.Second)
	refused.Verdict, refused.Opened, refused.Closed, refused.Refused = flow.VerdictRefused, 0, 0, 1
	refused.Destination.Port = 81
	return client, server, refused
}

func resolve(t *testing.T, s *Server, query string) (int, Resolved, string) {
	t.Helper()
	code, body := getPath(t, s, "/api/v1/topology/resolve?"+query)
	var r Resolved
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("decode %q: %v", body, err)
		}
	}
	return code, r, body
}

func TestResolve(t *testing.T) {
	end := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	client, server, refused := hostRecords(end)
	r := ring.New(64)
	s := newServer(r, testLimits)
	s.SetTopology(topology.New(topology.Config{}))

	if code, _, body := resolve(t, s, "ip=10.0.0.1"); code != http.StatusNotFound || !strings.Contains(body, "no flow the agent holds carries 10.0.0.1") {
		t.Fatalf("empty ring: %d %q, want 404", code, body)
	}
	// Only the refused connect: the address names nothing but itself.
	r.Write([]flow.Record{refused})
	if code, got, body := resolve(t, s, "ip=10.0.0.1&level=process"); code != http.StatusOK || got.Node.ID != "external:10.0.0.1" || got.Side != "destination" {
		t.Fatalf("refused only: %d %q", code, body)
	}
	// The server's record names its process; newer records naming the
	// address only (the client's, another refused connect) do not hide it.
	later := refused
	later.Time = end.Add(5 * time.Second)
	r.Write([]flow.Record{server, client, later})
	for _, c := range []struct{ query, id, side string }{
		{"ip=10.0.0.1&level=process", "process:host-1/nginx", "destination"},
		{"ip=10.0.0.1&level=node", "node:host-1", "destination"},
		{"ip=10.0.0.2&level=process", "process:host-1/curl", "source"},
		{"ip=::ffff:10.0.0.2&level=process", "process:host-1/curl", "source"},
		{"ip=10.0.0.2", "process:host-1/curl", "source"}, // workload: a plain host's processes
	} {
		code, got, body := resolve(t, s, c.query)
		if code != http.StatusOK || got.Node.ID != c.id || got.Side != c.side || got.IP != netip.MustParseAddr(strings.TrimPrefix(strings.Split(c.query, "&")[0], "ip=")).Unmap() {
			t.Errorf("%s: %d %q, want %s as %s", c.query, code, body, c.id, c.side)
		}
		// It is the node the topology has for those records.
		store := topology.New(topology.Config{})
		store.Tick(end)
		store.Ingest([]flow.Record{client, server})
		g, err := store.Query(topology.Query{Level: got.Level, Window: 10 * time.Second, At: end})
		if err != nil || !slices.Contains(g.Nodes, got.Node) {
			t.Errorf("%s: node %+v not in the graph %+v (%v)", c.query, got.Node, g.Nodes, err)
		}
	}
	if code, _, _ := resolve(t, s, "ip=10.0.0.9"); code != http.StatusNotFound {
		t.Errorf("an address no flow carries: %d, want 404", code)
	}
	for _, c := range []struct{ query, want string }{
		{"ip=10.0.0", `ip="10.0.0": want an IP address`},
		{"", `ip="": want an IP address`},
		{"ip=10.0.0.1&ip=10.0.0.2", "ip given 2 times"},
		{"ip=10.0.0.1&level=galaxy", `unknown level "galaxy"`},
		{"ip=10.0.0.1&window=1m", `unknown query parameter "window"`},
	} {
		if code, _, body := resolve(t, s, c.query); code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %q, want 400 with %q", c.query, code, body, c.want)
		}
	}
}

// The store's own series over HTTP: the figures of a real store's edge.
func TestSeriesFromAStore(t *testing.T) {
	end := time.Date(2026, 11, 29, 20, 0, 5, 0, time.UTC)
	client, server, _ := hostRecords(end)
	store := topology.New(topology.Config{})
	store.Tick(end)
	store.Ingest([]flow.Record{client, server})
	s := newServer(ring.New(1), testLimits)
	s.SetTopology(store)
	id := topology.EdgeID("process:host-1/curl", "process:host-1/nginx")
	q := url.Values{"level": {"process"}, "window": {"30s"}, "at": {"2026-11-29T20:00:10Z"}, "edge": {id}}
	code, body := getPath(t, s, "/api/v1/topology/series?"+q.Encode())
	var ser topology.Series
	if code != http.StatusOK || json.Unmarshal([]byte(body), &ser) != nil {
		t.Fatalf("got %d %q", code, body)
	}
	if ser.Points != 3 || ser.StepSeconds != 10 || len(ser.Edges) != 1 || ser.Edges[0].ID != id || !slices.Equal(ser.Edges[0].ConnectionsOpened, []uint64{0, 0, 1}) {
		t.Errorf("series %s", body)
	}
	q.Set("step", "20s")
	if code, body := getPath(t, s, "/api/v1/topology/series?"+q.Encode()); code != http.StatusBadRequest || !strings.Contains(body, "step 20s: does not divide the window 30s") {
		t.Errorf("a step the window cannot be cut in: %d %q, want 400", code, body)
	}
}

func FuzzParseSeriesRequest(f *testing.F) {
	for _, q := range []string{"edge=" + edgeA + "&step=30s&window=5m", "edge=" + edgeA + "&edge=" + edgeB + "&level=pod", "step=%zz", "edge=x&step=1h"} {
		f.Add(q)
	}
	now := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, rej := parseSeriesRequest(q, now)
		if rej != nil {
			if rej.status != http.StatusBadRequest || rej.msg == "" {
				t.Fatalf("%q: rejection %+v", raw, rej)
			}
			return
		}
		if req.query.Window < topology.MinWindow || req.query.Window > topology.MaxWindow || req.step < 0 {
			t.Fatalf("%q: window %s step %s accepted", raw, req.query.Window, req.step)
		}
		if len(req.edges) == 0 || len(req.edges) > topology.MaxSeriesEdges {
			t.Fatalf("%q: %d edges accepted", raw, len(req.edges))
		}
		for _, id := range req.edges {
			if len(id) != 16 {
				t.Fatalf("%q: edge %q accepted", raw, id)
			}
		}
	})
}

func FuzzParseResolveRequest(f *testing.F) {
	for _, q := range []string{"ip=10.0.0.1", "ip=::ffff:10.0.0.1&level=pod", "ip=fe80::1%25eth0", "level=x"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		level, ip, rej := parseResolveRequest(q)
		if rej != nil {
			if rej.status != http.StatusBadRequest || rej.msg == "" {
				t.Fatalf("%q: rejection %+v", raw, rej)
			}
			return
		}
		if _, err := topology.ParseLevel(string(level)); err != nil || !ip.IsValid() || ip.Is4In6() {
			t.Fatalf("%q: level %q ip %v accepted", raw, level, ip)
		}
	})
}
