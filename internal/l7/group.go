package l7

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"strings"

	"github.com/flowlens/flowlens/internal/flow"
)

// groupKey is every identifying field of flow.Requests; headers in one
// canonical string.
type groupKey struct {
	protocol            flow.L7Protocol
	tls                 bool
	method, path, host  string
	status              int
	query, qtype, rcode string
	err                 string
	headers             string
}

func keyOf(info *flow.Requests) groupKey {
	return groupKey{
		protocol: info.Protocol, tls: info.TLS,
		method: info.Method, path: info.Path, host: info.Host, status: info.Status,
		query: info.Query, qtype: info.QType, rcode: info.RCode, err: info.Error,
		headers: canonicalHeaders(info.Headers),
	}
}

// canonicalHeaders writes a header map as sorted "name=value" lines.
func canonicalHeaders(h map[string]string) string {
	if len(h) == 0 {
		return ""
	}
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(h[k])
		b.WriteByte('\n')
	}
	return b.String()
}

// group is the requests of one connection and interval that look alike.
type group struct {
	key      groupKey
	info     flow.Requests // identifying fields and Answers
	count    uint32
	failed   uint32
	answered uint32
	sumUS    uint64
	minUS    uint32
	maxUS    uint32
}

// groups are a connection's groups of the current interval; a handful
// each, so a slice searched in order beats a map.
type groups struct {
	list []group
}

// add counts r in its group, or in the overflow group when there are
// limit groups already (and returns false).
func (gs *groups) add(r *Request, limit int) bool {
	key := keyOf(&r.Info)
	g, fits := gs.find(key, limit)
	if !fits {
		key = groupKey{protocol: key.protocol, tls: key.tls, method: OverflowMethod}
		g, _ = gs.find(key, math.MaxInt)
		g.info = flow.Requests{Protocol: key.protocol, TLS: key.tls, Method: OverflowMethod}
	} else if g.count == 0 {
		g.info = r.Info
		g.info.Answers = nil
	}
	g.count++
	failed := r.Failed || r.ResponNS == 0
	if failed {
		g.failed++
	}
	if r.ResponNS != 0 {
		us := latencyMicros(r.StartNS, r.ResponNS)
		if g.answered == 0 || us < g.minUS {
			g.minUS = us
		}
		g.maxUS = max(g.maxUS, us)
		g.sumUS += uint64(us)
		g.answered++
	}
	if fits {
		g.info.Answers = mergeAnswers(g.info.Answers, r.Info.Answers)
	}
	return fits
}

// find returns key's group, made if missing and fewer than limit exist.
func (gs *groups) find(key groupKey, limit int) (*group, bool) {
	for i := range gs.list {
		if gs.list[i].key == key {
			return &gs.list[i], true
		}
	}
	if len(gs.list) >= limit {
		return nil, false
	}
	gs.list = append(gs.list, group{key: key})
	return &gs.list[len(gs.list)-1], true
}

// take returns the groups as flow.Requests, sorted, and starts over.
func (gs *groups) take() []flow.Requests {
	slices.SortFunc(gs.list, func(a, b group) int { return compareKeys(&a.key, &b.key) })
	out := make([]flow.Requests, len(gs.list))
	for i := range gs.list {
		g := &gs.list[i]
		out[i] = g.info
		out[i].Count, out[i].Failed = g.count, g.failed
		if g.answered > 0 {
			out[i].Latency = &flow.RTT{
				MinMicros: g.minUS,
				AvgMicros: uint32(g.sumUS / uint64(g.answered)),
				MaxMicros: g.maxUS,
			}
		}
	}
	clear(gs.list)
	gs.list = gs.list[:0]
	return out
}

func compareKeys(a, b *groupKey) int {
	if c := cmp.Compare(a.protocol, b.protocol); c != 0 {
		return c
	}
	for _, p := range [...][2]string{
		{a.method, b.method}, {a.path, b.path}, {a.host, b.host},
	} {
		if c := cmp.Compare(p[0], p[1]); c != 0 {
			return c
		}
	}
	if c := cmp.Compare(a.status, b.status); c != 0 {
		return c
	}
	for _, p := range [...][2]string{
		{a.query, b.query}, {a.qtype, b.qtype}, {a.rcode, b.rcode}, {a.err, b.err}, {a.headers, b.headers},
	} {
		if c := cmp.Compare(p[0], p[1]); c != 0 {
			return c
		}
	}
	switch {
	case a.tls == b.tls:
		return 0
	case b.tls:
		return -1
	}
	return 1
}

// latencyMicros is from a request's first byte to its response's, in µs;
// 0 when the clocks disagree (the response's call returned first).
func latencyMicros(start, respon uint64) uint32 {
	if respon <= start {
		return 0
	}
	return uint32(min((respon-start)/1000, math.MaxUint32))
}

// mergeAnswers adds the addresses of add that dst lacks, up to
// flow.MaxAnswers.
func mergeAnswers(dst, add []netip.Addr) []netip.Addr {
	for _, a := range add {
		if len(dst) >= flow.MaxAnswers {
			break
		}
		if !slices.Contains(dst, a) {
			dst = append(dst, a)
		}
	}
	return dst
}
