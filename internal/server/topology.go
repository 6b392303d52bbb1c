package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/flowlens/flowlens/internal/topology"
)

// Topology answers topology queries: the hub's store, behind whatever
// lock its owner keeps.
type Topology interface {
	Query(q topology.Query) (topology.Graph, error)
	Diff(q topology.Query, since time.Time, factor float64) (topology.Diff, error)
	Series(q topology.Query, step time.Duration, ids []string) (topology.Series, error)
}

// Defaults of /api/v1/topology's parameters.
const (
	DefaultTopologyLevel  = topology.LevelWorkload
	DefaultTopologyWindow = time.Minute
	// DiffFactor is how much an edge's rate must grow or shrink, either
	// way, to be listed as changed in a diff.
	DiffFactor = 2.0
	// maxNamespace is the longest Kubernetes namespace name (a DNS label).
	maxNamespace = 63
)

// topologyParams are the query parameters /api/v1/topology knows.
var topologyParams = []string{"level", "window", "at", "since", "namespace"}

// SetTopology serves GET /api/v1/topology from t; without it the route is
// not served.
func (s *Server) SetTopology(t Topology) { s.topology = t }

// topologyRequest is a parsed /api/v1/topology query.
type topologyRequest struct {
	query topology.Query
	since time.Time // zero: no diff
}

// parseTopologyRequest reads a query; at defaults to now.
func parseTopologyRequest(q url.Values, now time.Time) (topologyRequest, *rejection) {
	for k, vs := range q {
		if !slices.Contains(topologyParams, k) {
			return topologyRequest{}, badRequest(rejectUnknownParameter, "unknown query parameter %q; known: %s", k, strings.Join(topologyParams, ", "))
		}
		if len(vs) > 1 {
			return topologyRequest{}, badRequest(rejectInvalidParameter, "%s given %d times: want it once", k, len(vs))
		}
	}
	req := topologyRequest{query: topology.Query{Level: DefaultTopologyLevel, Window: DefaultTopologyWindow, At: now}}
	var err error
	if v := q.Get("level"); v != "" {
		if req.query.Level, err = topology.ParseLevel(v); err != nil {
			return topologyRequest{}, badRequest(rejectInvalidParameter, "level: %v", err)
		}
	}
	if v := q.Get("window"); v != "" {
		if req.query.Window, err = topology.ParseWindow(v); err != nil {
			return topologyRequest{}, badRequest(rejectInvalidParameter, "%v", err)
		}
	}
	if v := q.Get("at"); v != "" {
		if req.query.At, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return topologyRequest{}, badRequest(rejectInvalidParameter, "at=%q: want an RFC 3339 time, e.g. 2026-11-29T20:00:00Z", v)
		}
	}
	if v := q.Get("since"); v != "" {
		if req.since, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return topologyRequest{}, badRequest(rejectInvalidParameter, "since=%q: want an RFC 3339 time, e.g. 2026-11-29T20:00:00Z", v)
		}
		if !req.since.Before(req.query.At) {
			return topologyRequest{}, badRequest(rejectInvalidParameter, "since=%q: want a time before at (%s)", v, req.query.At.UTC().Format(time.RFC3339))
		}
	}
	if v := q.Get("namespace"); len(v) > maxNamespace {
		return topologyRequest{}, badRequest(rejectInvalidParameter, "namespace: %d characters, a namespace has at most %d", len(v), maxNamespace)
	}
	req.query.Namespace = q.Get("namespace")
	return req, nil
}

// topologyGraph answers GET /api/v1/topology: the graph of one window, or
// with since, what changed between the window ending there and this one.
func (s *Server) topologyGraph(w http.ResponseWriter, r *http.Request) {
	req, rej := parseTopologyRequest(r.URL.Query(), time.Now())
	var (
		out any
		err error
	)
	if rej == nil {
		if req.since.IsZero() {
			out, err = s.topology.Query(req.query)
		} else {
			out, err = s.topology.Diff(req.query, req.since, DiffFactor)
		}
		// The store refuses only what the request asked: a window it
		// cannot cut into its buckets or does not retain.
		if err != nil {
			rej = badRequest(rejectInvalidParameter, "%v", err)
		}
	}
	if rej != nil {
		s.stats.reject(rej.reason)
		http.Error(w, rej.msg, rej.status)
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		s.log.Error("encode topology", "err", err)
		http.Error(w, fmt.Sprintf("encode topology: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}
