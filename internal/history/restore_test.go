package history

import (
	"context"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/topology"
)

func endpoint(ns, pod, workload, ip string, port uint16) flow.Endpoint {
	return flow.Endpoint{IP: netip.MustParseAddr(ip), Port: port, Kind: flow.KindPod, Namespace: ns, Pod: pod,
		Workload: &flow.Workload{Kind: "Deployment", Name: workload}, NodeName: "node-" + workload}
}

// sides returns connection i's client record (client → Service api) and
// its server's (the backend), ending at end. Connections to the refused
// backend fail; the RTT cycles through 100..500 µs.
func sides(i int, end time.Time) (client, server flow.Record) {
	port := uint16(40000 + i)
	cli := endpoint("shop", "client-1", "client", "10.244.1.10", port)
	cli.PID, cli.Command = 4711, "curl"
	dialed := endpoint("shop", "api-1", "api", "10.96.0.20", 80)
	dialed.Service = &flow.ServiceRef{Namespace: "shop", Name: "api"}
	backend := endpoint("shop", "api-1", "api", "10.244.2.20", 8080)
	backend.PID, backend.Command = 99, "api"
	rtt := uint32(100 * (i%5 + 1))
	client = flow.Record{Time: end, Start: end.Add(-time.Second), Node: "node-client", Observer: "client", Protocol: flow.TCP,
		Verdict: flow.VerdictClosed, ConnStart: end.Add(-500 * time.Millisecond), Source: cli, Destination: dialed,
		Opened: 1, Closed: 1, BytesToDst: 1000, BytesToSrc: 100, RetransToDst: 1, RTT: &flow.RTT{MinMicros: rtt, AvgMicros: rtt, MaxMicros: rtt}}
	if i%7 == 0 {
		client.Verdict, client.Opened, client.Closed, client.Refused, client.RTT = flow.VerdictRefused, 0, 0, 1, nil
	}
	src := cli
	src.PID, src.Command = 0, ""
	server = flow.Record{Time: end, Start: end.Add(-time.Second), Node: "node-api", Observer: "server", Protocol: flow.TCP,
		Verdict: flow.VerdictClosed, ConnStart: end.Add(-490 * time.Millisecond), Source: src, Destination: backend,
		Opened: 1, Closed: 1, BytesToDst: 1000, BytesToSrc: 100, RetransToSrc: 2, RTT: &flow.RTT{MinMicros: 90, AvgMicros: 90, MaxMicros: 90}}
	return client, server
}

// hub plays the hub's part: each second a tick, then a batch with
// connection i's client record and connection i-1's server record (so a
// connection's two sides straddle batches, and checkpoints), both logged
// before they are applied, and a checkpoint every 5 s.
type hub struct {
	db     *DB
	store  *topology.Store
	pos    uint64
	events []Event
	cp     Checkpoint // the last one
}

