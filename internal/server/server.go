// Package server serves flowlens' HTTP API: flows as JSON lines (with
// follow), Prometheus metrics, and health, on TCP (optionally TLS with client
// certificates, or a bearer token) and unix sockets.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/flowlens/flowlens/internal/ring"
)

// Server is the HTTP front of an agent (and later the hub).
type Server struct {
	ring   *ring.Ring
	reg    *prometheus.Registry
	ready  func() error
	log    *slog.Logger
	limits Limits
	stats  stats
	// topology serves /api/v1/topology when set (topology.go).
	topology Topology
	// history answers time-bounded flow queries when set (history.go).
	history History
	// agents serves /api/v1/agents when set (agents.go).
	agents func() any
	// grpc shares the API listeners when set (grpc.go).
	grpc *grpc.Server
	// ui serves the web UI at / when set (ui.go).
	ui http.Handler
}

// New returns a server over a flow ring; ready says whether /readyz is OK.
func New(r *ring.Ring, reg *prometheus.Registry, ready func() error, log *slog.Logger, limits Limits) *Server {
	return &Server{ring: r, reg: reg, ready: ready, log: log, limits: limits}
}

// Handler routes the whole API with no token: what a unix socket serves.
func (s *Server) Handler() http.Handler { return s.handler(false, nil) }

// listenerHandler routes what l serves.
func (s *Server) listenerHandler(l Listener) http.Handler {
	if l.PprofOnly {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		return mux
	}
	return s.handler(l.MetricsOnly, l.Token)
}

// handler routes the API, or with metricsOnly only /metrics and health;
// with a token every route but health asks for it.
func (s *Server) handler(metricsOnly bool, token []byte) http.Handler {
	guard := func(h http.Handler) http.Handler {
		if token == nil {
			return h
		}
		return requireToken(token, &s.stats, h)
	}
	mux := http.NewServeMux()
	if !metricsOnly {
		mux.Handle("GET /api/v1/flows", guard(http.HandlerFunc(s.flows)))
		if s.topology != nil {
			mux.Handle("GET /api/v1/topology", guard(http.HandlerFunc(s.topologyGraph)))
			mux.Handle("GET /api/v1/topology/series", guard(http.HandlerFunc(s.topologySeries)))
			mux.Handle("GET /api/v1/topology/resolve", guard(http.HandlerFunc(s.topologyResolve)))
		}
		if s.agents != nil {
			mux.Handle("GET /api/v1/agents", guard(http.HandlerFunc(s.agentList)))
		}
	}
	mux.Handle("GET /metrics", guard(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	s.mountUI(mux, metricsOnly)
	return s.routeGRPC(mux, metricsOnly, token)
}

// Serve serves on every listener until ctx ends.
func (s *Server) Serve(ctx context.Context, lns ...Listener) error {
	errs := make([]error, len(lns))
	var wg sync.WaitGroup
	for i, l := range lns {
		srv := &http.Server{
			Handler:           s.listenerHandler(l),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			// Filters travel in the query: bound it before they are parsed.
			MaxHeaderBytes: 64 << 10,
			BaseContext:    func(_ net.Listener) context.Context { return ctx },
			// Failed TLS handshakes of port scanners are not warnings.
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		s.offerHTTP2(srv, l)
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		go func() {
			defer wg.Done()
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs[i] = fmt.Errorf("serve http on %s: %w", l.Addr(), err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stats is what the API did, for metrics.
type Stats struct {
	Followers    int               // follow streams open now
	MaxFollowers int               // their limit
	LostRecords  uint64            // records readers were told they lost (lost_records lines)
	Rejected     map[string]uint64 // requests refused, by reason
	SlowDropped  uint64            // streams ended because the client did not take a write in time
}

// Stats reads the counters.
func (s *Server) Stats() Stats {
	out := Stats{
		Followers:    int(s.stats.followers.Load()),
		MaxFollowers: s.limits.MaxFollowers,
		LostRecords:  s.stats.lost.Load(),
		Rejected:     map[string]uint64{},
		SlowDropped:  s.stats.slowDropped.Load(),
	}
	for i, n := range rejectReasons {
		out.Rejected[n] = s.stats.rejected[i].Load()
	}
	return out
}

type rejectReason int

const (
	rejectUnknownParameter rejectReason = iota
	rejectInvalidParameter
	rejectTooManyFilterValues
	rejectTooManyFollowers
	rejectUnauthorized
)

// rejectReasons are the reasons' metric labels, by rejectReason.
var rejectReasons = [...]string{"unknown_parameter", "invalid_parameter", "too_many_filter_values", "too_many_followers", "unauthorized"}

type stats struct {
	followers   atomic.Int64
	lost        atomic.Uint64
	slowDropped atomic.Uint64
	rejected    [len(rejectReasons)]atomic.Uint64
}

func (s *stats) reject(r rejectReason) { s.rejected[r].Add(1) }
