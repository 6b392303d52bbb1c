package topology

import (
	"cmp"
	"maps"
	"slices"

	"github.com/flowlens/flowlens/internal/flow"
)

// Requests on edges. A record's request groups (flow.Requests) are folded
// into its edge with the rest of the record, so they follow the dedup
// rule: a connection seen from both sides has the same requests in both
// sides' records, and they are counted from the side its connection is
// counted from (the client's, which sees the network's latency too; the
// server's when no client is observed).
//
// An edge keeps one set of figures per (protocol, class): a small,
// bounded breakdown whatever the paths, queries and commands, which stay
// on the flow records:
//
//	protocol   class
//	http       1xx 2xx 3xx 4xx 5xx, other (a status outside 100-599), none (never answered)
//	dns        noerror formerr servfail nxdomain notimp refused, other, none (never answered)
//	postgres   ok, error (an error response), none (never answered)
//	redis      ok, error (an error reply), none (never answered)
//
// Latency is what the groups carry (min/avg/max per group): the edge
// keeps the min, the max, and the sum of avg×count with its count, so
// its average is exact and merges exactly; percentiles would need each
// request's latency, which the records do not carry.

// reqClass is one row of the breakdown.
type reqClass struct {
	protocol flow.L7Protocol
	class    string
}

// reqCounts are the figures of one reqClass.
type reqCounts struct {
	requests, failed uint64
	// Latency over the answered requests: latSum is the sum of each
	// group's average times its count, latSamples that count.
	latSamples, latSum uint64
	latMin, latMax     uint32
}

// dnsRCodes are the response codes a DNS class names; the rest are other.
var dnsRCodes = []string{"noerror", "formerr", "servfail", "nxdomain", "notimp", "refused"}

// requestClasses are every class of each protocol, as RequestClass names them.
var requestClasses = map[flow.L7Protocol][]string{
	flow.HTTP:     {"1xx", "2xx", "3xx", "4xx", "5xx", "other", "none"},
	flow.DNS:      append(slices.Clone(dnsRCodes), "other", "none"),
	flow.Postgres: {"ok", "error", "none"},
	flow.Redis:    {"ok", "error", "none"},
}

// MaxRequestClasses is the most classes one protocol has.
const MaxRequestClasses = 8

// RequestClasses lists every class RequestClass gives protocol p's groups,
// for a bounded index of them (the metrics' series).
func RequestClasses(p flow.L7Protocol) []string { return requestClasses[p] }

// RequestClass is the class of a request group on edges and in metrics
// (see the table above): bounded per protocol.
func RequestClass(g *flow.Requests) string {
	switch g.Protocol {
	case flow.HTTP:
		switch {
		case g.Status == 0:
			return "none"
		case g.Status < 100 || g.Status > 599:
			return "other"
		}
		return string(rune('0'+g.Status/100)) + "xx"
	case flow.DNS:
		switch {
		case g.RCode == "":
			return "none"
		case slices.Contains(dnsRCodes, g.RCode):
			return g.RCode
		}
		return "other"
	}
	switch {
	case g.Error != "":
		return "error"
	case g.Latency == nil && g.Failed == g.Count: // never answered
		return "none"
	}
	return "ok"
}

func (c *counts) addRequests(groups []flow.Requests) {
	for i := range groups {
		g := &groups[i]
		if !slices.Contains(flow.L7Protocols, g.Protocol) {
			continue // not a class that could be bounded
		}
		rc := reqCounts{requests: uint64(g.Count), failed: uint64(g.Failed)}
		if g.Latency != nil && g.Count > 0 {
			rc.latSamples, rc.latSum = uint64(g.Count), uint64(g.Latency.AvgMicros)*uint64(g.Count)
			rc.latMin, rc.latMax = g.Latency.MinMicros, g.Latency.MaxMicros
		}
		c.addReqCounts(reqClass{g.Protocol, RequestClass(g)}, rc)
	}
}

