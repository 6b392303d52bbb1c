package hub

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/history"
	"github.com/flowlens/flowlens/internal/publish"
	"github.com/flowlens/flowlens/internal/topology"
)

func openHub(t *testing.T, dir string) (*Hub, *history.DB) {
	t.Helper()
	db, err := history.Open(t.Context(), history.Config{Dir: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(t.Context(), Config{Publish: publish.Config{Join: true}}, db, nil)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return h, db
}

// connections returns n connections' two sides, client ports from first.
func connections(first, n int) (clients, servers []flow.Record) {
	for i := range n {
		c, s := viaService(t0.Add(time.Second), uint16(first+i))
		clients, servers = append(clients, c), append(servers, s)
	}
	return clients, servers
}

// A hub that stops without warning after acking batches, some checkpointed
// and some not, and one whose connection's other side is still to come,
// comes back with exactly the counts of a hub that never stopped: the
// checkpoint's, the log's after it, and the rest as it arrives; the batch
// whose ack was lost is recognised when it is resent.
func TestRestartLosesNothingAckedAndCountsNothingTwice(t *testing.T) {
	c1, s1 := connections(40000, 10)
	c2, s2 := connections(41000, 5)
	type step func(ctx context.Context, h *Hub)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	before := []step{
		func(ctx context.Context, h *Hub) { receive(t, h, agentA, 1, c1...) },
		func(ctx context.Context, h *Hub) { receive(t, h, agentB, 1, s1[:5]...) },
		func(ctx context.Context, h *Hub) { h.Tick(ctx, at(2)) },
	}
	// After the checkpoint, before the stop: a tick and a batch waiting.
	unsaved := []step{
		func(ctx context.Context, h *Hub) { receive(t, h, agentB, 2, s1[5:]...) },
		func(ctx context.Context, h *Hub) { h.Tick(ctx, at(3)) },
		func(ctx context.Context, h *Hub) { receive(t, h, agentA, 2, c2...) },
	}
	after := []step{
		func(ctx context.Context, h *Hub) { receive(t, h, agentA, 2, c2...) }, // its ack was lost
		func(ctx context.Context, h *Hub) { receive(t, h, agentB, 3, s2...) },
		func(ctx context.Context, h *Hub) { h.Tick(ctx, at(4)) },
		func(ctx context.Context, h *Hub) { h.Tick(ctx, at(5)) },
		func(ctx context.Context, h *Hub) { h.Tick(ctx, at(6)) },
	}
	run := func(h *Hub, steps []step) {
		for _, s := range steps {
			s(t.Context(), h)
		}
	}

	dir := t.TempDir()
	h, db := openHub(t, dir)
	run(h, before)
	if err := h.checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	run(h, unsaved)
	// Stopped without a last checkpoint: what the hub held in memory is gone.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	h, db = openHub(t, dir)
	defer db.Close()
	run(h, after)

	steady := newHub(t)
	run(steady, before)
	run(steady, unsaved)
	run(steady, after)

	for _, level := range []topology.Level{topology.LevelService, topology.LevelWorkload, topology.LevelPod} {
		got, want := graph(t, h, level, at(6)), graph(t, steady, level, at(6))
		if len(got.Edges) != 1 || len(want.Edges) != 1 {
			t.Fatalf("%s: %d edges after the restart, %d without; want 1", level, len(got.Edges), len(want.Edges))
		}
		g, w := got.Edges[0], want.Edges[0]
		if g.ConnectionsOpened != 15 || w.ConnectionsOpened != 15 || g != w {
			t.Errorf("%s: after the restart %+v\nwithout a restart %+v\nwant 15 connections in both", level, g, w)
		}
	}
	if as := h.Agents(); len(as) != 2 || as[0].ResentBatches != 1 || as[0].Sequence != 2 || as[1].Sequence != 3 {
		t.Errorf("agents after the restart: %+v", as)
	}
}

func graph(t *testing.T, h *Hub, level topology.Level, at time.Time) topology.Graph {
	t.Helper()
	g, err := h.Query(topology.Query{Level: level, Window: time.Minute, At: at})
	if err != nil {
		t.Fatal(err)
	}
	return g
}
