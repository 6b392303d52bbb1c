package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/ring"
	"github.com/flowlens/flowlens/internal/server"
	"github.com/flowlens/flowlens/internal/topology"
)

func TestTopologyQueryFlags(t *testing.T) {
	now := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		level, window, since, ns string
		want                     url.Values
		err                      string
	}{
		{level: "process", window: "1m", want: url.Values{"level": {"process"}, "window": {"1m"}}},
		{level: "workload", window: "5m", since: "10m", ns: "shop",
			want: url.Values{"level": {"workload"}, "window": {"5m"}, "since": {"2026-11-29T19:50:00Z"}, "namespace": {"shop"}}},
		{level: "node", window: "10s", since: "2026-11-29T21:00:00+01:00",
			want: url.Values{"level": {"node"}, "window": {"10s"}, "since": {"2026-11-29T20:00:00Z"}}},
		{level: "cluster", window: "1m", err: `--level: unknown level "cluster"`},
		{level: "pod", window: "1s", err: `--window: window "1s": want from 10s to 24h0m0s`},
		{level: "pod", window: "1m", since: "-5m", err: `--since "-5m": want an RFC 3339 time or a positive duration`},
		{level: "pod", window: "1m", since: "yesterday", err: `--since "yesterday": want an RFC 3339 time or a positive duration`},
	} {
		got, err := topologyQuery(c.level, c.window, c.since, c.ns, now)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%+v: error %v, want %q", c, err, c.err)
			}
			continue
		}
		if err != nil || got.Encode() != c.want.Encode() {
			t.Errorf("%+v: %v %v, want %v", c, got, err, c.want)
		}
	}
}

// topologyAPI serves a store holding one connection seen from both sides,
// its client process named with a terminal escape.
func topologyAPI(t *testing.T) string {
	t.Helper()
	now := time.Now()
	store := topology.New(topology.Config{})
	store.Tick(now)
	start := now.Add(-time.Second)
	client := flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), Port: 40000, PID: 7, Command: "evil\x1b[31m"}
	srv := flow.Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Port: 80, PID: 8, Command: "nginx"}
	base := flow.Record{Time: now, Node: "host-1", Protocol: flow.TCP, Verdict: flow.VerdictClosed, ConnStart: start,
		Opened: 1, Closed: 1, BytesToDst: 100, BytesToSrc: 2000}
	c, s := base, base
	c.Observer, c.Source, c.Destination = "client", client, flow.Endpoint{IP: srv.IP, Port: srv.Port}
	s.Observer, s.Source, s.Destination = "server", flow.Endpoint{IP: client.IP, Port: client.Port}, srv
	store.Ingest([]flow.Record{c, s})

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	api := server.New(ring.New(1), prometheus.NewRegistry(), func() error { return nil }, log, server.DefaultConfig().Limits)
	api.SetTopology(store) // one request at a time: no lock needed here
	ts := httptest.NewServer(api.Handler())
	t.Cleanup(ts.Close)
	return strings.TrimPrefix(ts.URL, "http://")
}

func runTopology(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newTopologyCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestTopologyTable(t *testing.T) {
	addr := topologyAPI(t)
	out, err := runTopology(t, "--server", addr, "--level", "process")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], ": 2 nodes, 1 edges") {
		t.Fatalf("got\n%s\nwant a title, a header and one edge", out)
	}
	want := []string{`process:host-1/evil\x1b[31m`, "process:host-1/nginx", "1", "1", "0", "0/0", "100", "2000", "-"}
	if got := strings.Fields(lines[2]); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("edge row %q, want fields %q", lines[2], want)
	}
	if strings.Contains(out, "\x1b") {
		t.Fatalf("a terminal escape reached the output: %q", out)
	}
}

