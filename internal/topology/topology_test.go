package topology

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

var t0 = time.Date(2026, 11, 24, 6, 40, 0, 0, time.UTC)

func pod(ns, name, wkind, wname, ip, node string) flow.Endpoint {
	return flow.Endpoint{IP: netip.MustParseAddr(ip), Kind: flow.KindPod, Namespace: ns, Pod: name,
		Workload: &flow.Workload{Kind: wkind, Name: wname}, NodeName: node}
}

// conn returns the client's and the server's record of one closed TCP
// connection client → Service svc → backend, ending at end.
func clientServer(end time.Time, port uint16) (flow.Record, flow.Record) {
	cli := pod("shop", "client-1", "Deployment", "client", "10.244.1.10", "node-a")
	cli.Port, cli.PID, cli.Command = port, 4711, "curl"
	dialed := pod("shop", "api-1", "Deployment", "api", "10.96.0.20", "node-b")
	dialed.Port, dialed.Service = 80, &flow.ServiceRef{Namespace: "shop", Name: "api"}
	backend := pod("shop", "api-1", "Deployment", "api", "10.244.2.20", "node-b")
	backend.Port, backend.PID, backend.Command = 8080, 99, "api"
	c := flow.Record{Time: end, Start: end.Add(-time.Second), Node: "node-a", Observer: "client", Protocol: flow.TCP,
		Verdict: flow.VerdictClosed, ConnStart: end.Add(-500 * time.Millisecond), Source: cli, Destination: dialed,
		Opened: 1, Closed: 1, BytesToDst: 1000, BytesToSrc: 100, RetransToDst: 1, RTT: &flow.RTT{MinMicros: 60, AvgMicros: 60, MaxMicros: 60}}
	srcSeen := pod("shop", "client-1", "Deployment", "client", "10.244.1.10", "node-a")
	srcSeen.Port = port
	s := flow.Record{Time: end.Add(300 * time.Millisecond), Start: end.Add(-700 * time.Millisecond), Node: "node-b", Observer: "server",
		Protocol: flow.TCP, Verdict: flow.VerdictClosed, ConnStart: end.Add(-490 * time.Millisecond), Source: srcSeen, Destination: backend,
		Opened: 1, Closed: 1, BytesToDst: 1000, BytesToSrc: 100, RetransToSrc: 2, RTT: &flow.RTT{MinMicros: 90, AvgMicros: 90, MaxMicros: 90}}
	return c, s
}

func query(t *testing.T, s *Store, l Level, w time.Duration, at time.Time) Graph {
	t.Helper()
	g, err := s.Query(Query{Level: l, Window: w, At: at})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func ids(g Graph) (nodes, edges []string) {
	for _, n := range g.Nodes {
		nodes = append(nodes, n.ID)
	}
	for _, e := range g.Edges {
		edges = append(edges, e.Source+" -> "+e.Destination)
	}
	return nodes, edges
}

func TestLevelNaming(t *testing.T) {
	c, _ := clientServer(t0.Add(5*time.Second), 43122)
	world := c
	world.Destination = flow.Endpoint{IP: netip.MustParseAddr("203.0.113.9"), Port: 443, Kind: flow.KindWorld}
	host := flow.Record{Time: t0.Add(5 * time.Second), Node: "host-1", Observer: "client", Protocol: flow.TCP,
		Verdict: flow.VerdictClosed, ConnStart: t0, Opened: 1,
		Source:      flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), Port: 5000, PID: 7, Command: "curl", ContainerID: "4f1c"},
		Destination: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Port: 80}}
	for _, tc := range []struct {
		level Level
		rec   flow.Record
		want  string
	}{
		{LevelPod, c, "pod:shop/client-1 -> pod:shop/api-1"},
		{LevelWorkload, c, "workload:shop/Deployment/client -> workload:shop/Deployment/api"},
		{LevelService, c, "workload:shop/Deployment/client -> service:shop/api"},
		{LevelNamespace, c, "namespace:shop -> namespace:shop"},
		{LevelNode, c, "node:node-a -> node:node-b"},
		{LevelProcess, c, "process:node-a/curl -> pod:shop/api-1"},
		{LevelContainer, c, "pod:shop/client-1 -> pod:shop/api-1"},
		{LevelWorkload, world, "workload:shop/Deployment/client -> external:203.0.113.9"},
		{LevelExternal, world, "workload:shop/Deployment/client -> external:203.0.113.9"},
		{LevelNode, world, "node:node-a -> external:203.0.113.9"},
		{LevelProcess, host, "process:host-1/4f1c/curl -> external:10.0.0.2"},
		{LevelContainer, host, "container:host-1/4f1c -> external:10.0.0.2"},
		{LevelNode, host, "node:host-1 -> external:10.0.0.2"},
		{LevelWorkload, host, "process:host-1/4f1c/curl -> external:10.0.0.2"},
	} {
		s := New(Config{})
		s.Tick(t0)
		s.Ingest([]flow.Record{tc.rec})
		_, edges := ids(query(t, s, tc.level, 10*time.Second, t0.Add(10*time.Second)))
		if !slices.Equal(edges, []string{tc.want}) {
			t.Errorf("%s: edges %q, want %q", tc.level, edges, tc.want)
		}
	}
	// The external level keeps only edges that leave the cluster.
	s := New(Config{})
	s.Tick(t0)
	s.Ingest([]flow.Record{c, world})
	if _, edges := ids(query(t, s, LevelExternal, 10*time.Second, t0.Add(10*time.Second))); len(edges) != 1 {
		t.Errorf("external level: %q, want the one edge to the world", edges)
	}
}

