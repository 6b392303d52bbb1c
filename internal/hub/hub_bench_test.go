package hub

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// intervalRecords is one interval of the bench's tcp-5k load as the node
// hands it to its embedded hub: n short connections between two
// processes in two network namespaces, each seen by both sockets.
func intervalRecords(n int, end time.Time, first int) []flow.Record {
	client := flow.Endpoint{IP: netip.MustParseAddr("10.200.0.2"), Netns: 4026532801, PID: 4711, Command: "peer", CgroupID: 9001}
	server := flow.Endpoint{IP: netip.MustParseAddr("10.200.0.1"), Port: 8080, Netns: 4026532802, PID: 4712, Command: "peer", CgroupID: 9002}
	out := make([]flow.Record, 0, 2*n)
	for i := range n {
		c := flow.Record{Time: end, Start: end.Add(-time.Second), Node: "vm", Observer: "client", Protocol: flow.TCP, IPVersion: 4,
			Verdict: flow.VerdictClosed, ConnStart: end.Add(-time.Duration(i%900) * time.Millisecond),
			Source: client, Destination: server, Opened: 1, Closed: 1, BytesToDst: 1000, BytesToSrc: 2000,
			SegmentsToDst: 5, SegmentsToSrc: 4, RTT: &flow.RTT{MinMicros: 40, AvgMicros: 40, MaxMicros: 40},
			ConnectLatency: &flow.RTT{MinMicros: 90, AvgMicros: 90, MaxMicros: 90}}
		c.Source.Port = uint16(10000 + (first+i)%50000)
		s := c
		s.Observer, s.ConnectLatency = "server", nil
		out = append(out, c, s)
	}
	return out
}

// BenchmarkEmbeddedInterval is what `flowlens up`'s hub does with one
// interval of 5,000 short connections (10,000 records): Receive, then
// Tick (join, topology, ring). Reported per record.
func BenchmarkEmbeddedInterval(b *testing.B) {
	ctx := context.Background()
	h, err := New(ctx, Config{ExternalTicks: true, RingSize: 1 << 16}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	const conns = 5000
	now := time.Unix(1_700_000_000, 0)
	a := Agent{ID: "vm", Node: "vm", Incarnation: 1, Addr: "local"}
	b.ReportAllocs()
	var seq uint64
	for b.Loop() {
		b.StopTimer()
		now = now.Add(time.Second)
		recs := intervalRecords(conns, now, int(seq)*conns)
		b.StartTimer()
		seq++
		if err := h.Receive(ctx, &Batch{Agent: a, Seq: seq, SentAt: now, Records: recs}); err != nil {
			b.Fatal(err)
		}
		h.Tick(ctx, now)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(2*conns), "ns/record")
	if s := h.Topology(); s.RecordsCounted == 0 {
		b.Fatalf("nothing counted: %+v", s)
	}
}
