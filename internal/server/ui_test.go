package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/flowlens/flowlens/internal/ring"
)

// The UI answers every path the API does not claim, on API listeners only,
// and without the token the API asks for.
func TestUIBesideTheAPI(t *testing.T) {
	s := newServer(ring.New(4), testLimits)
	s.SetUI(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ui "+r.URL.Path) }))
	token := []byte("secret")
	for _, c := range []struct {
		name        string
		metricsOnly bool
		token       []byte
		path        string
		status      int
		body        string // "" when not checked
	}{
		{"index", false, nil, "/", 200, "ui /"},
		{"asset", false, nil, "/assets/index-abc.js", 200, "ui /assets/index-abc.js"},
		{"api still the api", false, nil, "/api/v1/flows?last=0", 200, ""},
		{"health still health", false, nil, "/healthz", 200, "ok\n"},
		{"no UI on the metrics listener", true, nil, "/", 404, ""},
		{"no token for the page", false, token, "/", 200, "ui /"},
		{"the token for its data", false, token, "/api/v1/flows", 401, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.handler(c.metricsOnly, c.token).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, c.path, nil))
			if rec.Code != c.status || c.body != "" && rec.Body.String() != c.body {
				t.Fatalf("GET %s: %d %q, want %d %q", c.path, rec.Code, rec.Body.String(), c.status, c.body)
			}
		})
	}
}

// Without SetUI nothing is served at /.
func TestNoUIUnlessSet(t *testing.T) {
	rec := httptest.NewRecorder()
	newServer(ring.New(4), testLimits).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("GET /: %d, want 404", rec.Code)
	}
}