func TestStableIDs(t *testing.T) {
	if got, want := EdgeID("a", "b"), EdgeID("a", "b"); got != want || got == EdgeID("b", "a") || len(got) != 16 {
		t.Errorf("EdgeID: %q %q %q", got, want, EdgeID("b", "a"))
	}
}

// TestBothSidesDedup: the two observations of a connection count once,
// whatever their order and whether they come in one batch or two.
func TestBothSidesDedup(t *testing.T) {
	c, srv := clientServer(t0.Add(5*time.Second), 43122)
	other, _ := clientServer(t0.Add(5*time.Second), 43123) // another connection: counted too
	late := srv
	late.ConnStart = c.ConnStart.Add(70 * time.Second) // beyond the tolerance: not c's server
	for _, tc := range []struct {
		name    string
		batches [][]flow.Record
		ticks   int // extra ticks after the batches
		opened  uint64
		retrans [2]uint64
		rttP50  uint32
		st      Stats
	}{
		{"client only", [][]flow.Record{{c}}, 0, 1, [2]uint64{1, 0}, 60,
			Stats{Records: 1, RecordsCounted: 1}},
		{"both, client first", [][]flow.Record{{c, srv}}, 0, 1, [2]uint64{1, 2}, 60,
			Stats{Records: 2, RecordsCounted: 1, RecordsDeduplicated: 1}},
		{"both, server first", [][]flow.Record{{srv, c}}, 0, 1, [2]uint64{1, 2}, 60,
			Stats{Records: 2, RecordsCounted: 1, RecordsDeduplicated: 1}},
		{"server a batch ahead", [][]flow.Record{{srv}, {c}}, 0, 1, [2]uint64{1, 2}, 60,
			Stats{Records: 2, RecordsCounted: 1, RecordsDeduplicated: 1}},
		{"server alone, after the hold", [][]flow.Record{{srv}}, 3, 1, [2]uint64{0, 2}, 90,
			Stats{Records: 1, RecordsCounted: 1}},
		{"client after the hold", [][]flow.Record{{srv}, {}, {}, {}, {c}}, 0, 1, [2]uint64{1, 2}, 90,
			Stats{Records: 2, RecordsCounted: 1, RecordsDeduplicated: 1}},
		{"two connections", [][]flow.Record{{c, srv, other}}, 0, 2, [2]uint64{2, 2}, 60,
			Stats{Records: 3, RecordsCounted: 2, RecordsDeduplicated: 1}},
		{"server outside the tolerance", [][]flow.Record{{c, late}}, 3, 2, [2]uint64{1, 2}, 60,
			Stats{Records: 2, RecordsCounted: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{Linger: 10})
			now := t0
			for _, b := range tc.batches {
				s.Tick(now)
				s.Ingest(b)
				now = now.Add(time.Second)
			}
			for range tc.ticks {
				s.Tick(now)
				now = now.Add(time.Second)
			}
			st := s.Stats()
			st.Connections, st.Buckets, st.Edges = 0, 0, 0
			if st != tc.st {
				t.Errorf("stats %+v, want %+v", st, tc.st)
			}
			g := query(t, s, LevelWorkload, time.Minute, t0.Add(time.Minute))
			var opened, bytes, rd, rs uint64
			var p50 uint32
			for _, e := range g.Edges {
				opened += e.ConnectionsOpened
				bytes += e.BytesToDestination
				rd += e.RetransmitsToDestination
				rs += e.RetransmitsToSource
				p50 = max(p50, e.RTTP50)
			}
			if opened != tc.opened || bytes != 1000*tc.opened || [2]uint64{rd, rs} != tc.retrans || p50 != tc.rttP50 {
				t.Errorf("opened %d bytes %d retransmits %d/%d p50 %d; want %d %d %v %d",
					opened, bytes, rd, rs, p50, tc.opened, 1000*tc.opened, tc.retrans, tc.rttP50)
			}
		})
	}
}

