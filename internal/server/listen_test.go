package server

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/ring"
	"github.com/flowlens/flowlens/internal/server/servertest"
)

// serve opens cfg's listeners and serves a server over an empty ring on
// them until the test ends.
func serve(t *testing.T, cfg Config) []Listener {
	t.Helper()
	lns, err := cfg.Open(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(ring.New(10), testLimits)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lns...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return lns
}

func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "flowlens.sock")
	// A dead socket left by a killed agent is replaced.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		lns, err := Config{Listen: []string{"unix:" + path}}.Open(slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- newServer(ring.New(1), testLimits).Serve(ctx, lns...) }()
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode %v, want a socket of mode 0600", fi.Mode())
		}
		c := unixClient(path)
		for _, p := range []string{"/api/v1/flows", "/metrics", "/healthz"} {
			if code, body := status(t, c, "http://flowlens"+p); code != 200 {
				t.Errorf("%s over the socket: %d %s", p, code, body)
			}
		}
		// A live socket is another agent's: left alone.
		if _, err := (Config{Listen: []string{"unix:" + path}}).Open(slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil ||
			!strings.Contains(err.Error(), "another process serves there") {
			t.Errorf("second listener on a live socket: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left behind after serving: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
		t.Errorf("left in the socket directory: %v", entries)
	}
}

func TestToken(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	lns := serve(t, Config{Listen: []string{"127.0.0.1:0", "unix:" + sock}, TokenFile: tokenFile})
	base := "http://" + lns[0].Addr().String()
	ask := func(path, auth string) int {
		req, _ := http.NewRequest("GET", base+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/api/v1/flows", "", 401},
		{"/api/v1/flows", "Bearer wrong", 401},
		{"/api/v1/flows", "Bearer s3cre", 401},
		{"/api/v1/flows", "s3cret", 401},
		{"/metrics", "", 401},
		{"/api/v1/flows", "Bearer s3cret", 200},
		{"/metrics", "Bearer s3cret", 200},
		{"/healthz", "", 200}, // probes carry no token
		{"/readyz", "", 200},
	} {
		if got := ask(tc.path, tc.auth); got != tc.want {
			t.Errorf("%s with %q: %d, want %d", tc.path, tc.auth, got, tc.want)
		}
	}
	// The socket's mode is its guard: no token asked there.
	if code, _ := status(t, unixClient(sock), "http://flowlens/api/v1/flows"); code != 200 {
		t.Errorf("unix socket with a token configured: %d", code)
	}
}

func TestMetricsListenerServesNoFlows(t *testing.T) {
	lns := serve(t, Config{Listen: []string{"127.0.0.1:0"}, MetricsListen: "127.0.0.1:0"})
	metricsBase := "http://" + lns[1].Addr().String()
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/readyz": 200, "/api/v1/flows": 404} {
		if code, _ := status(t, http.DefaultClient, metricsBase+path); code != want {
			t.Errorf("metrics listener %s: %d, want %d", path, code, want)
		}
	}
	if code, _ := status(t, http.DefaultClient, "http://"+lns[0].Addr().String()+"/api/v1/flows"); code != 200 {
		t.Errorf("API listener flows: %d", code)
	}
}

func TestPprofListenerServesOnlyProfiles(t *testing.T) {
	lns := serve(t, Config{Listen: []string{"127.0.0.1:0"}, MetricsListen: "127.0.0.1:0", PprofListen: "127.0.0.1:0"})
	base := func(i int) string { return "http://" + lns[i].Addr().String() }
	for path, want := range map[string]int{"/debug/pprof/": 200, "/debug/pprof/heap?debug=1": 200, "/debug/pprof/goroutine?debug=1": 200,
		"/debug/pprof/cmdline": 200, "/metrics": 404, "/api/v1/flows": 404, "/healthz": 404} {
		if code, _ := status(t, http.DefaultClient, base(2)+path); code != want {
			t.Errorf("pprof listener %s: %d, want %d", path, code, want)
		}
	}
	if _, body := status(t, http.DefaultClient, base(2)+"/debug/pprof/cmdline"); !strings.Contains(body, os.Args[0]) {
		t.Errorf("cmdline %q does not name %s", body, os.Args[0])
	}
	for _, i := range []int{0, 1} {
		if code, _ := status(t, http.DefaultClient, base(i)+"/debug/pprof/"); code != 404 {
			t.Errorf("listener %d serves profiles: %d", i, code)
		}
	}
}

func tlsClient(t *testing.T, p *servertest.PKI, cert, key string) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig(t, p, cert, key)}, Timeout: 10 * time.Second}
}

