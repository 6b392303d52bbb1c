package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/ring"
	"github.com/flowlens/flowlens/internal/server"
	"github.com/flowlens/flowlens/internal/server/servertest"
	"github.com/flowlens/flowlens/internal/testutil"
)

// api serves a ring on cfg's listeners until the test ends.
func api(t *testing.T, cfg server.Config) (*ring.Ring, []server.Listener) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	lns, err := cfg.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	r := ring.New(100)
	s := server.New(r, prometheus.NewRegistry(), func() error { return nil }, log, server.DefaultConfig().Limits)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lns...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return r, lns
}

func rec(port uint16) flow.Record {
	return flow.Record{Time: at, Observer: "client", Protocol: flow.TCP, Verdict: flow.VerdictEstablished,
		Source:      flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), Port: port},
		Destination: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Port: 80}}
}

// syncBuffer is a bytes.Buffer observe writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runObserve runs `flowlens observe args...` until ctx ends or it returns.
func runObserve(ctx context.Context, out io.Writer, args ...string) error {
	cmd := newObserveCmd()
	cmd.SetArgs(args)
	cmd.SetOut(out)
	cmd.SetErr(io.Discard)
	return cmd.ExecuteContext(ctx)
}

// `observe -f -o table` prints rows while the stream is still open.
func TestObserveFollowTablePrintsRowsAsTheyCome(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	r, _ := api(t, server.Config{Listen: []string{"unix:" + sock}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- runObserve(ctx, &out, "--server", "unix:"+sock, "-f", "-o", "table") }()
	// Records written until the follower is there: the first batch it
	// sees is printed, header first, with the stream still open.
	testutil.Eventually(t, 10*time.Second, func() error {
		r.Write([]flow.Record{rec(1), rec(2)})
		if lines := strings.Count(out.String(), "\n"); lines < 3 {
			return fmt.Errorf("%d lines printed while following: %q", lines, out.String())
		}
		return nil
	})
	lines := strings.Split(out.String(), "\n")
	if !strings.HasPrefix(lines[0], "TIME ") || !strings.HasPrefix(lines[1], stamp()+"  client    10.0.0.1:") {
		t.Errorf("table while following:\n%s", out.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("observe after ^C: %v", err)
	}
}

func TestObserveClientAccess(t *testing.T) {
	dir := t.TempDir()
	p := servertest.NewPKI(t)
	token := filepath.Join(dir, "token")
	wrong := filepath.Join(dir, "wrong")
	for path, v := range map[string]string{token: "s3cret\n", wrong: "guess"} {
		if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "api.sock")
	unixRing, _ := api(t, server.Config{Listen: []string{"unix:" + sock}})
	tlsRing, tlsLns := api(t, server.Config{Listen: []string{"127.0.0.1:0"}, TLSCert: p.ServerCert, TLSKey: p.ServerKey, TLSClientCA: p.CA})
	tokenRing, tokenLns := api(t, server.Config{Listen: []string{"127.0.0.1:0"}, TokenFile: token})
	for _, r := range []*ring.Ring{unixRing, tlsRing, tokenRing} {
		r.Write([]flow.Record{rec(1), rec(2)})
	}
	tlsAddr, tokenAddr := tlsLns[0].Addr().String(), tokenLns[0].Addr().String()
	for _, tc := range []struct {
		name string
		args []string
		want string // in the output, or in the error
	}{
		{"unix socket", []string{"--server", "unix:" + sock, "-o", "json", "--last", "1"}, `"port":2`},
		{"mutual TLS", []string{"--server", tlsAddr, "--tls-ca", p.CA, "--tls-cert", p.ClientCert, "--tls-key", p.ClientKey, "--last", "1"},
			stamp() + " [client] 10.0.0.1:2 -> 10.0.0.2:80 tcp ESTABLISHED bytes=0/0\n"},
		{"TLS without a client certificate", []string{"--server", tlsAddr, "--tls-ca", p.CA}, "certificate required"},
		{"TLS to a plain server", []string{"--server", tokenAddr, "--tls-ca", p.CA}, "http: server gave HTTP response to HTTPS client"},
		{"token", []string{"--server", tokenAddr, "--token-file", token, "--last", "1", "--to-port", "80"}, "10.0.0.1:2 -> 10.0.0.2:80"},
		{"wrong token", []string{"--server", tokenAddr, "--token-file", wrong}, "flowlens answered 401 Unauthorized: missing or wrong bearer token"},
		{"no token", []string{"--server", tokenAddr}, "401 Unauthorized"},
		{"TLS flags on a unix socket", []string{"--server", "unix:" + sock, "--tls-ca", p.CA}, "a unix socket is guarded by its mode"},
	} {
		var out bytes.Buffer
		err := runObserve(context.Background(), &out, tc.args...)
		got := out.String()
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// --since and --until select the records that ended in the window: all of
// them, --last applying only when given.
func TestObserveTimeWindow(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	r, _ := api(t, server.Config{Listen: []string{"unix:" + sock}})
	var recs []flow.Record
	for i := range 30 {
		x := rec(uint16(1000 + i))
		x.Time = at.Add(time.Duration(i) * time.Second)
		recs = append(recs, x)
	}
	r.Write(recs)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--since", at.Add(5 * time.Second).Format(time.RFC3339)}, 25}, // past the default --last 20
		{[]string{"--since", at.Add(5 * time.Second).Format(time.RFC3339), "--until", at.Add(10 * time.Second).Format(time.RFC3339)}, 5},
		{[]string{"--since", at.Format(time.RFC3339), "--last", "3"}, 3},
		{nil, 20},
	} {
		var out bytes.Buffer
		args := append([]string{"--server", "unix:" + sock, "-o", "json"}, tc.args...)
		if err := runObserve(context.Background(), &out, args...); err != nil {
			t.Fatalf("observe %v: %v", tc.args, err)
		}
		if got := strings.Count(out.String(), "\n"); got != tc.want {
			t.Errorf("observe %v: %d records, want %d", tc.args, got, tc.want)
		}
	}
	if err := runObserve(context.Background(), io.Discard, "--server", "unix:"+sock, "--since", "yesterday"); err == nil ||
		!strings.Contains(err.Error(), "since") {
		t.Errorf("observe --since yesterday: %v, want the API's refusal naming since", err)
	}
}

// The request filters go to the API as query parameters of the same
// names, which selects the records one of whose groups matches them all.
func TestObserveRequestFilters(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	r, _ := api(t, server.Config{Listen: []string{"unix:" + sock}})
	web, dns, plain := rec(1), rec(2), rec(3)
	web.Requests = []flow.Requests{
		{Protocol: flow.HTTP, Method: "GET", Path: "/users/{id}", Status: 200, Count: 900, Latency: &flow.RTT{AvgMicros: 300}},
		{Protocol: flow.HTTP, Method: "POST", Path: "/orders", Status: 500, Count: 40, Failed: 40, Latency: &flow.RTT{AvgMicros: 2000}},
	}
	dns.Protocol = flow.UDP
	dns.Requests = []flow.Requests{{Protocol: flow.DNS, QType: "A", Query: "nope.example.com", RCode: "nxdomain", Count: 2, Latency: &flow.RTT{AvgMicros: 90}}}
	r.Write([]flow.Record{web, dns, plain})
	for _, tc := range []struct {
		args  []string
		ports []string // the sources' ports printed, in order
	}{
		{[]string{"--protocol", "http"}, []string{":1 "}},
		{[]string{"--protocol", "dns,tcp"}, []string{":1 ", ":2 ", ":3 "}},
		{[]string{"--http-status", "5xx", "--http-method", "POST", "--http-path", "/orders*"}, []string{":1 "}},
		{[]string{"--http-status", "5xx", "--http-method", "GET"}, nil},
		{[]string{"--dns-rcode", "nxdomain", "--dns-query", "*.example.com"}, []string{":2 "}},
	} {
		var out bytes.Buffer
		args := append([]string{"--server", "unix:" + sock}, tc.args...)
		if err := runObserve(context.Background(), &out, args...); err != nil {
			t.Fatalf("observe %v: %v", tc.args, err)
		}
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if out.Len() == 0 {
			lines = nil
		}
		if len(lines) != len(tc.ports) {
			t.Errorf("observe %v: %d lines, want %d:\n%s", tc.args, len(lines), len(tc.ports), out.String())
			continue
		}
		for i, l := range lines {
			if !strings.Contains(l, "10.0.0.1"+tc.ports[i]) {
				t.Errorf("observe %v: line %d is %q, want the source port %s", tc.args, i, l, tc.ports[i])
			}
		}
	}
	var out bytes.Buffer
	if err := runObserve(context.Background(), &out, "--server", "unix:"+sock, "--protocol", "http"); err != nil {
		t.Fatal(err)
	}
	want := stamp() + " [client] 10.0.0.1:1 -> 10.0.0.2:80 tcp ESTABLISHED bytes=0/0 | http GET /users/{id} 200 ×900 ~300µs; http POST /orders 500 ×40 failed=40 ~2.0ms\n"
	if out.String() != want {
		t.Errorf("got %q\nwant %q", out.String(), want)
	}
	if err := runObserve(context.Background(), io.Discard, "--server", "unix:"+sock, "--http-status", "6xx"); err == nil ||
		!strings.Contains(err.Error(), "http-status") {
		t.Errorf("--http-status 6xx: %v, want a refusal naming it", err)
	}
}