// TestDedupNamesTheServerProcess: on a plain host the client's record
// names the destination by address only; its server's names the process.
func TestDedupNamesTheServerProcess(t *testing.T) {
	end := t0.Add(5 * time.Second)
	cli := flow.Endpoint{IP: netip.MustParseAddr("127.0.0.1"), Port: 50000, PID: 1, Command: "curl"}
	srv := flow.Endpoint{IP: netip.MustParseAddr("127.0.0.1"), Port: 8080}
	c := flow.Record{Time: end, Node: "h", Observer: "client", Protocol: flow.TCP, Verdict: flow.VerdictClosed,
		ConnStart: t0, Source: cli, Destination: srv, Opened: 1}
	s := c
	s.Observer = "server"
	s.Source = flow.Endpoint{IP: cli.IP, Port: cli.Port}
	s.Destination = flow.Endpoint{IP: srv.IP, Port: srv.Port, PID: 2, Command: "nginx"}
	st := New(Config{})
	st.Tick(t0)
	st.Ingest([]flow.Record{c, s})
	_, edges := ids(query(t, st, LevelProcess, 10*time.Second, end))
	if want := []string{"process:h/curl -> process:h/nginx"}; !slices.Equal(edges, want) {
		t.Errorf("edges %q, want %q", edges, want)
	}
}

func TestWindowSums(t *testing.T) {
	s := New(Config{})
	// One connection closing at 5 s, 15 s, ..., 55 s: one per bucket.
	for i := range 6 {
		end := t0.Add(time.Duration(10*i+5) * time.Second)
		s.Tick(end)
		c, _ := clientServer(end, uint16(40000+i))
		c.Verdict, c.Refused, c.Opened, c.Closed = flow.VerdictRefused, uint32(i), 1, 1
		c.RTT = &flow.RTT{AvgMicros: uint32(100 * (i + 1)), MaxMicros: uint32(1000 * (i + 1))}
		s.Ingest([]flow.Record{c})
	}
	for _, tc := range []struct {
		window          time.Duration
		at              time.Time
		opened, refused uint64
		rttMax          uint32
		start           time.Time
	}{
		{10 * time.Second, t0.Add(10 * time.Second), 1, 0, 1000, t0},
		{10 * time.Second, t0.Add(1 * time.Second), 1, 0, 1000, t0}, // at rounds up to the bucket's end
		{20 * time.Second, t0.Add(20 * time.Second), 2, 1, 2000, t0},
		{30 * time.Second, t0.Add(60 * time.Second), 3, 3 + 4 + 5, 6000, t0.Add(30 * time.Second)},
		{time.Minute, t0.Add(60 * time.Second), 6, 15, 6000, t0},
		{24 * time.Hour, t0.Add(60 * time.Second), 6, 15, 6000, t0.Add(60*time.Second - 24*time.Hour)},
		{10 * time.Second, t0.Add(70 * time.Second), 0, 0, 0, t0.Add(60 * time.Second)},
	} {
		g := query(t, s, LevelWorkload, tc.window, tc.at)
		var opened, refused uint64
		var rttMax uint32
		for _, e := range g.Edges {
			opened += e.ConnectionsOpened
			refused += e.Failures.Refused
			rttMax = e.RTTMax
			if want := float64(e.ConnectionsOpened) / tc.window.Seconds(); e.ConnectionsOpenedPerSecond != want {
				t.Errorf("opened/s %v, want %v", e.ConnectionsOpenedPerSecond, want)
			}
		}
		if opened != tc.opened || refused != tc.refused || rttMax != tc.rttMax || !g.WindowStart.Equal(tc.start) {
			t.Errorf("window %s at %s: opened %d refused %d rtt max %d start %s; want %d %d %d %s",
				tc.window, tc.at.Format(time.TimeOnly), opened, refused, rttMax, g.WindowStart, tc.opened, tc.refused, tc.rttMax, tc.start)
		}
	}
	for _, w := range []time.Duration{5 * time.Second, 15 * time.Second, 25 * time.Hour} {
		if _, err := s.Query(Query{Level: LevelPod, Window: w, At: t0}); err == nil {
			t.Errorf("window %s accepted", w)
		}
	}
	if _, err := s.Query(Query{Level: "galaxy", Window: time.Minute, At: t0}); err == nil {
		t.Error("unknown level accepted")
	}
}

