package l7_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/dns"
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

// BenchmarkTrackerDNSSocketPerQuery is the agent's user-space L7 path per
// lookup of a resolver that opens a socket per query, with both ends on
// the node: the query and the answer seen on the client's socket and on
// the server's (four samples, two conversations), the client's closed
// with its socket, and one Take per 1,000 lookups (an interval at 1,000
// a second), the Take handing out both conversations' groups.
func BenchmarkTrackerDNSSocketPerQuery(b *testing.B) {
	tr := l7.NewTracker(l7.Config{Protocols: []l7.Protocol{dns.Protocol{}}})
	const lookups = 1000
	server := netip.MustParseAddrPort("10.0.0.1:53")
	type lookup struct{ client, server l7.ConnKey }
	keys := make([]lookup, lookups)
	for i := range keys {
		peer := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), uint16(20000+i))
		keys[i] = lookup{
			client: l7.ConnKey{Cookie: uint64(1000 + i), Local: peer, Remote: server, UDP: true},
			server: l7.ConnKey{Cookie: 1, Local: server, Remote: peer, UDP: true, Role: flow.RoleServer},
		}
	}
	query, answer := dnsExchange(b, "api.example.com.")
	b.ReportAllocs()
	ns, taken := uint64(1e9), 0
	for b.Loop() {
		for i := range keys {
			k := &keys[i]
			k.client.Cookie += lookups // a new socket per query
			for _, s := range []l7.Sample{
				{Key: k.client, Hint: l7.HintDNS, Msg: l7.Message{Dir: l7.FromClient, Len: len(query), Data: query}},
				{Key: k.server, Hint: l7.HintDNS, Msg: l7.Message{Dir: l7.FromClient, Len: len(query), Data: query}},
				{Key: k.server, Hint: l7.HintDNS, Msg: l7.Message{Dir: l7.FromServer, Len: len(answer), Data: answer}},
				{Key: k.client, Hint: l7.HintDNS, Msg: l7.Message{Dir: l7.FromServer, Len: len(answer), Data: answer}},
			} {
				ns += 1000
				s.Msg.NS = ns
				tr.Sample(s)
			}
			tr.Closed(k.client, ns)
		}
		tr.Take(ns, func(_ l7.ConnKey, g []flow.Requests) { taken += len(g) })
	}
	if taken == 0 {
		b.Fatal("no requests taken")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lookups), "ns/lookup")
}

// dnsExchange is an A query for name and its answer, one address.
func dnsExchange(b *testing.B, name string) (query, answer []byte) {
	b.Helper()
	q := dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	query, err := (&dnsmessage.Message{Header: dnsmessage.Header{ID: 7, RecursionDesired: true}, Questions: []dnsmessage.Question{q}}).Pack()
	if err != nil {
		b.Fatal(err)
	}
	answer, err = (&dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 7, Response: true, RecursionDesired: true, RecursionAvailable: true},
		Questions: []dnsmessage.Question{q},
		Answers: []dnsmessage.Resource{{
			Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
			Body:   &dnsmessage.AResource{A: [4]byte{10, 1, 2, 3}},
		}},
	}).Pack()
	if err != nil {
		b.Fatal(err)
	}
	return query, answer
}
