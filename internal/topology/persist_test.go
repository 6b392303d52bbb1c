package topology

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// varied returns records of many kinds ending at end: both sides of a
// connection, a refused one, one to the world, a UDP conversation nobody
// answered, and a plain host's process, each with its own RTT.
func varied(end time.Time, port uint16) []flow.Record {
	c, srv := clientServer(end, port)
	c.RTT = &flow.RTT{AvgMicros: uint32(port), MaxMicros: 3 * uint32(port)}
	c.Requests = []flow.Requests{
		{Protocol: flow.HTTP, Method: "GET", Path: "/users/{id}", Status: 200, Count: 9, Latency: &flow.RTT{MinMicros: 100, AvgMicros: uint32(port), MaxMicros: 4000}},
		{Protocol: flow.HTTP, Method: "GET", Path: "/users/{id}", Status: 503, Count: 1, Failed: 1, Latency: &flow.RTT{MinMicros: 50, AvgMicros: 50, MaxMicros: 50}},
	}
	srv.Requests = c.Requests // the same requests, seen by the server: counted once
	refused, _ := clientServer(end, port+1)
	refused.Verdict, refused.Opened, refused.Closed, refused.Refused = flow.VerdictRefused, 0, 0, 1
	world, _ := clientServer(end, port+2)
	world.Destination = flow.Endpoint{IP: netip.MustParseAddr("203.0.113.9"), Port: 443, Kind: flow.KindWorld, DNSName: "api.example.com"}
	udp, _ := clientServer(end, port+3)
	udp.Protocol, udp.Verdict, udp.Opened, udp.Closed, udp.RTT = flow.UDP, flow.VerdictUnanswered, 0, 0, nil
	host := flow.Record{Time: end, Node: "host-1", Observer: "client", Protocol: flow.TCP, Verdict: flow.VerdictReset,
		ConnStart: end.Add(-time.Second), Opened: 1, Closed: 1, RetransToDst: 3, BytesToDst: 7,
		Source:      flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), Port: port, PID: 7, Command: "curl", ContainerID: "4f1c"},
		Destination: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Port: 80},
		RTT:         &flow.RTT{AvgMicros: 5000 + uint32(port), MaxMicros: 9000}}
	return []flow.Record{c, srv, refused, world, udp, host}
}

// bucketsOf lists the distinct buckets of rows, in order.
func bucketsOf(rows []EdgeRow) []int64 {
	var out []int64
	for _, r := range rows {
		if len(out) == 0 || out[len(out)-1] != r.Bucket {
			out = append(out, r.Bucket)
		}
	}
	return out
}

// TestPersistRoundTrip: a store restored from what Dirty handed out,
// bucket by bucket replaced as the hub's history does, answers every
// query and diff as the store that wrote it.
func TestPersistRoundTrip(t *testing.T) {
	s := New(Config{})
	saved := map[int64][]EdgeRow{} // what the history holds: whole buckets
	save := func() []int64 {
		rows := s.Dirty()
		changed := bucketsOf(rows)
		for _, b := range changed {
			saved[b] = nil
		}
		for _, r := range rows {
			saved[r.Bucket] = append(saved[r.Bucket], r)
		}
		return changed
	}
	base := s.bucketIndex(t0.Add(time.Second))
	for i := range 6 {
		end := t0.Add(time.Duration(10*i+5) * time.Second)
		s.Tick(end)
		s.Ingest(varied(end, uint16(1000+10*i)))
	}
	if got, want := save(), []int64{base, base + 1, base + 2, base + 3, base + 4, base + 5}; !slices.Equal(got, want) {
		t.Fatalf("first Dirty: buckets %v, want %v", got, want)
	}
	if rows := s.Dirty(); rows != nil {
		t.Fatalf("Dirty with nothing changed: %d rows", len(rows))
	}
	// More records into the second bucket (late) and a new seventh: only
	// those two are dirty, and their rows replace what was saved.
	late := t0.Add(15 * time.Second)
	end := t0.Add(65 * time.Second)
	s.Tick(end)
	s.Ingest(slices.Concat(varied(late, 2000), varied(end, 3000)))
	if got, want := save(), []int64{base + 1, base + 6}; !slices.Equal(got, want) {
		t.Fatalf("second Dirty: buckets %v, want %v", got, want)
	}

	r := New(Config{})
	var keys []int64
	for b := range saved {
		keys = append(keys, b)
	}
	slices.Sort(keys)
	for _, b := range keys {
		if dropped := r.Restore(saved[b]); dropped != 0 {
			t.Fatalf("bucket %d: %d rows dropped", b, dropped)
		}
	}
	if rows := r.Dirty(); rows != nil {
		t.Errorf("a restored store has %d dirty rows, want none", len(rows))
	}
	for _, l := range Levels {
		for _, w := range []time.Duration{10 * time.Second, 20 * time.Second, time.Minute, 24 * time.Hour} {
			for _, at := range []time.Time{t0.Add(10 * time.Second), t0.Add(20 * time.Second), t0.Add(time.Minute), end} {
				q := Query{Level: l, Window: w, At: at}
				want, got := query(t, s, l, w, at), query(t, r, l, w, at)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%+v: restored\n%+v\nwant\n%+v", q, got, want)
				}
				dw, err1 := s.Diff(q, t0.Add(10*time.Second), 2)
				dg, err2 := r.Diff(q, t0.Add(10*time.Second), 2)
				if err1 != nil || err2 != nil || !reflect.DeepEqual(dg, dw) {
					t.Errorf("%+v: diff differs (%v, %v)", q, err1, err2)
				}
			}
		}
	}
	// The exact quantities, not only agreement: 7 batches of 3 connections
	// opened (the one seen from both sides, the world's, the host's).
	g := query(t, r, LevelWorkload, time.Minute, end)
	var opened, refused, unanswered, reset, requests, failed uint64
	var rttMax uint32
	for _, e := range g.Edges {
		requests += e.Requests
		failed += e.RequestsFailed
		opened += e.ConnectionsOpened
		refused += e.Failures.Refused
		unanswered += e.Failures.Unanswered
		reset += e.Failures.Reset
		rttMax = max(rttMax, e.RTTMax)
	}
	if opened != 3*7 || refused != 7 || unanswered != 7 || reset != 7 || rttMax != 9000 || requests != 10*7 || failed != 7 {
		t.Errorf("restored minute: opened %d refused %d unanswered %d reset %d rtt max %d requests %d failed %d; want 21 7 7 7 9000 70 7",
			opened, refused, unanswered, reset, rttMax, requests, failed)
	}
}