func TestFailuresByVerdict(t *testing.T) {
	c, _ := clientServer(t0.Add(5*time.Second), 1)
	mk := func(v flow.Verdict, edit func(*flow.Record)) flow.Record {
		r := c
		r.Verdict, r.Opened, r.Closed = v, 0, 0
		edit(&r)
		r.Source.Port++
		c.Source.Port++
		return r
	}
	recs := []flow.Record{
		mk(flow.VerdictRefused, func(r *flow.Record) { r.Refused = 1 }),
		mk(flow.VerdictTimeout, func(r *flow.Record) { r.TimedOut = 1 }),
		mk(flow.VerdictUnreachable, func(r *flow.Record) { r.FailedOther = 1 }),
		mk(flow.VerdictFailed, func(r *flow.Record) { r.FailedOther = 1 }),
		mk(flow.VerdictReset, func(r *flow.Record) { r.Opened, r.Closed, r.ResetsByDst = 1, 1, 1 }),
		mk(flow.VerdictUnanswered, func(r *flow.Record) { r.Protocol = flow.UDP }),
	}
	s := New(Config{})
	s.Tick(t0)
	s.Ingest(recs)
	g := query(t, s, LevelWorkload, 10*time.Second, t0.Add(10*time.Second))
	if len(g.Edges) != 1 {
		t.Fatalf("edges %+v", g.Edges)
	}
	want := Failures{Refused: 1, Timeout: 1, Reset: 1, Unanswered: 1, Unreachable: 1, Failed: 1}
	if e := g.Edges[0]; e.Failures != want || e.FailuresPerSecond != 0.6 {
		t.Errorf("failures %+v %v/s, want %+v 0.6/s", e.Failures, e.FailuresPerSecond, want)
	}
}

func TestPercentiles(t *testing.T) {
	// p50/p95 are the bins' values; exact is the samples' own at the
	// nearest rank, each within RelativeError of it.
	for _, tc := range []struct {
		samples  []uint32
		p50, p95 uint32
		exact    [2]uint32
	}{
		{nil, 0, 0, [2]uint32{0, 0}},
		{[]uint32{0}, 0, 0, [2]uint32{0, 0}},
		{[]uint32{1}, 1, 1, [2]uint32{1, 1}},
		{[]uint32{1000}, 993, 993, [2]uint32{1000, 1000}},
		{[]uint32{100, 100, 100, 100, 100, 100, 100, 100, 100, 100000}, 102, 98848, [2]uint32{100, 100000}},
		{seq(1, 100), 49, 94, [2]uint32{50, 95}},
		{seq(1000, 100000), 50073, 94971, [2]uint32{50500, 95050}},
	} {
		var s summary
		for _, v := range tc.samples {
			s.add(v, 1)
		}
		p50, p95 := s.quantile(0.5), s.quantile(0.95)
		if p50 != tc.p50 || p95 != tc.p95 {
			t.Errorf("%d samples: p50 %d p95 %d, want %d %d", len(tc.samples), p50, p95, tc.p50, tc.p95)
		}
		for i, got := range []uint32{p50, p95} {
			if ex := float64(tc.exact[i]); math.Abs(float64(got)-ex) > max(RelativeError*ex, 0.5) {
				t.Errorf("%d samples: %d is not within %v of %v", len(tc.samples), got, RelativeError, ex)
			}
		}
	}
}

