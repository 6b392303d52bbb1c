package server

import (
	"net/http"
	"strings"

	"google.golang.org/grpc"
)

// SetGRPC makes every API listener (not the metrics-only one) also serve
// g's services on the same port: the hub's agents and the JSON API's
// clients dial one address. Call it before Serve. Requests are told apart by
// gRPC's content type on HTTP/2; cleartext TCP and unix listeners speak
// HTTP/2 with prior knowledge (h2c), which is what gRPC clients send, and TLS
// listeners offer h2 by ALPN. A listener's bearer token guards gRPC too: a
// call without it fails with Unauthenticated (gRPC's reading of HTTP 401).
// Without SetGRPC the listeners serve HTTP/1 only, as they always have.
func (s *Server) SetGRPC(g *grpc.Server) { s.grpc = g }

// routeGRPC sends gRPC requests to s.grpc and the rest to api.
func (s *Server) routeGRPC(api http.Handler, metricsOnly bool, token []byte) http.Handler {
	if s.grpc == nil || metricsOnly {
		return api
	}
	var g http.Handler = s.grpc
	if token != nil {
		g = requireToken(token, &s.stats, g)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			g.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// offerHTTP2 lets srv, serving l, speak HTTP/2 when it serves gRPC.
func (s *Server) offerHTTP2(srv *http.Server, l Listener) {
	if s.grpc == nil || l.MetricsOnly || l.PprofOnly {
		return
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	if l.tlsConfig != nil {
		// The listener does the handshake, so ALPN is its config's: the
		// server's own TLS setup never sees it.
		l.tlsConfig.NextProtos = []string{"h2", "http/1.1"}
	}
}
