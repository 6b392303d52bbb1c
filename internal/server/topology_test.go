package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/ring"
	"github.com/flowlens/flowlens/internal/topology"
)

// fakeTopology records what it was asked.
type fakeTopology struct {
	queries []topology.Query
	sinces  []time.Time
	factors []float64
}

func (f *fakeTopology) Query(q topology.Query) (topology.Graph, error) {
	f.queries = append(f.queries, q)
	return topology.Graph{Level: q.Level, Nodes: []topology.Node{}, Edges: []topology.Edge{}}, nil
}

func (f *fakeTopology) Diff(q topology.Query, since time.Time, factor float64) (topology.Diff, error) {
	f.queries, f.sinces, f.factors = append(f.queries, q), append(f.sinces, since), append(f.factors, factor)
	return topology.Diff{Level: q.Level, Since: since, Factor: factor}, nil
}

func getTopology(t *testing.T, s *Server, query string) (int, string) {
	t.Helper()
	srv := newTestServer(t, s)
	resp, err := http.Get(srv + "/api/v1/topology?" + query)
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

func newTestServer(t *testing.T, s *Server) string {
	t.Helper()
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestTopologyRejectsBadParameters(t *testing.T) {
	for _, c := range []struct {
		query, want string
		reason      string
	}{
		{"levle=pod", `unknown query parameter "levle"`, "unknown_parameter"},
		{"level=cluster", `unknown level "cluster"`, "invalid_parameter"},
		{"level=pod&level=node", "level given 2 times", "invalid_parameter"},
		{"window=5s", `window "5s": want from 10s to 24h0m0s`, "invalid_parameter"},
		{"window=25h", `window "25h": want from 10s to 24h0m0s`, "invalid_parameter"},
		{"window=abc", `window "abc": time: invalid duration`, "invalid_parameter"},
		{"at=yesterday", `at="yesterday": want an RFC 3339 time`, "invalid_parameter"},
		{"since=2026-13-01T00:00:00Z", `since="2026-13-01T00:00:00Z": want an RFC 3339 time`, "invalid_parameter"},
		{"at=2026-11-29T20:00:00Z&since=2026-11-29T20:00:00Z", "want a time before at (2026-11-29T20:00:00Z)", "invalid_parameter"},
		{"namespace=" + strings.Repeat("n", 64), "namespace: 64 characters, a namespace has at most 63", "invalid_parameter"},
	} {
		t.Run(c.query[:min(len(c.query), 30)], func(t *testing.T) {
			fake := &fakeTopology{}
			s := newServer(ring.New(1), testLimits)
			s.SetTopology(fake)
			code, body := getTopology(t, s, c.query)
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

func TestTopologyPassesTheQuery(t *testing.T) {
	fake := &fakeTopology{}
	s := newServer(ring.New(1), testLimits)
	s.SetTopology(fake)

	code, body := getTopology(t, s, url.Values{"level": {"process"}, "window": {"30s"}, "at": {"2026-11-29T20:00:05Z"}, "namespace": {"shop"}}.Encode())
	if code != http.StatusOK {
		t.Fatalf("got %d %q", code, body)
	}
	var g topology.Graph
	if err := json.Unmarshal([]byte(body), &g); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	want := topology.Query{Level: topology.LevelProcess, Window: 30 * time.Second, At: time.Date(2026, 11, 29, 20, 0, 5, 0, time.UTC), Namespace: "shop"}
	if len(fake.queries) != 1 || fake.queries[0] != want || g.Level != topology.LevelProcess {
		t.Fatalf("asked %+v (graph level %q), want one query %+v", fake.queries, g.Level, want)
	}

	code, body = getTopology(t, s, "since=2026-11-29T19:00:00Z&at=2026-11-29T20:00:00Z")
	if code != http.StatusOK {
		t.Fatalf("got %d %q", code, body)
	}
	var d topology.Diff
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	want = topology.Query{Level: DefaultTopologyLevel, Window: DefaultTopologyWindow, At: time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)}
	since := time.Date(2026, 11, 29, 19, 0, 0, 0, time.UTC)
	if len(fake.queries) != 2 || fake.queries[1] != want || fake.sinces[0] != since || fake.factors[0] != DiffFactor || !d.Since.Equal(since) {
		t.Fatalf("asked %+v since %v factor %v, want %+v since %v factor %v", fake.queries, fake.sinces, fake.factors, want, since, DiffFactor)
	}
}

// Without parameters: the default level and window, ending now.
func TestTopologyDefaults(t *testing.T) {
	fake := &fakeTopology{}
	s := newServer(ring.New(1), testLimits)
	s.SetTopology(fake)
	before := time.Now()
	if code, body := getTopology(t, s, ""); code != http.StatusOK {
		t.Fatalf("got %d %q", code, body)
	}
	after := time.Now()
	if len(fake.queries) != 1 {
		t.Fatalf("asked %d times, want 1", len(fake.queries))
	}
	q := fake.queries[0]
	if q.Level != topology.LevelWorkload || q.Window != time.Minute || q.Namespace != "" || q.At.Before(before) || q.At.After(after) {
		t.Fatalf("asked %+v, want level workload, window 1m, at between %v and %v", q, before, after)
	}
}

// The store's own refusals (a window its resolution does not divide) are
// the request's fault: 400, not 500.
func TestTopologyStoreRefusalIsBadRequest(t *testing.T) {
	s := newServer(ring.New(1), testLimits)
	s.SetTopology(topology.New(topology.Config{}))
	code, body := getTopology(t, s, "window=15s")
	if want := "window 15s: want a multiple of the resolution 10s"; code != http.StatusBadRequest || !strings.Contains(body, want) {
		t.Fatalf("got %d %q, want 400 with %q", code, body, want)
	}
}

func TestTopologyNotServedWithoutAStore(t *testing.T) {
	s := newServer(ring.New(1), testLimits)
	code, _ := getTopology(t, s, "")
	if code != http.StatusNotFound {
		t.Fatalf("got %d, want 404", code)
	}
}

func FuzzParseTopologyRequest(f *testing.F) {
	for _, q := range []string{"level=pod&window=1m", "at=2026-11-29T20:00:00Z&since=2026-11-29T19:00:00Z", "window=%zz", "namespace=a&namespace=b"} {
		f.Add(q)
	}
	now := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, rej := parseTopologyRequest(q, now)
		if rej != nil {
			if rej.status != http.StatusBadRequest || rej.msg == "" {
				t.Fatalf("%q: rejection %+v", raw, rej)
			}
			return
		}
		if req.query.Window < topology.MinWindow || req.query.Window > topology.MaxWindow {
			t.Fatalf("%q: window %s accepted", raw, req.query.Window)
		}
		if _, err := topology.ParseLevel(string(req.query.Level)); err != nil {
			t.Fatalf("%q: level %q accepted", raw, req.query.Level)
		}
		if !req.since.IsZero() && !req.since.Before(req.query.At) {
			t.Fatalf("%q: since %v not before at %v", raw, req.since, req.query.At)
		}
	})
}
