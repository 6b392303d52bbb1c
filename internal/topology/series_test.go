package topology

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// seriesStore holds 2 minutes of varied traffic: three clients of one
// Service, each bucket a random number of connections per client, some
// refused, with RTTs and retransmits, from both sides.
func seriesStore(t *testing.T) *Store {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 9))
	s := New(Config{})
	port := uint16(30000)
	for b := range 12 {
		end := t0.Add(time.Duration(10*b+3) * time.Second)
		s.Tick(end)
		var batch []flow.Record
		for cl := range 3 {
			for range rng.IntN(4) {
				port++
				c, srv := clientServer(end.Add(time.Duration(rng.IntN(5))*time.Second), port)
				c.Source.Pod = fmt.Sprintf("client-%d", cl)
				c.Source.Workload.Name = fmt.Sprintf("client-%d", cl)
				srv.Source = c.Source
				c.RTT = &flow.RTT{AvgMicros: uint32(50 + rng.IntN(500)), MaxMicros: uint32(600 + rng.IntN(500))}
				c.BytesToDst, c.RetransToDst = uint64(rng.IntN(10000)), uint32(rng.IntN(3))
				if rng.IntN(4) == 0 {
					c.Verdict, c.Opened, c.Closed, c.Refused = flow.VerdictRefused, 0, 0, 1
					batch = append(batch, c)
					continue
				}
				batch = append(batch, c, srv)
			}
		}
		s.Ingest(batch)
	}
	return s
}

// Every step of a series is exactly what a Query of that step's window
// says of the edge, at every level, for every edge of the window.
func TestSeriesStepsEqualQueries(t *testing.T) {
	s := seriesStore(t)
	at := t0.Add(2 * time.Minute)
	for _, l := range []Level{LevelPod, LevelWorkload, LevelService, LevelNode} {
		for _, step := range []time.Duration{10 * time.Second, 30 * time.Second, time.Minute} {
			q := Query{Level: l, Window: 2 * time.Minute, At: at}
			whole := query(t, s, l, q.Window, at)
			var ids []string
			for _, e := range whole.Edges {
				ids = append(ids, e.ID)
			}
			ser, err := s.Series(q, step, ids)
			if err != nil {
				t.Fatal(err)
			}
			points := int(q.Window / step)
			if ser.Points != points || ser.StepSeconds != step.Seconds() || !ser.WindowStart.Equal(whole.WindowStart) || !ser.WindowEnd.Equal(whole.WindowEnd) || len(ser.Edges) != len(ids) {
				t.Fatalf("%s step %s: points %d step %v window %s–%s, %d edges; want %d, %v, %s–%s, %d",
					l, step, ser.Points, ser.StepSeconds, ser.WindowStart, ser.WindowEnd, len(ser.Edges), points, step.Seconds(), whole.WindowStart, whole.WindowEnd, len(ids))
			}
			var opened uint64
			for i := range points {
				g := query(t, s, l, step, ser.WindowStart.Add(time.Duration(i+1)*step))
				byID := map[string]Edge{}
				for _, e := range g.Edges {
					byID[e.ID] = e
				}
				for _, es := range ser.Edges {
					e := byID[es.ID] // the zero edge where the step has no traffic
					got := [...]uint64{es.ConnectionsOpened[i], es.ConnectionsClosed[i], es.Failures[i], es.BytesToDestination[i], es.BytesToSource[i],
						es.RetransmitsToDestination[i], es.RetransmitsToSource[i], es.RTTSamples[i], uint64(es.RTTP50[i]), uint64(es.RTTP95[i]), uint64(es.RTTMax[i])}
					want := [...]uint64{e.ConnectionsOpened, e.ConnectionsClosed, e.Failures.Refused + e.Failures.Timeout + e.Failures.Reset + e.Failures.Unanswered + e.Failures.Unreachable + e.Failures.Failed,
						e.BytesToDestination, e.BytesToSource, e.RetransmitsToDestination, e.RetransmitsToSource, e.RTTSamples, uint64(e.RTTP50), uint64(e.RTTP95), uint64(e.RTTMax)}
					if got != want {
						t.Errorf("%s step %s point %d edge %s → %s: %v, a query of the step says %v", l, step, i, es.Source, es.Destination, got, want)
					}
					opened += es.ConnectionsOpened[i]
				}
			}
			var total uint64
			for _, e := range whole.Edges {
				total += e.ConnectionsOpened
			}
			if opened != total || total == 0 {
				t.Errorf("%s step %s: the steps opened %d, the window %d", l, step, opened, total)
			}
		}
	}
}

