package history

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// realistic returns n records as a node's interval brings them: pods of a
// few workloads talking to a few Services, distinct ports, RTTs and bytes.
func realistic(n int, end time.Time) []flow.Record {
	out := make([]flow.Record, n)
	for i := range out {
		c, _ := sides(i, end)
		c.Source.Pod = fmt.Sprintf("client-%d", i%50)
		c.Source.IP = netip.AddrFrom4([4]byte{10, 244, byte(i % 50), 10})
		c.Source.Labels = map[string]string{"app": "client", "pod-template-hash": "5c8f7d"}
		c.Source.CgroupID, c.Source.ContainerID = uint64(1000+i%50), fmt.Sprintf("%064x", i%50)
		c.Destination.Service.Name = fmt.Sprintf("api-%d", i%10)
		c.BytesToDst, c.BytesToSrc = uint64(1000+i%977), uint64(100+i%313)
		c.SegmentsToDst, c.SegmentsToSrc, c.IPVersion = 5, 4, 4
		out[i] = c
	}
	return out
}

// BenchmarkAppend measures the log's write rate by batch size, one
// transaction each: a commit's fixed cost against the per-record one.
func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			db, err := Open(context.Background(), Config{Dir: b.TempDir()}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			recs := realistic(n, t0)
			b.ResetTimer()
			for i := range b.N {
				if err := db.Append(context.Background(), []Event{{Pos: uint64(i + 1), Time: t0, Agent: "a", Seq: uint64(i), Records: recs}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkCheckpointFlows measures the flows table's write rate and what
// a stored record costs on disk, without requests and with two HTTP
// groups per record (a keep-alive connection's 200s and 404s).
func BenchmarkCheckpointFlows(b *testing.B) {
	for _, groups := range []int{0, 2} {
		b.Run(fmt.Sprintf("request_groups=%d", groups), func(b *testing.B) {
			recs := realistic(10_000, t0)
			for i := range recs {
				for g := range groups {
					status := []int{200, 404}[g]
					recs[i].Requests = append(recs[i].Requests, flow.Requests{Protocol: flow.HTTP, Method: "GET",
						Path: fmt.Sprintf("/api/v%d/users/{id}", i%5), Host: "api", Status: status, Count: uint32(1 + i%40),
						Latency: &flow.RTT{MinMicros: uint32(300 + i%97), AvgMicros: uint32(900 + i%311), MaxMicros: uint32(4000 + i%1009)}})
				}
			}
			benchCheckpointFlows(b, recs)
		})
	}
}

func benchCheckpointFlows(b *testing.B, recs []flow.Record) {
	ctx := context.Background()
	db, err := Open(ctx, Config{Dir: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Append(ctx, []Event{{Pos: 1, Time: t0, Tick: true}}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if err := db.Checkpoint(ctx, Checkpoint{Pos: 1, Time: t0, Flows: recs}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
	if _, err := db.w.ExecContext(ctx, `CHECKPOINT`); err != nil {
		b.Fatal(err)
	}
	used, err := db.usedBytes(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(used)/float64(b.N*len(recs)), "bytes/record")
}