func (h *hub) second(t *testing.T, i int) {
	t.Helper()
	ctx := context.Background()
	now := t0.Add(time.Duration(i+1) * time.Second)
	c, _ := sides(i, now)
	_, s := sides(i-1, now.Add(-time.Second))
	b := []flow.Record{c}
	if i > 0 {
		b = append(b, s)
	}
	evs := []Event{{Pos: h.pos + 1, Time: now, Tick: true}, {Pos: h.pos + 2, Time: now, Agent: "a", Incarnation: 1, Seq: uint64(i + 1), Records: b}}
	h.pos += 2
	if err := h.db.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	h.events = append(h.events, evs...)
	h.store.Tick(now)
	h.store.Ingest(b)
	if (i+1)%5 == 0 {
		h.cp = Checkpoint{Pos: h.pos, Time: now, Edges: h.store.Dirty(), Flows: b}
		if err := h.db.Checkpoint(ctx, h.cp); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRestartRestoresTheTopology: after a restart, the buckets restored
// from the checkpoints and the log replayed (counting off up to the
// checkpoint, on after it) answer every query exactly as the store that
// never stopped.
func TestRestartRestoresTheTopology(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Dir: t.TempDir(), LogWindow: 5 * time.Second}
	h := &hub{db: open(t, cfg), store: topology.New(topology.Config{})}
	const seconds = 47 // the last checkpoint at 45: two seconds after it
	for i := range seconds {
		h.second(t, i)
	}
	if err := h.db.Close(); err != nil {
		t.Fatal(err)
	}

	db := open(t, cfg)
	restored := topology.New(topology.Config{})
	pos, err := db.Restore(ctx, restored)
	if err != nil {
		t.Fatal(err)
	}
	if pos != h.cp.Pos {
		t.Fatalf("restored the checkpoint at %d, want %d", pos, h.cp.Pos)
	}
	var replayed []Event
	if err := db.Replay(ctx, 0, func(e Event) error {
		replayed = append(replayed, e)
		restored.SetCounting(e.Pos > pos)
		if e.Tick {
			restored.Tick(e.Time)
		} else {
			restored.Ingest(e.Records)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	restored.SetCounting(true)
	// The log kept the events from 5 s before the checkpoint on: the
	// last trimmed was the batch at 39 s, pos 78.
	var want []Event
	for _, e := range h.events {
		if !e.Time.Before(h.cp.Time.Add(-cfg.LogWindow)) {
			want = append(want, e)
		}
	}
	if !reflect.DeepEqual(replayed, want) || replayed[0].Pos != 79 {
		t.Errorf("replayed %d events from %d, want %d from 79", len(replayed), replayed[0].Pos, len(want))
	}
	if st := db.Stats(); st.Events != int64(len(want)) {
		t.Errorf("the log holds %d events, want %d", st.Events, len(want))
	}

	// Both go on: the next seconds count identically.
	for i := seconds; i < seconds+3; i++ {
		now := t0.Add(time.Duration(i+1) * time.Second)
		c, _ := sides(i, now)
		_, s := sides(i-1, now.Add(-time.Second))
		for _, st := range []*topology.Store{h.store, restored} {
			st.Tick(now)
			st.Ingest([]flow.Record{c, s})
		}
	}
	end := t0.Add(time.Duration(seconds+3) * time.Second)
	for _, l := range topology.Levels {
		for _, w := range []time.Duration{10 * time.Second, 20 * time.Second, time.Minute, time.Hour} {
			for _, at := range []time.Time{t0.Add(10 * time.Second), t0.Add(40 * time.Second), end} {
				q := topology.Query{Level: l, Window: w, At: at}
				a, err1 := h.store.Query(q)
				b, err2 := restored.Query(q)
				if err1 != nil || err2 != nil || !reflect.DeepEqual(a, b) {
					t.Errorf("%+v: after the restart\n%+v\nwithout one\n%+v", q, b, a)
				}
			}
		}
	}
	// And the exact quantities: every connection counted once.
	g, err := restored.Query(topology.Query{Level: topology.LevelWorkload, Window: time.Minute, At: end})
	if err != nil || len(g.Edges) != 1 {
		t.Fatalf("%d edges (%v), want 1", len(g.Edges), err)
	}
	e := g.Edges[0]
	// 50 connections: 8 refused (i = 0, 7, ..., 49), 42 opened; the
	// client's 50 retransmits, and the servers' 2 each of the 49 whose
	// server record came; RTT 100..500 µs of the opened ones, p50 300
	// within 2%, p95 500 (its bin reads 503, above the exact max).
	if e.ConnectionsOpened != 42 || e.Failures.Refused != 8 || e.RetransmitsToDestination != 50 ||
		e.RetransmitsToSource != 2*49 || e.RTTSamples != 42 || e.RTTMax != 500 || e.RTTP50 != 299 || e.RTTP95 != 500 {
		t.Errorf("edge %+v", e)
	}
}