func TestTopologyJSONAndDiff(t *testing.T) {
	addr := topologyAPI(t)
	out, err := runTopology(t, "--server", addr, "--level", "process", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"connections_opened":1,`) || !strings.Contains(out, `"source":"process:host-1/evil\u001b[31m"`) {
		t.Fatalf("json %s", out)
	}
	out, err = runTopology(t, "--server", addr, "--level", "process", "--since", "2m")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "edges +1 -0 ~0 (by a factor of 2)") || !strings.Contains(out, "appeared  process:host-1/evil") ||
		!strings.Contains(out, "node appeared  process:host-1/nginx") {
		t.Fatalf("diff\n%s", out)
	}
}

func TestTopologyServerRefusal(t *testing.T) {
	addr := topologyAPI(t)
	_, err := runTopology(t, "--server", addr, "--window", "15s")
	if want := "flowlens answered 400 Bad Request: window 15s: want a multiple of the resolution 10s"; err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
}

// drawnGraph has a namespace of two workloads, a process whose name holds a
// quote, a backslash and a terminal escape, and an address.
func drawnGraph() *topology.Graph {
	start := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	return &topology.Graph{Level: topology.LevelWorkload, WindowStart: start, WindowEnd: start.Add(time.Minute), WindowSeconds: 60,
		Nodes: []topology.Node{
			{ID: "external:203.0.113.9", Kind: topology.NodeExternal, Name: "203.0.113.9"},
			{ID: `process:host-1/ev"il\x` + "\x1b", Kind: topology.NodeProcess, Name: `host-1/ev"il\x` + "\x1b"},
			{ID: "workload:shop/Deployment/api", Kind: topology.NodeWorkload, Namespace: "shop", Name: "Deployment/api"},
			{ID: "workload:shop/Deployment/client", Kind: topology.NodeWorkload, Namespace: "shop", Name: "Deployment/client"},
		},
		Edges: []topology.Edge{
			{ID: "1", Source: "workload:shop/Deployment/client", Destination: "workload:shop/Deployment/api",
				ConnectionsOpened: 20, Failures: topology.Failures{Refused: 2, Reset: 1}},
			{ID: "2", Source: `process:host-1/ev"il\x` + "\x1b", Destination: "external:203.0.113.9", ConnectionsOpened: 1},
		}}
}

func TestTopologyDot(t *testing.T) {
	var out bytes.Buffer
	if err := printDot(&out, drawnGraph()); err != nil {
		t.Fatal(err)
	}
	want := `digraph flowlens {
	label="workload level, 2026-11-29T20:00:00Z to 2026-11-29T20:01:00Z";
	rankdir=LR;
	node [shape=box];
	"external:203.0.113.9" [label="203.0.113.9"];
	"process:host-1/ev\"il\\x\\x1b" [label="host-1/ev\"il\\x\\x1b"];
	subgraph "cluster_shop" {
		label="shop";
		"workload:shop/Deployment/api" [label="Deployment/api"];
		"workload:shop/Deployment/client" [label="Deployment/client"];
	}
	"workload:shop/Deployment/client" -> "workload:shop/Deployment/api" [label="20 opened, 3 failed"];
	"process:host-1/ev\"il\\x\\x1b" -> "external:203.0.113.9" [label="1 opened, 0 failed"];
}
`
	if out.String() != want {
		t.Errorf("dot:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestTopologyMermaid(t *testing.T) {
	var out bytes.Buffer
	if err := printMermaid(&out, drawnGraph()); err != nil {
		t.Fatal(err)
	}
	want := `flowchart LR
  n0["203.0.113.9"]
  n1["host-1/ev#quot;il\x\x1b"]
  subgraph s1["shop"]
    n2["Deployment/api"]
    n3["Deployment/client"]
  end
  n3 -->|"20 opened, 3 failed"| n2
  n1 -->|"1 opened, 0 failed"| n0
`
	if out.String() != want {
		t.Errorf("mermaid:\n%s\nwant:\n%s", out.String(), want)
	}
	g := drawnGraph()
	g.Edges[0].Destination = "workload:shop/Deployment/gone"
	if err := printMermaid(io.Discard, g); err == nil || !strings.Contains(err.Error(), "names a node the graph does not list") {
		t.Errorf("an edge to an unlisted node: %v", err)
	}
}

// The command draws what the API answers, and refuses to draw a diff.
func TestTopologyDrawCommand(t *testing.T) {
	addr := topologyAPI(t)
	out, err := runTopology(t, "--server", addr, "--level", "process", "-o", "mermaid")
	if err != nil {
		t.Fatal(err)
	}
	if want := `  n0 -->|"1 opened, 0 failed"| n1` + "\n"; !strings.HasSuffix(out, want) || !strings.Contains(out, `n0["host-1/evil\x1b[31m"]`) {
		t.Errorf("mermaid\n%s\nwant an edge n0 -> n1 from the escaped evil process", out)
	}
	out, err = runTopology(t, "--server", addr, "--level", "process", "-o", "dot")
	if err != nil {
		t.Fatal(err)
	}
	if want := `	"process:host-1/evil\\x1b[31m" -> "process:host-1/nginx" [label="1 opened, 0 failed"];`; !strings.Contains(out, want+"\n") {
		t.Errorf("dot\n%s\nwant the line %s", out, want)
	}
	for _, o := range []string{"dot", "mermaid"} {
		_, err := runTopology(t, "--server", addr, "-o", o, "--since", "5m")
		if want := "-o " + o + " draws a window's graph, not a diff: with --since use table or json"; err == nil || err.Error() != want {
			t.Errorf("-o %s --since: %v, want %q", o, err, want)
		}
	}
	if _, err := runTopology(t, "--server", addr, "-o", "svg"); err == nil || err.Error() != `unknown output "svg": want table, json, dot or mermaid` {
		t.Errorf("-o svg: %v", err)
	}
}