// Known figures: one connection per bucket, three clients, queried for one.
func TestSeriesKnownCounts(t *testing.T) {
	s := New(Config{})
	for b := range 6 {
		end := t0.Add(time.Duration(10*b+5) * time.Second)
		s.Tick(end)
		c, _ := clientServer(end, uint16(40000+b))
		c.RTT = &flow.RTT{AvgMicros: 100, MaxMicros: uint32(1000 * (b + 1))}
		s.Ingest([]flow.Record{c})
	}
	id := EdgeID("workload:shop/Deployment/client", "service:shop/api")
	ser, err := s.Series(Query{Level: LevelService, Window: time.Minute, At: t0.Add(time.Minute)}, 20*time.Second, []string{id, "0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ser.Edges) != 1 { // the unknown id has no traffic: left out
		t.Fatalf("edges %+v, want the one known", ser.Edges)
	}
	es := ser.Edges[0]
	if es.ID != id || es.Source != "workload:shop/Deployment/client" || es.Destination != "service:shop/api" ||
		!slices.Equal(es.ConnectionsOpened, []uint64{2, 2, 2}) || !slices.Equal(es.BytesToDestination, []uint64{2000, 2000, 2000}) ||
		!slices.Equal(es.RTTMax, []uint32{2000, 4000, 6000}) || !slices.Equal(es.RTTSamples, []uint64{2, 2, 2}) {
		t.Errorf("series %+v", es)
	}
	// A namespace filter applies as in Query.
	ser, err = s.Series(Query{Level: LevelService, Window: time.Minute, At: t0.Add(time.Minute), Namespace: "other"}, 0, []string{id})
	if err != nil || len(ser.Edges) != 0 {
		t.Errorf("namespace other: %+v, %v; want no edge", ser.Edges, err)
	}
}

func TestSeriesSteps(t *testing.T) {
	s := New(Config{})
	q := func(w time.Duration) Query { return Query{Level: LevelPod, Window: w, At: t0} }
	for _, tc := range []struct {
		window, step time.Duration
		wantStep     float64
		wantPoints   int
	}{
		{time.Minute, 0, 10, 6},
		{5 * time.Minute, 0, 10, 30},
		{10 * time.Minute, 0, 10, 60},
		{15 * time.Minute, 0, 20, 45}, // 90 buckets: 2 per step
		{time.Hour, 0, 60, 60},
		{24 * time.Hour, 0, 1440, 60},
		{time.Hour, 10 * time.Second, 10, 360},
		{24 * time.Hour, 4 * time.Minute, 240, 360},
	} {
		ser, err := s.Series(q(tc.window), tc.step, nil)
		if err != nil || ser.StepSeconds != tc.wantStep || ser.Points != tc.wantPoints {
			t.Errorf("window %s step %s: step %vs, %d points, %v; want %vs, %d", tc.window, tc.step, ser.StepSeconds, ser.Points, err, tc.wantStep, tc.wantPoints)
		}
	}
	for _, tc := range []struct {
		window, step time.Duration
		want         string
	}{
		{time.Minute, 15 * time.Second, "step 15s: want a multiple of the resolution 10s"},
		{time.Minute, 5 * time.Second, "step 5s: want a multiple of the resolution 10s"},
		{time.Minute, -10 * time.Second, "step -10s: want a multiple of the resolution 10s"},
		{time.Minute, 40 * time.Second, "step 40s: does not divide the window 1m0s"},
		{2 * time.Hour, 10 * time.Second, "step 10s: 720 points in the window 2h0m0s, at most 360 are served"},
		{15 * time.Second, 10 * time.Second, "window 15s: want a multiple of the resolution 10s"},
	} {
		if _, err := s.Series(q(tc.window), tc.step, nil); err == nil || err.Error() != tc.want {
			t.Errorf("window %s step %s: %v, want %q", tc.window, tc.step, err, tc.want)
		}
	}
	if _, err := s.Series(q(time.Minute), 0, make([]string, MaxSeriesEdges+1)); err == nil || err.Error() != "65 edges: at most 64 in one series" {
		t.Errorf("too many edges: %v", err)
	}
}

// NodeOf names a record's ends as Query names the edge it was counted on.
func TestNodeOf(t *testing.T) {
	c, _ := clientServer(t0.Add(5*time.Second), 43122)
	host := flow.Record{Time: t0.Add(5 * time.Second), Node: "host-1", Observer: "client", Protocol: flow.TCP,
		Verdict: flow.VerdictClosed, ConnStart: t0, Opened: 1,
		Source:      flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), Port: 5000, PID: 7, Command: "curl"},
		Destination: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Port: 80}}
	for _, r := range []flow.Record{c, host} {
		for _, l := range Levels {
			s := New(Config{})
			s.Tick(t0)
			s.Ingest([]flow.Record{r})
			g := query(t, s, l, 10*time.Second, t0.Add(10*time.Second))
			src, dst := NodeOf(&r, false, l), NodeOf(&r, true, l)
			if len(g.Edges) != 1 && l != LevelExternal {
				t.Fatalf("%s: %d edges", l, len(g.Edges))
			}
			for _, e := range g.Edges {
				if e.Source != src.ID || e.Destination != dst.ID || !slices.Contains(g.Nodes, src) || !slices.Contains(g.Nodes, dst) {
					t.Errorf("%s: NodeOf %s → %s, the graph %s → %s (%+v)", l, src.ID, dst.ID, e.Source, e.Destination, g.Nodes)
				}
			}
		}
	}
}
