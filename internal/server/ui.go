package server

import "net/http"

// SetUI serves the web UI at / on the API listeners (not on a
// metrics-only one). It is served without the token: the bundle holds no
// data, and what it shows it asks the API for, which the token guards.
func (s *Server) SetUI(h http.Handler) { s.ui = h }

// mountUI routes every path no API route claims to the UI (index.html at
// /, its assets, 404 for the rest).
func (s *Server) mountUI(mux *http.ServeMux, metricsOnly bool) {
	if s.ui != nil && !metricsOnly {
		mux.Handle("GET /", s.ui)
	}
}