func seq(from, to uint32) []uint32 {
	var out []uint32
	for v := from; v <= to; v++ {
		out = append(out, v)
	}
	return out
}

// TestPercentileError: any percentile of any samples, merged from any
// parts, is within RelativeError (or half a microsecond) of the sample at
// its nearest rank.
func TestPercentileError(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		n := 1 + rng.IntN(500)
		samples := make([]uint32, n)
		var parts [3]summary
		for i := range samples {
			samples[i] = uint32(math.Exp(rng.Float64() * 22)) // 1 µs .. ~1 h
			parts[rng.IntN(3)].add(samples[i], 1)
		}
		var merged summary
		for i := range parts {
			merged.merge(&parts[i])
		}
		slices.Sort(samples)
		for _, q := range []float64{0.01, 0.5, 0.95, 0.99, 1} {
			exact := float64(samples[max(0, int(math.Ceil(q*float64(n)))-1)])
			got := float64(merged.quantile(q))
			if math.Abs(got-exact) > max(RelativeError*exact, 0.5)+1e-9 {
				t.Fatalf("q%v of %d samples: %v, exact %v", q, n, got, exact)
			}
		}
	}
}

func TestRetentionBounds(t *testing.T) {
	s := New(Config{MaxBuckets: 3, MaxEdgesPerBucket: 2})
	rec := func(end time.Time, port uint16) flow.Record {
		c, _ := clientServer(end, port)
		c.Destination.Pod = "api-" + string(rune('a'+port%26)) // a distinct edge per port at pod level
		return c
	}
	s.Tick(t0.Add(5 * time.Second))
	s.Ingest([]flow.Record{rec(t0.Add(5*time.Second), 1), rec(t0.Add(5*time.Second), 2), rec(t0.Add(5*time.Second), 3),
		rec(t0.Add(5*time.Second), 1+26), // an edge the bucket has: kept
		rec(t0.Add(25*time.Second), 4),   // beyond the bucket after now's
	})
	st := s.Stats()
	if st.RecordsCounted != 3 || st.RecordsOverEdgeLimit != 1 || st.RecordsTooNew != 1 || st.Buckets != 1 || st.Edges != 2 {
		t.Errorf("after one bucket: %+v", st)
	}
	for i := 1; i <= 4; i++ {
		at := t0.Add(time.Duration(10*i+5) * time.Second)
		s.Tick(at)
		s.Ingest([]flow.Record{rec(at, uint16(10+i))})
	}
	st = s.Stats()
	if st.Buckets != 3 || st.BucketsEvicted != 2 || st.Edges != 3 || st.RecordsCounted != 7 {
		t.Errorf("after five buckets: %+v", st)
	}
	s.Ingest([]flow.Record{rec(t0.Add(15*time.Second), 20)}) // the evicted second bucket
	if st = s.Stats(); st.RecordsTooOld != 1 {
		t.Errorf("too old: %+v", st)
	}
	g := query(t, s, LevelPod, 30*time.Second, t0.Add(50*time.Second))
	if len(g.Edges) != 3 {
		t.Errorf("query over evicted buckets: %d edges, want the 3 retained", len(g.Edges))
	}
	if _, err := s.Query(Query{Level: LevelPod, Window: 40 * time.Second, At: t0}); err == nil {
		t.Error("a window longer than the retention accepted")
	}
}

