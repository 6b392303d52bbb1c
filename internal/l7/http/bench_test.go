package http

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/l7"
)

// keepAlive is typical keep-alive traffic as the kernel samples it: a
// request of about 200 bytes and a response with a 1 KiB body per call,
// each capped at 256 bytes.
func keepAlive(requests int) (msgs []l7.Message, captured int64) {
	for i := range requests {
		req := fmt.Sprintf("GET /api/v1/users/%d/orders?page=2 HTTP/1.1\r\nHost: shop.svc.cluster.local:8080\r\n"+
			"User-Agent: Go-http-client/1.1\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\n\r\n", 1000+i)
		resp := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n" +
			"Content-Length: 1024\r\n\r\n" + strings.Repeat("x", 1024)
		for _, m := range []l7.Message{
			msg(l7.FromClient, uint64(2*i+1)*1000, req, 256),
			msg(l7.FromServer, uint64(2*i+2)*1000, resp, 256),
		} {
			msgs = append(msgs, m)
			captured += int64(len(m.Data))
		}
	}
	return msgs, captured
}

// BenchmarkParserKeepAlive measures the parser on captured bytes (MB/s
// of the samples' Data) and per request.
func BenchmarkParserKeepAlive(b *testing.B) {
	const requests = 100
	msgs, captured := keepAlive(requests)
	p := (&Protocol{}).New()
	var done []l7.Request
	b.SetBytes(captured)
	b.ReportAllocs()
	for b.Loop() {
		for _, m := range msgs {
			var err error
			if done, err = p.Feed(m, done[:0]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*requests), "ns/request")
}