func tlsConfig(t *testing.T, p *servertest.PKI, cert, key string) *tls.Config {
	pool, err := LoadCertPool(p.CA)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: pool}
	if cert != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return cfg
}

func TestTLSClientCertificates(t *testing.T) {
	p := servertest.NewPKI(t)
	lns := serve(t, Config{Listen: []string{"127.0.0.1:0"}, TLSCert: p.ServerCert, TLSKey: p.ServerKey, TLSClientCA: p.CA})
	url := "https://" + lns[0].Addr().String() + "/api/v1/flows"
	if code, body := status(t, tlsClient(t, p, p.ClientCert, p.ClientKey), url); code != 200 {
		t.Errorf("client with a certificate: %d %s", code, body)
	}
	// Without a certificate, or with one another CA signed, the handshake
	// fails. With TLS 1.3 the server says so after the client's side of it
	// is done, in an alert the client reads next: read before anything is
	// written, for a request the server left unread would make its close a
	// reset, which can discard the alert.
	other := servertest.NewPKI(t)
	for name, cfg := range map[string]*tls.Config{
		"no certificate":      tlsConfig(t, p, "", ""),
		"foreign certificate": tlsConfig(t, p, other.ClientCert, other.ClientKey),
	} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", lns[0].Addr().String(), cfg)
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: %v, want a certificate error", name, err)
		}
	}
	// Plain HTTP to a TLS listener gets nothing from the API.
	if code, _ := status(t, http.DefaultClient, "http://"+lns[0].Addr().String()+"/api/v1/flows"); code != http.StatusBadRequest {
		t.Errorf("plain HTTP to the TLS listener: %d", code)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notSocket := filepath.Join(dir, "file")
	if err := os.WriteFile(notSocket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "--listen is empty"},
		{Config{Listen: []string{"127.0.0.1:0"}, TLSCert: "x"}, "both --tls-cert and --tls-key"},
		{Config{Listen: []string{"127.0.0.1:0"}, TLSClientCA: "x"}, "both --tls-cert and --tls-key"},
		{Config{Listen: []string{"127.0.0.1:0"}, TokenFile: empty}, "is empty"},
		{Config{Listen: []string{"unix:" + notSocket}}, "exists and is not a socket"},
		{Config{Listen: []string{"unix:relative.sock"}}, "absolute path"},
		{Config{Listen: []string{"4245"}}, "want host:port or unix:/path"},
		{Config{Listen: []string{"127.0.0.1:0"}, MetricsListen: "nope"}, "metrics listener"},
		{Config{Listen: []string{"127.0.0.1:0"}, PprofListen: "nope"}, "pprof listener"},
	} {
		lns, err := tc.cfg.Open(slog.New(slog.NewTextHandler(io.Discard, nil)))
		for _, l := range lns {
			l.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestParseAddress(t *testing.T) {
	for in, want := range map[string]Address{
		"127.0.0.1:4245":            {"tcp", "127.0.0.1:4245"},
		"[::1]:4245":                {"tcp", "[::1]:4245"},
		":4245":                     {"tcp", ":4245"},
		"unix:/run/flowlens/x.sock": {"unix", "/run/flowlens/x.sock"},
		"/run/flowlens//x.sock":     {"unix", "/run/flowlens/x.sock"},
	} {
		if got, err := ParseAddress(in); err != nil || got != want {
			t.Errorf("ParseAddress(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"127.0.0.1:4245", "unix:/a/b", "/a", "unix:", "x", "[::1]:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		switch a.Network {
		case "unix":
			if !filepath.IsAbs(a.Addr) {
				t.Fatalf("%q: unix path %q not absolute", s, a.Addr)
			}
		case "tcp":
			if a.Addr != s {
				t.Fatalf("%q: tcp address rewritten to %q", s, a.Addr)
			}
		default:
			t.Fatalf("%q: network %q", s, a.Network)
		}
		// The printed form parses back to the same address.
		if b, err := ParseAddress(a.String()); err != nil || b != a {
			t.Fatalf("%q: %v does not round-trip: %v %v", s, a, b, err)
		}
	})
}
