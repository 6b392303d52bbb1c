package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/flowlens/flowlens/internal/topology"
)

// The parameters /api/v1/topology/series takes beyond the topology's
// level, window, at and namespace (since has no meaning there).
var seriesParams = []string{"level", "window", "at", "namespace", "step", "edge"}

// resolveParams are the parameters /api/v1/topology/resolve knows.
var resolveParams = []string{"level", "ip"}

// seriesRequest is a parsed /api/v1/topology/series query.
type seriesRequest struct {
	query topology.Query
	step  time.Duration // 0: the store picks one
	edges []string
}

// unknownParam refuses the first parameter of q not in known.
func unknownParam(q url.Values, known []string) *rejection {
	for k := range q {
		if !slices.Contains(known, k) {
			return badRequest(rejectUnknownParameter, "unknown query parameter %q; known: %s", k, strings.Join(known, ", "))
		}
	}
	return nil
}

// parseSeriesRequest reads a query: the window as /api/v1/topology reads
// it, a step (a Go duration; the store checks it against its resolution)
// and 1 to MaxSeriesEdges edge ids.
func parseSeriesRequest(q url.Values, now time.Time) (seriesRequest, *rejection) {
	if rej := unknownParam(q, seriesParams); rej != nil {
		return seriesRequest{}, rej
	}
	rest := url.Values{}
	for k, vs := range q {
		if k != "step" && k != "edge" {
			rest[k] = vs
		}
	}
	topo, rej := parseTopologyRequest(rest, now)
	if rej != nil {
		return seriesRequest{}, rej
	}
	req := seriesRequest{query: topo.query, edges: q["edge"]}
	switch steps := q["step"]; {
	case len(steps) > 1:
		return seriesRequest{}, badRequest(rejectInvalidParameter, "step given %d times: want it once", len(steps))
	case len(steps) == 1 && steps[0] != "":
		d, err := time.ParseDuration(steps[0])
		if err != nil || d <= 0 {
			return seriesRequest{}, badRequest(rejectInvalidParameter, "step=%q: want a positive duration, e.g. 30s", steps[0])
		}
		req.step = d
	}
	if n := len(req.edges); n == 0 || n > topology.MaxSeriesEdges {
		return seriesRequest{}, badRequest(rejectInvalidParameter, "edge given %d times: want 1 to %d edge ids", n, topology.MaxSeriesEdges)
	}
	for _, id := range req.edges {
		// An edge id is 16 hex digits (topology.EdgeID); refusing others
		// keeps a request's size bounded by its count.
		if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
			return seriesRequest{}, badRequest(rejectInvalidParameter, "edge=%q: want an edge id, 16 hex digits", id)
		}
	}
	return req, nil
}

// topologySeries answers GET /api/v1/topology/series: the figures of the
// edges asked for, step by step over the window.
func (s *Server) topologySeries(w http.ResponseWriter, r *http.Request) {
	req, rej := parseSeriesRequest(r.URL.Query(), time.Now())
	var out topology.Series
	if rej == nil {
		var err error
		// As with the topology: the store refuses only what was asked.
		if out, err = s.topology.Series(req.query, req.step, req.edges); err != nil {
			rej = badRequest(rejectInvalidParameter, "%v", err)
		}
	}
	if rej != nil {
		s.refuse(w, rej)
		return
	}
	s.writeJSON(w, "topology series", out)
}

// Resolved is the answer of GET /api/v1/topology/resolve: the graph node
// an address is, as the most recent flow carrying it names it.
type Resolved struct {
	Level topology.Level `json:"level"`
	IP    netip.Addr     `json:"ip"`
	Node  topology.Node  `json:"node"`
	// Side is the end of that flow the address was: source or destination.
	Side string `json:"side"`
	// Time is the end of that flow's interval.
	Time time.Time `json:"time"`
}

// parseResolveRequest reads a query: a level (default the topology's) and
// one address.
func parseResolveRequest(q url.Values) (topology.Level, netip.Addr, *rejection) {
	if rej := unknownParam(q, resolveParams); rej != nil {
		return "", netip.Addr{}, rej
	}
	for k, vs := range q {
		if len(vs) > 1 {
			return "", netip.Addr{}, badRequest(rejectInvalidParameter, "%s given %d times: want it once", k, len(vs))
		}
	}
	level := DefaultTopologyLevel
	if v := q.Get("level"); v != "" {
		var err error
		if level, err = topology.ParseLevel(v); err != nil {
			return "", netip.Addr{}, badRequest(rejectInvalidParameter, "level: %v", err)
		}
	}
	ip, err := netip.ParseAddr(q.Get("ip"))
	if err != nil {
		return "", netip.Addr{}, badRequest(rejectInvalidParameter, "ip=%q: want an IP address", q.Get("ip"))
	}
	return level, ip.Unmap(), nil
}

// topologyResolve answers GET /api/v1/topology/resolve: which node of the
// graph at a level an address is, from the flows the ring holds, newest
// first. The topology store cannot answer it: it keeps an end's address
// only when nothing else names the end. The newest record that names the
// address's end by something other than the address wins (on a plain
// host the client's record knows the server by address only, the
// server's own record by its process; a refused connect names nobody);
// without one, the newest record names it external:<ip>. 404 when no
// record the ring holds carries the address.
func (s *Server) topologyResolve(w http.ResponseWriter, r *http.Request) {
	level, ip, rej := parseResolveRequest(r.URL.Query())
	if rej != nil {
		s.refuse(w, rej)
		return
	}
	var found *Resolved
	oldest, end := s.ring.Bounds()
	for hi := end; hi > oldest; {
		lo := hi - min(chunk, hi-oldest)
		es, lost := s.readRange(lo, hi, nil)
		for i := len(es) - 1; i >= 0; i-- {
			rec := &es[i].Record
			for _, dst := range []bool{true, false} {
				ep := &rec.Source
				if dst {
					ep = &rec.Destination
				}
				if ep.IP.Unmap() != ip {
					continue
				}
				n := topology.NodeOf(rec, dst, level)
				if found == nil || n.Kind != topology.NodeExternal {
					side := "source"
					if dst {
						side = "destination"
					}
					found = &Resolved{Level: level, IP: ip, Node: n, Side: side, Time: rec.Time.UTC()}
				}
				if n.Kind != topology.NodeExternal {
					s.writeJSON(w, "resolved address", found)
					return
				}
			}
		}
		if lost > 0 {
			break // overwritten meanwhile: nothing older is left
		}
		hi = lo
	}
	if found == nil {
		http.Error(w, fmt.Sprintf("no flow the agent holds carries %s", ip), http.StatusNotFound)
		return
	}
	s.writeJSON(w, "resolved address", found)
}

// refuse counts and answers a refused request.
func (s *Server) refuse(w http.ResponseWriter, rej *rejection) {
	s.stats.reject(rej.reason)
	http.Error(w, rej.msg, rej.status)
}

// writeJSON answers with v as one line of JSON.
func (s *Server) writeJSON(w http.ResponseWriter, what string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode "+what, "err", err)
		http.Error(w, fmt.Sprintf("encode %s: %v", what, err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}
