package hub

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
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
		if g.ConnectionsOpened != 15 || w.ConnectionsOpened != 15 || !reflect.DeepEqual(g, w) {
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

// Agents arriving together share one append to the log, and each batch is
// counted once; a batch the log refused is refused to its agent, and its
// resend is tried again rather than taken for one already stored.
func TestLogAppendsAreSharedAndFailuresRefused(t *testing.T) {
	h, db := openHub(t, t.TempDir())
	const agents, batches = 40, 3
	var wg sync.WaitGroup
	for i := range agents {
		a := Agent{ID: fmt.Sprintf("node-%02d", i), Incarnation: uint64(i + 1)}
		wg.Go(func() {
			for seq := range uint64(batches) {
				c, _ := viaService(t0.Add(time.Second), uint16(40000+i*batches+int(seq)))
				if err := h.Receive(t.Context(), &Batch{Agent: a, Seq: seq + 1, Records: []flow.Record{c}}); err != nil {
					t.Errorf("%s #%d: %v", a.ID, seq+1, err)
				}
			}
		})
	}
	wg.Wait()
	for i := range 5 {
		h.Tick(t.Context(), t0.Add(time.Duration(2+i)*time.Second))
	}
	if got := graph(t, h, topology.LevelService, t0.Add(6*time.Second)); len(got.Edges) != 1 || got.Edges[0].ConnectionsOpened != agents*batches {
		t.Fatalf("edges %+v, want one of %d connections", got.Edges, agents*batches)
	}
	s := h.Stats()
	if s.Batches != agents*batches || s.LogAppends >= agents*batches+5 {
		t.Errorf("%d batches counted in %d appends (with 5 ticks), want %d in fewer", s.Batches, s.LogAppends, agents*batches)
	}
	t.Logf("%d batches and 5 ticks in %d appends", s.Batches, s.LogAppends)

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	late := Agent{ID: "node-late", Incarnation: 1}
	c, _ := viaService(t0.Add(time.Second), 50000)
	for try := range 2 {
		if err := h.Receive(t.Context(), &Batch{Agent: late, Seq: 1, Records: []flow.Record{c}}); err == nil {
			t.Fatalf("try %d: a batch the log could not take was acked", try+1)
		}
	}
	if s := h.Stats(); s.LogErrors != 2 || s.Resent != 0 {
		t.Errorf("log errors %d, resent %d: want 2 refusals and no batch taken for stored", s.LogErrors, s.Resent)
	}
}

// A hub stopped while it logs a tick (its context ends in the append)
// still saves its last checkpoint, at the log's end: the tick's records are
// those of batches logged before it, which a replay would give to the next
// tick. Restarted, it counts each connection once.
func TestTickTheLogRefusedStillCheckpoints(t *testing.T) {
	dir := t.TempDir()
	h, db := openHub(t, dir)
	c, s := connections(40000, 3)
	receive(t, h, agentA, 1, c...)
	receive(t, h, agentB, 1, s...)
	stopping, stop := context.WithCancel(t.Context())
	stop()
	h.Tick(stopping, t0.Add(2*time.Second))
	if err := h.checkpoint(t.Context()); err != nil {
		t.Fatalf("the last checkpoint after a tick the log refused: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	h, db = openHub(t, dir)
	defer db.Close()
	h.Tick(t.Context(), t0.Add(3*time.Second))
	got := graph(t, h, topology.LevelService, t0.Add(3*time.Second))
	if len(got.Edges) != 1 || got.Edges[0].ConnectionsOpened != 3 {
		t.Errorf("after the restart: edges %+v, want one of 3 connections", got.Edges)
	}
}
