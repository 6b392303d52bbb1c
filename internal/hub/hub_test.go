package hub

import (
	"errors"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/publish"
	"github.com/flowlens/flowlens/internal/topology"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func pod(ns, name, workload, ip, node string) flow.Endpoint {
	return flow.Endpoint{IP: netip.MustParseAddr(ip), Kind: flow.KindPod, Namespace: ns, Pod: name,
		Workload: &flow.Workload{Kind: "Deployment", Name: workload}, NodeName: node}
}

// viaService returns the two agents' records of one connection from a
// client pod on node-a through Service shop/api to a backend on node-b:
// the client's names only the Service, the server's names the backend.
func viaService(end time.Time, port uint16) (client, server flow.Record) {
	src := pod("shop", "web-1", "web", "10.244.1.10", "node-a")
	src.Port = port
	dialed := flow.Endpoint{IP: netip.MustParseAddr("10.96.0.20"), Port: 80, Kind: flow.KindService,
		Namespace: "shop", Service: &flow.ServiceRef{Namespace: "shop", Name: "api"}}
	client = flow.Record{Time: end, Start: end.Add(-time.Second), Node: "node-a", Observer: "client", Protocol: flow.TCP,
		Verdict: flow.VerdictClosed, ConnStart: end.Add(-500 * time.Millisecond), Source: src, Destination: dialed,
		Opened: 1, Closed: 1, BytesToDst: 100, BytesToSrc: 1000}
	backend := pod("shop", "api-1", "api", "10.244.2.20", "node-b")
	backend.Port = 8080
	seen := src
	seen.Kind, seen.Pod, seen.Workload = flow.KindPod, "web-1", &flow.Workload{Kind: "Deployment", Name: "web"}
	server = flow.Record{Time: end.Add(200 * time.Millisecond), Start: end.Add(-800 * time.Millisecond), Node: "node-b",
		Observer: "server", Protocol: flow.TCP, Verdict: flow.VerdictClosed, ConnStart: end.Add(-495 * time.Millisecond),
		Source: seen, Destination: backend, Opened: 1, Closed: 1, BytesToDst: 100, BytesToSrc: 1000}
	return client, server
}

var (
	agentA = Agent{ID: "node-a", Node: "node-a", Incarnation: 1}
	agentB = Agent{ID: "node-b", Node: "node-b", Incarnation: 7}
)

func newHub(t *testing.T) *Hub {
	t.Helper()
	h, err := New(t.Context(), Config{Publish: publish.Config{Join: true}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func receive(t *testing.T, h *Hub, a Agent, seq uint64, recs ...flow.Record) {
	t.Helper()
	if err := h.Receive(t.Context(), &Batch{Agent: a, Seq: seq, Records: recs}); err != nil {
		t.Fatalf("receive %s #%d: %v", a.ID, seq, err)
	}
}

func edges(t *testing.T, h *Hub, level topology.Level, at time.Time) map[string]uint64 {
	t.Helper()
	g, err := h.Query(topology.Query{Level: level, Window: time.Minute, At: at})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, e := range g.Edges {
		out[e.Source+" -> "+e.Destination] = e.ConnectionsOpened
	}
	return out
}

// Two agents each see one side of connections through a Service: the hub
// joins them (the client's record learns its backend) and counts each
// connection once, whichever agent's batch comes first.
func TestCrossNodeJoinCountsOnce(t *testing.T) {
	h := newHub(t)
	var clients, servers []flow.Record
	for i := range 10 {
		c, s := viaService(t0.Add(time.Second), uint16(40000+i))
		clients, servers = append(clients, c), append(servers, s)
	}
	// The server side arrives first for half, a tick later for the rest.
	receive(t, h, agentB, 1, servers[:5]...)
	receive(t, h, agentA, 1, clients...)
	h.Tick(t.Context(), t0.Add(2*time.Second))
	receive(t, h, agentB, 2, servers[5:]...)
	h.Tick(t.Context(), t0.Add(3*time.Second))
	h.Tick(t.Context(), t0.Add(4*time.Second))

	want := map[string]uint64{"workload:shop/Deployment/web -> service:shop/api": 10}
	if got := edges(t, h, topology.LevelService, t0.Add(4*time.Second)); !maps.Equal(got, want) {
		t.Errorf("service level: %v, want %v", got, want)
	}
	want = map[string]uint64{"workload:shop/Deployment/web -> workload:shop/Deployment/api": 10}
	if got := edges(t, h, topology.LevelWorkload, t0.Add(4*time.Second)); !maps.Equal(got, want) {
		t.Errorf("workload level: %v, want %v", got, want)
	}
	if s := h.Publish(); s.Join.Matched != 10 {
		t.Errorf("joined %d client records, want 10", s.Join.Matched)
	}
}

// A batch resent after a lost ack is acked and not counted again; an
// agent that restarted numbers its batches from 1 again and is heard.
func TestResendsAndRestartedAgents(t *testing.T) {
	h := newHub(t)
	c1, _ := viaService(t0.Add(time.Second), 40001)
	c2, _ := viaService(t0.Add(time.Second), 40002)
	c3, _ := viaService(t0.Add(time.Second), 40003)
	receive(t, h, agentA, 1, c1)
	receive(t, h, agentA, 2, c2)
	receive(t, h, agentA, 2, c2) // the ack was lost
	receive(t, h, agentA, 1, c1)
	restarted := agentA
	restarted.Incarnation = 2
	receive(t, h, restarted, 1, c3)
	for i := range 5 { // past the hold: nothing joins these
		h.Tick(t.Context(), t0.Add(time.Duration(2+i)*time.Second))
	}
	want := map[string]uint64{"workload:shop/Deployment/web -> service:shop/api": 3}
	if got := edges(t, h, topology.LevelService, t0.Add(6*time.Second)); !maps.Equal(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
	as := h.Agents()
	if len(as) != 1 || as[0].ResentBatches != 2 || as[0].Batches != 3 || as[0].Records != 3 || as[0].Sequence != 1 ||
		as[0].Incarnation != "0000000000000002" || !as[0].Connected {
		t.Errorf("agents %+v", as)
	}
	h.Disconnected(restarted, errors.New("stream reset"))
	if as := h.Agents(); as[0].Connected || as[0].LastError != "stream reset" {
		t.Errorf("after disconnect: %+v", as[0])
	}
}

// Past MaxPending records waiting for a tick, batches are refused (the
// agent keeps and resends them), never queued without bound.
func TestBusyRefusesInsteadOfGrowing(t *testing.T) {
	h, _ := New(t.Context(), Config{MaxPending: 3}, nil, nil)
	c, _ := viaService(t0.Add(time.Second), 40001)
	receive(t, h, agentA, 1, c, c)
	if err := h.Receive(t.Context(), &Batch{Agent: agentA, Seq: 2, Records: []flow.Record{c, c}}); !errors.Is(err, ErrBusy) {
		t.Fatalf("receive past the bound: %v, want ErrBusy", err)
	}
	h.Tick(t.Context(), t0.Add(2*time.Second))
	receive(t, h, agentA, 2, c, c)
	if s := h.Stats(); s.Busy != 1 || s.Batches != 2 || s.Records != 4 || s.Pending != 2 {
		t.Errorf("stats %+v", s)
	}
}

// The cap per source keeps a noisy source from turning the ring over; the
// topology (and so the edge metrics) counts every connection still.
func TestCapHoldsBackTheRingOnly(t *testing.T) {
	h, err := New(t.Context(), Config{MaxPerSource: 2}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []flow.Record
	for i := range 5 {
		c, _ := viaService(t0.Add(time.Second), uint16(40000+i))
		c.Source.CgroupID = 7
		recs = append(recs, c)
	}
	receive(t, h, agentA, 1, recs...)
	for i := range 5 {
		h.Tick(t.Context(), t0.Add(time.Duration(2+i)*time.Second))
	}
	if n := h.Ring().Len(); n != 2 {
		t.Errorf("ring holds %d records, want the cap's 2", n)
	}
	if got := edges(t, h, topology.LevelService, t0.Add(6*time.Second)); got["workload:shop/Deployment/web -> service:shop/api"] != 5 {
		t.Errorf("topology %v, want all 5 connections", got)
	}
	if s := h.Stats(); s.Capped != 3 {
		t.Errorf("capped %d, want 3", s.Capped)
	}
}
