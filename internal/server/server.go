// Package server serves flowlens' HTTP API: flows as JSON lines (with
// follow), Prometheus metrics, and health.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flowlens/flowlens/internal/filter"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/ring"
)

// Server is the HTTP front of an agent (and later the hub).
type Server struct {
	ring  *ring.Ring
	reg   *prometheus.Registry
	ready func() error
	log   *slog.Logger
}

// New returns a server over a flow ring; ready says whether /readyz is OK.
func New(r *ring.Ring, reg *prometheus.Registry, ready func() error, log *slog.Logger) *Server {
	return &Server{ring: r, reg: reg, ready: ready, log: log}
}

// Handler routes the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/flows", s.flows)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Serve serves on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	return nil
}

const chunk = 1024

// flows writes matching records as JSON lines, oldest first: the last N
// (?last=N; all the ring holds by default), then, with ?follow=1, every new
// one until the client goes away.
func (s *Server) flows(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	match, err := filter.Parse(q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	last := -1
	if v := q.Get("last"); v != "" {
		if last, err = strconv.Atoi(v); err != nil || last < 0 {
			http.Error(w, "last must be a non-negative integer", http.StatusBadRequest)
			return
		}
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	if follow && last < 0 {
		last = 0
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)

	// All matches stream out chunk by chunk; only ?last=N keeps a window,
	// of at most N plus one chunk, so a request never copies the ring. What
	// is held is what the ring held when the request came: a writer faster
	// than the client cannot keep it reading (following picks up from there).
	end := s.ring.Next()
	next := end - uint64(s.ring.Len())
	var window []flow.Record
	buf := make([]flow.Record, 0, chunk)
	for next < end {
		var recs []flow.Record
		recs, next, _ = s.ring.ReadFrom(next, int(min(chunk, end-next)), buf[:0])
		for i := range recs {
			switch {
			case !match(&recs[i]):
			case last < 0:
				if err := enc.Encode(&recs[i]); err != nil {
					return
				}
			default:
				window = append(window, recs[i])
			}
		}
		if last >= 0 && len(window) > last {
			window = append(window[:0], window[len(window)-last:]...)
		}
		if len(recs) == 0 {
			break // overwritten while we read: ReadFrom moved next past it
		}
	}
	for i := range window {
		if err := enc.Encode(&window[i]); err != nil {
			return
		}
	}
	if !follow {
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	for {
		wake := s.ring.Wait()
		recs, n, _ := s.ring.ReadFrom(next, chunk, buf[:0])
		next = n
		for i := range recs {
			if match(&recs[i]) {
				if err := enc.Encode(&recs[i]); err != nil {
					return
				}
			}
		}
		if len(recs) == chunk {
			continue
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-wake:
		case <-r.Context().Done():
			return
		}
	}
}
