package topology

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// benchRecord is the client record of connection i on edge e of 10,000
// distinct pod-level edges.
func benchRecord(e, i int, end time.Time) flow.Record {
	src := pod("ns"+fmt.Sprint(e%50), fmt.Sprintf("client-%d", e), "Deployment", fmt.Sprintf("client-%d", e%500), "10.1.0.1", "node-a")
	src.IP = netip.AddrFrom4([4]byte{10, 1, byte(e >> 8), byte(e)})
	src.Port = uint16(1024 + i%60000)
	dst := pod("ns"+fmt.Sprint(e%50), fmt.Sprintf("api-%d", e%100), "Deployment", fmt.Sprintf("api-%d", e%100), "10.2.0.1", "node-b")
	dst.Port = 8080
	return flow.Record{Time: end, Node: "node-a", Observer: "client", Protocol: flow.TCP, Verdict: flow.VerdictClosed,
		ConnStart: end.Add(-time.Duration(i%900) * time.Millisecond), Source: src, Destination: dst, Opened: 1, Closed: 1,
		BytesToDst: 1000, BytesToSrc: 1000, RTT: &flow.RTT{AvgMicros: uint32(50 + i%200), MaxMicros: 300}}
}

// BenchmarkIngest: records/s of short connections over 10,000 edges, one
// batch of 1,000 per interval, both sides of every other connection.
func BenchmarkIngest(b *testing.B) {
	s := New(Config{})
	const batch = 1000
	recs := make([]flow.Record, 0, batch)
	now := t0
	n := 0
	b.ResetTimer()
	for b.Loop() {
		now = now.Add(time.Second)
		s.Tick(now)
		recs = recs[:0]
		for len(recs) < batch {
			r := benchRecord(n%10_000, n, now)
			recs = append(recs, r)
			if n%2 == 0 {
				srv := r
				srv.Observer, srv.Source.PID, srv.Source.Command = "server", 0, ""
				srv.Destination.IP = netip.AddrFrom4([4]byte{10, 2, 0, 1})
				recs = append(recs, srv)
			}
			n++
		}
		s.Ingest(recs)
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemory10kEdges: the heap one bucket of 10,000 edges takes,
// and what a further bucket of the same edges adds.
func BenchmarkMemory10kEdges(b *testing.B) {
	for b.Loop() {
		before := heap()
		s := New(Config{})
		fill := func(end time.Time) {
			s.Tick(end)
			recs := make([]flow.Record, 10_000)
			for e := range recs {
				recs[e] = benchRecord(e, e, end)
			}
			s.Ingest(recs)
		}
		fill(t0.Add(5 * time.Second))
		one := heap()
		fill(t0.Add(15 * time.Second))
		two := heap()
		if s.Stats().Edges != 10_000 {
			b.Fatalf("%+v", s.Stats())
		}
		b.ReportMetric(float64(one-before)/(1<<20), "MiB/first-bucket")
		b.ReportMetric(float64(two-one)/10_000, "B/edge-per-further-bucket")
		runtime.KeepAlive(s)
	}
}

// BenchmarkQuery24h: a 24 h workload-level query over 8,640 buckets in
// which 10,000 edges each appear once every 10 minutes (167 per bucket).
func BenchmarkQuery24h(b *testing.B) {
	s := New(Config{})
	const buckets = 8640
	per := (10_000 + 59) / 60
	e := 0
	for i := range buckets {
		end := t0.Add(time.Duration(i)*10*time.Second + 5*time.Second)
		s.Tick(end)
		recs := make([]flow.Record, per)
		for j := range recs {
			recs[j] = benchRecord(e%10_000, e, end)
			e++
		}
		s.Ingest(recs)
	}
	at := t0.Add(buckets * 10 * time.Second)
	b.ResetTimer()
	var g Graph
	for b.Loop() {
		var err error
		if g, err = s.Query(Query{Level: LevelWorkload, Window: 24 * time.Hour, At: at}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(g.Edges)), "edges-out")
	b.ReportMetric(float64(s.Stats().Edges), "edges-stored")
}