// TestRestoreBounds: rows older than the retention the newest row sets,
// and rows over the edge limit, are dropped and counted.
func TestRestoreBounds(t *testing.T) {
	row := func(b int64, pod string) EdgeRow {
		return EdgeRow{Bucket: b, Src: Ident{Kind: flow.KindPod, Namespace: "a", Pod: pod}, Dst: Ident{Addr: netip.MustParseAddr("192.0.2.1")},
			Counts: Counts{Opened: 1, Records: 1}}
	}
	s := New(Config{MaxBuckets: 3, MaxEdgesPerBucket: 2})
	dropped := s.Restore([]EdgeRow{row(10, "x"), row(12, "x"), row(12, "y"), row(12, "z"), row(13, "x"), row(10, "y")})
	// bucket 10 is evicted by 13 (same slot, out of the retention 11..13),
	// then its second row is too old; 12 holds two edges, not three.
	if dropped != 2 {
		t.Errorf("dropped %d, want 2", dropped)
	}
	if st := s.Stats(); st.Buckets != 2 || st.Edges != 2 || st.BucketsEvicted != 1 {
		t.Errorf("stats %+v, want 2 buckets, 2 edges, 1 evicted", st)
	}
}

// TestExportMirrorsEveryField fails when ident or counts gain a field
// their exported mirrors lack: Dirty would lose it.
func TestExportMirrorsEveryField(t *testing.T) {
	for _, p := range [][2]reflect.Type{{reflect.TypeFor[ident](), reflect.TypeFor[Ident]()}, {reflect.TypeFor[counts](), reflect.TypeFor[Counts]()}} {
		if p[0].NumField() != p[1].NumField() {
			t.Errorf("%s has %d fields, %s %d", p[0], p[0].NumField(), p[1], p[1].NumField())
		}
	}
	id := Ident{Kind: "k", Namespace: "n", Pod: "p", WorkloadKind: "wk", WorkloadName: "wn", ServiceNamespace: "sn",
		ServiceName: "s", NodeName: "node", Command: "c", ContainerID: "ct", Addr: netip.MustParseAddr("::1"), DNSName: "d"}
	c := Counts{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, []RTTBin{{1, 2}, {40, 1}}, 14, 15, 16, []RTTBin{{9, 3}}, map[string]uint64{"netfilter_drop": 17},
		[]RequestCounts{{flow.DNS, "nxdomain", 18, 0, 18, 19, 20, 21}, {flow.HTTP, "5xx", 22, 22, 22, 23, 24, 25}}}
	in := id.ident()
	gotC := c.counts()
	if got := in.export(); got != id {
		t.Errorf("ident round trip %+v, want %+v", got, id)
	}
	if got := gotC.export(); !reflect.DeepEqual(got, c) {
		t.Errorf("counts round trip %+v, want %+v", got, c)
	}
}
