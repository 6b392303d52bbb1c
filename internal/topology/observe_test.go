package topology

import (
	"maps"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// The observer sees each record once, whole on the counted side and for
// its retransmits on the other, named as the graph names the edge.
func TestObserveSeesWhatIsCounted(t *testing.T) {
	type seen struct {
		observer, src, dst string
		whole              bool
	}
	var got []seen
	s := New(Config{Observe: func(r *flow.Record, e EdgeRef, whole bool) {
		src, dst := e.Names(LevelWorkload)
		got = append(got, seen{r.Observer, src.ID, dst.ID, whole})
	}})
	c, srv := clientServer(t0.Add(5*time.Second), 43122)
	s.Tick(t0.Add(6 * time.Second))
	s.Ingest([]flow.Record{srv, c})
	want := []seen{
		{"client", "workload:shop/Deployment/client", "workload:shop/Deployment/api", true},
		{"server", "workload:shop/Deployment/client", "workload:shop/Deployment/api", false},
	}
	if len(got) != len(want) {
		t.Fatalf("observed %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("observation %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// A store that learnt the first batches without counting them, then
// counts, holds exactly what a store that counted throughout holds, less
// what the first batches counted: the hub's replay after a restart.
func TestLearningThenCountingDoesNotCountTwice(t *testing.T) {
	// Batch i holds connection i's client record and connection i-1's
	// server record: a replay that begins between a connection's two
	// sides must still recognise the second.
	var batches [][]flow.Record
	for i := range 5 {
		var b []flow.Record
		if i < 4 {
			c, _ := clientServer(t0.Add(time.Duration(i+1)*time.Second), uint16(40000+i))
			b = append(b, c)
		}
		if i > 0 {
			_, srv := clientServer(t0.Add(time.Duration(i)*time.Second), uint16(40000+i-1))
			b = append(b, srv)
		}
		batches = append(batches, b)
	}

	run := func(learnFirst int) Edge {
		s := New(Config{})
		for i, b := range batches {
			s.SetCounting(i >= learnFirst)
			s.Tick(t0.Add(time.Duration(i+1) * time.Second))
			s.Ingest(append([]flow.Record(nil), b...))
		}
		g := query(t, s, LevelWorkload, time.Minute, t0.Add(10*time.Second))
		if len(g.Edges) != 1 {
			t.Fatalf("learning %d batches: %d edges, want 1", learnFirst, len(g.Edges))
		}
		return g.Edges[0]
	}
	all, resumed := run(0), run(2)
	// Batches 0 and 1 counted two clients and one server's retransmits (2 each).
	if all.ConnectionsOpened != 4 || resumed.ConnectionsOpened != 2 {
		t.Errorf("opened: %d throughout, %d after learning 2 batches; want 4 and 2", all.ConnectionsOpened, resumed.ConnectionsOpened)
	}
	if all.RetransmitsToSource != 8 || resumed.RetransmitsToSource != 6 {
		t.Errorf("server retransmits: %d throughout, %d after learning; want 8 and 6", all.RetransmitsToSource, resumed.RetransmitsToSource)
	}
}

// An edge's RTT percentiles never exceed its max: 97 µs samples fall in a
// bin that reads 98, above the exact max of 97.
func TestRTTPercentilesWithinMax(t *testing.T) {
	s := New(Config{})
	c, _ := clientServer(t0.Add(5*time.Second), 43122)
	c.RTT = &flow.RTT{MinMicros: 97, AvgMicros: 97, MaxMicros: 97}
	var sm summary
	sm.add(97, 1)
	if sm.quantile(0.95) <= 97 {
		t.Fatalf("the premise: 97 µs reads %d from its bin, want above 97", sm.quantile(0.95))
	}
	s.Tick(t0.Add(6 * time.Second))
	s.Ingest([]flow.Record{c})
	e := query(t, s, LevelWorkload, time.Minute, t0.Add(10*time.Second)).Edges[0]
	if e.RTTMax != 97 || e.RTTP50 != 97 || e.RTTP95 != 97 {
		t.Errorf("rtt p50 %d p95 %d max %d, want 97 for each", e.RTTP50, e.RTTP95, e.RTTMax)
	}
}

// An edge carries how connecting went, from the client's records, and the
// drops each side saw of its own, added up once.
func TestEdgeConnectingAndDrops(t *testing.T) {
	s := New(Config{})
	var batch []flow.Record
	for i, lat := range []uint32{1000, 2000, 3000, 400000} {
		c, srv := clientServer(t0.Add(5*time.Second), uint16(43000+i))
		c.ConnectLatency = &flow.RTT{MinMicros: lat, AvgMicros: lat, MaxMicros: lat}
		c.SYNRetrans = uint32(i)
		c.Drops = map[string]uint64{"netfilter_drop": 1}
		srv.Drops = map[string]uint64{"tcp_listen_overflow": 2}
		srv.SYNRetrans = 9 // the server's record does not speak for the connect
		batch = append(batch, c, srv)
	}
	s.Tick(t0.Add(6 * time.Second))
	s.Ingest(batch)
	e := query(t, s, LevelWorkload, time.Minute, t0.Add(10*time.Second)).Edges[0]
	if e.SYNRetransmits != 6 || e.ConnectLatencySamples != 4 || e.ConnectLatencyMax != 400000 ||
		e.ConnectLatencyP50 < 1960 || e.ConnectLatencyP50 > 2040 || e.ConnectLatencyP95 != 400000 {
		t.Errorf("syn retransmits %d, connect latency samples %d p50 %d p95 %d max %d; want 6, 4, 2000±2%%, 400000, 400000",
			e.SYNRetransmits, e.ConnectLatencySamples, e.ConnectLatencyP50, e.ConnectLatencyP95, e.ConnectLatencyMax)
	}
	if want := map[string]uint64{"netfilter_drop": 4, "tcp_listen_overflow": 8}; !maps.Equal(e.Drops, want) {
		t.Errorf("drops %v, want %v", e.Drops, want)
	}
}
