package l7_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/http"
)

// BenchmarkTrackerHTTPKeepAlive is the agent's whole user-space L7 path
// per request: two samples through the tracker (lookup, parser, groups),
// and one Take per 100 requests.
func BenchmarkTrackerHTTPKeepAlive(b *testing.B) {
	proto, err := http.New(http.Config{})
	if err != nil {
		b.Fatal(err)
	}
	tr := l7.NewTracker(l7.Config{Protocols: []l7.Protocol{proto}})
	const conns, requests = 10, 100
	var samples []l7.Sample
	var captured int64
	for i := range requests {
		req := fmt.Sprintf("GET /api/v1/users/%d HTTP/1.1\r\nHost: shop:8080\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n", i)
		resp := fmt.Sprintf("HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: 1024\r\n\r\n%s", 200+i%2*204, strings.Repeat("x", 1024))
		for _, s := range []l7.Sample{
			sample(uint64(i%conns), l7.FromClient, 0, req),
			sample(uint64(i%conns), l7.FromServer, 0, resp),
		} {
			s.Msg.Data = s.Msg.Data[:min(256, len(s.Msg.Data))]
			captured += int64(len(s.Msg.Data))
			samples = append(samples, s)
		}
	}
	b.SetBytes(captured)
	b.ReportAllocs()
	ns := uint64(1e9)
	for b.Loop() {
		for _, s := range samples {
			ns += 1000
			s.Msg.NS = ns
			tr.Sample(s)
		}
		tr.Take(ns, func(l7.ConnKey, []flow.Requests) {})
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*requests), "ns/request")
}