func TestConnectionIndexBound(t *testing.T) {
	s := New(Config{MaxConnections: 1})
	c1, s1 := clientServer(t0.Add(5*time.Second), 1)
	c2, s2 := clientServer(t0.Add(5*time.Second), 2)
	s.Tick(t0)
	s.Ingest([]flow.Record{c1, s1, c2, s2})
	st := s.Stats()
	if st.RecordsCounted != 3 || st.RecordsDeduplicated != 1 || st.RecordsUndeduplicated != 2 || st.Connections != 1 {
		t.Errorf("%+v", st)
	}
}

func TestNamespaceFilter(t *testing.T) {
	c, _ := clientServer(t0.Add(5*time.Second), 1)
	o := c
	o.Source = pod("ops", "probe-1", "DaemonSet", "probe", "10.244.3.3", "node-c")
	o.Destination = pod("ops", "sink-1", "Deployment", "sink", "10.244.3.4", "node-c")
	s := New(Config{})
	s.Tick(t0)
	s.Ingest([]flow.Record{c, o})
	for ns, want := range map[string]int{"": 2, "shop": 1, "ops": 1, "none": 0} {
		g, err := s.Query(Query{Level: LevelWorkload, Window: 10 * time.Second, At: t0.Add(10 * time.Second), Namespace: ns})
		if err != nil || len(g.Edges) != want {
			t.Errorf("namespace %q: %d edges, want %d (%v)", ns, len(g.Edges), want, err)
		}
	}
}