func (c *counts) addReqCounts(k reqClass, o reqCounts) {
	if c.requests == nil {
		c.requests = map[reqClass]reqCounts{}
	}
	r := c.requests[k]
	r.requests += o.requests
	r.failed += o.failed
	if o.latSamples > 0 {
		if r.latSamples == 0 || o.latMin < r.latMin {
			r.latMin = o.latMin
		}
		r.latMax = max(r.latMax, o.latMax)
		r.latSamples += o.latSamples
		r.latSum += o.latSum
	}
	c.requests[k] = r
}

func (c *counts) mergeRequests(o *counts) {
	for k, r := range o.requests {
		c.addReqCounts(k, r)
	}
}

// RequestFigures are an edge's requests of one protocol and class in a
// window.
type RequestFigures struct {
	Protocol          flow.L7Protocol `json:"protocol"`
	Class             string          `json:"class"` // see RequestClass
	Requests          uint64          `json:"requests"`
	RequestsPerSecond float64         `json:"requests_per_second"`
	Failed            uint64          `json:"failed"`
	// Latency of the answered requests, µs (request start to response
	// start as the counted side saw it): min and max exact, avg exact
	// over the groups' averages weighted by their counts.
	LatencySamples uint64 `json:"latency_samples"`
	LatencyMin     uint32 `json:"latency_min_us"`
	LatencyAvg     uint32 `json:"latency_avg_us"`
	LatencyMax     uint32 `json:"latency_max_us"`
}

// requestFigures lists c's breakdown sorted by protocol and class; nil
// when the edge carried no requests.
func (c *counts) requestFigures(seconds float64) []RequestFigures {
	if len(c.requests) == 0 {
		return nil
	}
	out := make([]RequestFigures, 0, len(c.requests))
	for _, k := range slices.SortedFunc(maps.Keys(c.requests), compareReqClass) {
		r := c.requests[k]
		f := RequestFigures{Protocol: k.protocol, Class: k.class, Requests: r.requests, Failed: r.failed,
			RequestsPerSecond: float64(r.requests) / seconds,
			LatencySamples:    r.latSamples, LatencyMin: r.latMin, LatencyMax: r.latMax}
		if r.latSamples > 0 {
			f.LatencyAvg = uint32((r.latSum + r.latSamples/2) / r.latSamples)
		}
		out = append(out, f)
	}
	return out
}

func compareReqClass(a, b reqClass) int {
	return cmp.Or(cmp.Compare(a.protocol, b.protocol), cmp.Compare(a.class, b.class))
}

// requestTotals are all requests and failed ones, every protocol together.
func (c *counts) requestTotals() (requests, failed uint64) {
	for _, r := range c.requests {
		requests += r.requests
		failed += r.failed
	}
	return requests, failed
}

// RequestCounts is the exported mirror of one reqClass's figures in one
// bucket, for persistence.
type RequestCounts struct {
	Protocol         flow.L7Protocol
	Class            string
	Requests, Failed uint64
	LatencySamples   uint64
	LatencySumMicros uint64
	LatencyMinMicros uint32
	LatencyMaxMicros uint32
}

func (c *counts) exportRequests() []RequestCounts {
	if len(c.requests) == 0 {
		return nil
	}
	out := make([]RequestCounts, 0, len(c.requests))
	for _, k := range slices.SortedFunc(maps.Keys(c.requests), compareReqClass) {
		r := c.requests[k]
		out = append(out, RequestCounts{Protocol: k.protocol, Class: k.class, Requests: r.requests, Failed: r.failed,
			LatencySamples: r.latSamples, LatencySumMicros: r.latSum, LatencyMinMicros: r.latMin, LatencyMaxMicros: r.latMax})
	}
	return out
}

func (c *counts) restoreRequests(rows []RequestCounts) {
	for _, x := range rows {
		c.addReqCounts(reqClass{x.Protocol, x.Class}, reqCounts{requests: x.Requests, failed: x.Failed,
			latSamples: x.LatencySamples, latSum: x.LatencySumMicros, latMin: x.LatencyMinMicros, latMax: x.LatencyMaxMicros})
	}
}