func TestDiff(t *testing.T) {
	edge := func(end time.Time, from, to string, port uint16, n int, refused bool) []flow.Record {
		var out []flow.Record
		for i := range n {
			c, _ := clientServer(end, port+uint16(i))
			c.Source.Workload.Name, c.Destination.Workload.Name = from, to
			if refused {
				c.Verdict, c.Opened, c.Closed, c.Refused = flow.VerdictRefused, 0, 0, 1
			}
			out = append(out, c)
		}
		return out
	}
	s := New(Config{})
	then, now := t0.Add(5*time.Second), t0.Add(65*time.Second)
	s.Tick(then)
	s.Ingest(slices.Concat(edge(then, "a", "gone", 100, 1, false), edge(then, "a", "steady", 200, 4, false),
		edge(then, "a", "busy", 300, 2, false)))
	s.Tick(now)
	s.Ingest(slices.Concat(edge(now, "a", "new", 1000, 1, false), edge(now, "a", "steady", 2000, 7, false),
		edge(now, "a", "busy", 3000, 4, false), edge(now, "a", "steady", 4000, 1, true)))
	d, err := s.Diff(Query{Level: LevelWorkload, Window: 10 * time.Second, At: now}, then, 2)
	if err != nil {
		t.Fatal(err)
	}
	name := func(es []Edge) (out []string) {
		for _, e := range es {
			out = append(out, e.Destination)
		}
		return out
	}
	var changed []string
	for _, c := range d.Edges.Changed {
		changed = append(changed, c.After.Destination+" "+c.Changed[0]+" "+c.Changed[len(c.Changed)-1])
	}
	if got := name(d.Edges.Appeared); !slices.Equal(got, []string{"workload:shop/Deployment/new"}) {
		t.Errorf("appeared %q", got)
	}
	if got := name(d.Edges.Vanished); !slices.Equal(got, []string{"workload:shop/Deployment/gone"}) {
		t.Errorf("vanished %q", got)
	}
	// busy went 2 → 4 opened (2x: changed); steady 4 → 7 opened (1.75x:
	// not), but its failures 0 → 1.
	slices.Sort(changed)
	if want := []string{"workload:shop/Deployment/busy connections_opened_per_second connections_opened_per_second",
		"workload:shop/Deployment/steady failures_per_second failures_per_second"}; !slices.Equal(changed, want) {
		t.Errorf("changed %q, want %q", changed, want)
	}
	if len(d.Nodes.Appeared) != 1 || d.Nodes.Appeared[0].ID != "workload:shop/Deployment/new" ||
		len(d.Nodes.Vanished) != 1 || d.Nodes.Vanished[0].ID != "workload:shop/Deployment/gone" {
		t.Errorf("nodes %+v", d.Nodes)
	}
	if _, err := s.Diff(Query{Level: LevelWorkload, Window: 10 * time.Second, At: now}, then, 1); err == nil {
		t.Error("factor 1 accepted")
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{{"10s", 10 * time.Second, true}, {"1m", time.Minute, true}, {"24h", 24 * time.Hour, true},
		{"9s", 0, false}, {"24h1s", 0, false}, {"", 0, false}, {"-1m", 0, false}, {"1 m", 0, false}} {
		got, err := ParseWindow(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseWindow(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, l := range Levels {
		if got, err := ParseLevel(string(l)); got != l || err != nil {
			t.Errorf("ParseLevel(%q) = %q, %v", l, got, err)
		}
	}
	if _, err := ParseLevel("Pod"); err == nil {
		t.Error("ParseLevel(Pod) accepted")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"10s", "24h", "1m30s", "workload", "", "9223372036854775807ns", "-0s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := ParseWindow(s); err == nil && (d < MinWindow || d > MaxWindow) {
			t.Errorf("ParseWindow(%q) = %v", s, d)
		}
		if l, err := ParseLevel(s); err == nil && string(l) != s {
			t.Errorf("ParseLevel(%q) = %q", s, l)
		}
	})
}

// A connection keeps what its other side must match only while that side
// is missing: a burst's connections seen on both sides hold none of it
// while they are remembered (issue 17), and what they let go is reused.
func TestAwaitHeldOnlyForAMissingSide(t *testing.T) {
	s := New(Config{})
	awaiting := func() (n int) {
		for _, list := range s.conns.byKey {
			for _, c := range list {
				if c.await != nil {
					n++
				}
			}
		}
		return n
	}
	at := t0.Add(5 * time.Second)
	s.Tick(at)
	var clients, servers []flow.Record
	for i := range 100 {
		c, srv := clientServer(at, uint16(10000+i))
		clients, servers = append(clients, c), append(servers, srv)
	}
	s.Ingest(clients)
	if n := awaiting(); n != 100 {
		t.Fatalf("%d of 100 client-only connections keep their dialed address, want all", n)
	}
	s.Ingest(servers)
	if n, spare := awaiting(), len(s.conns.spareAwait); n != 0 || spare != 100 {
		t.Errorf("with both sides seen: %d keep an awaited address, %d let go; want 0 and 100", n, spare)
	}
	if st := s.Stats(); st.RecordsCounted != 100 || st.RecordsDeduplicated != 100 {
		t.Errorf("counted %d, deduplicated %d; want 100 each", st.RecordsCounted, st.RecordsDeduplicated)
	}
}

// After a burst the forgotten connections kept for reuse are given back,
// down to minSpare, as is the edge key they shared, and a second burst is
// counted as the first was.
func TestSpareGivenBackAfterBurst(t *testing.T) {
	s := New(Config{})
	burst := func(at time.Time) {
		s.Tick(at)
		var recs []flow.Record
		for i := range 3 * minSpare {
			c, srv := clientServer(at, uint16(10000+i))
			recs = append(recs, c, srv)
		}
		s.Ingest(recs)
	}
	burst(t0.Add(5 * time.Second))
	if n, edges := s.conns.count, len(s.conns.edges); n != 3*minSpare || edges != 1 {
		t.Fatalf("%d connections indexed on %d shared edges, want %d on 1", n, edges, 3*minSpare)
	}
	for range s.cfg.Linger + 1 {
		s.Tick(t0.Add(10 * time.Second))
	}
	if n, spare, edges := s.conns.count, len(s.conns.spare), len(s.conns.edges); n != 0 || spare != minSpare || edges != 0 {
		t.Errorf("after the burst: %d indexed, %d spare, %d shared edges; want 0, %d, 0", n, spare, edges, minSpare)
	}
	burst(t0.Add(25 * time.Second))
	for range s.cfg.Linger + 1 {
		s.Tick(t0.Add(30 * time.Second))
	}
	// Each connection's two sides counted once, through reused connections.
	if st := s.Stats(); st.RecordsCounted != 2*3*minSpare || st.RecordsDeduplicated != 2*3*minSpare {
		t.Errorf("counted %d, deduplicated %d; want %d each", st.RecordsCounted, st.RecordsDeduplicated, 2*3*minSpare)
	}
}
