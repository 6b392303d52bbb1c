package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
)

// httpRequest is one request of an l7peer load plan (its Request).
type httpRequest struct {
	Method string            `json:"method"`
	Path   string            `json:"path"`
	Header map[string]string `json:"header,omitempty"`
	Body   string            `json:"body,omitempty"`

	template string // the path template flowlens must show
	status   int    // what the server answers (the query's s)
}

// loadResult is what `l7peer load` prints (its LoadResult).
type loadResult struct {
	Statuses    []int  `json:"statuses"`
	Errors      int    `json:"errors"`
	Connections int64  `json:"connections"`
	MaxMicros   uint64 `json:"max_us"`
}

const httpRequests = 1000

// httpMix is the mix: 1,000 GETs, 900 answered 200, 60 404 and 40
// 500, alternating between a numeric user id and an order's UUID with a
// hex token in the query string.
func httpMix() []httpRequest {
	plan := make([]httpRequest, httpRequests)
	for i := range plan {
		status := 200
		switch r := i % 50; {
		case r < 3:
			status = 404
		case r < 5:
			status = 500
		}
		r := httpRequest{Method: "GET", status: status}
		if i%2 == 0 {
			r.Path, r.template = fmt.Sprintf("/users/%d?s=%d", 1000+i, status), "/users/{id}"
		} else {
			r.Path = fmt.Sprintf("/orders/%08x-%04x-4%03x-8%03x-%012x?token=%032x&s=%d",
				0x5eed0000+i, i, i%0x1000, (i*7)%0x1000, uint64(i)*0x9e3779b97f4a7c15>>16, uint64(i)*0xdeadbeef, status)
			r.template = "/orders/{id}"
		}
		plan[i] = r
	}
	return plan
}

// wantHTTP is the groups a plan makes when every request was answered as
// planned: by template and status, GET, on host.
func wantHTTP(plan []httpRequest, host netip.Addr, tls bool) l7Groups {
	g := l7Groups{}
	for _, r := range plan {
		k := l7Key{Protocol: flow.HTTP, TLS: tls, Method: r.Method, Path: r.template, Host: host.String(), Status: r.status}
		c := g[k]
		c.Count++
		if r.status >= 500 {
			c.Failed++
		}
		g[k] = c
	}
	return g
}

// l7Serve starts `l7peer serve` in ns and waits until it listens.
func l7Serve(t *testing.T, bin string, ns *testutil.Netns, addr netip.AddrPort, args ...string) *testutil.Process {
	t.Helper()
	p := testutil.Start(t, ns.Command(bin, append([]string{"serve", "-listen", addr.String()}, args...)...))
	var ready struct{ Ready bool }
	p.ReadJSON(t, &ready)
	if !ready.Ready {
		t.Fatalf("l7peer serve on %s did not become ready", addr)
	}
	return p
}

// runGoClient runs `l7peer load` with the plan in ns and checks every
// request was answered as planned.
func runGoClient(t *testing.T, bin string, ns *testutil.Netns, base string, plan []httpRequest, conns int) loadResult {
	t.Helper()
	b, err := json.Marshal(plan)
	testutil.Must(t, err, "encode plan")
	var res loadResult
	testutil.Output(t, ns.Command(bin, "load", "-url", base, "-plan", writeFile(t, "plan.json", string(b)),
		"-conns", strconv.Itoa(conns)), &res)
	for i, r := range plan {
		if res.Statuses[i] != r.status {
			t.Fatalf("traffic was not as planned: request %d %s answered %d, want %d", i, r.Path, res.Statuses[i], r.status)
		}
	}
	if res.Connections < 1 || res.Connections > int64(conns) {
		t.Fatalf("the client opened %d connections, want keep-alive on at most %d", res.Connections, conns)
	}
	return res
}

// runCurl makes the plan's requests with one curl (OpenSSL) over one
// reused connection, and returns the largest time to first byte it
// measured (µs, rounded up).
func runCurl(t *testing.T, ns *testutil.Netns, base string, plan []httpRequest) uint64 {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required (Debian package curl; hack/setup.sh installs it)")
	}
	var cfg strings.Builder
	for _, r := range plan {
		fmt.Fprintf(&cfg, "url = \"%s%s\"\noutput = \"/dev/null\"\n", base, r.Path)
	}
	cmd := ns.Command("curl", "--http1.1", "-k", "-sS", "--max-time", "60", "-K", writeFile(t, "curl.cfg", cfg.String()),
		"-w", "%{http_code} %{time_starttransfer} %{num_connects}\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	var maxMicros uint64
	var connects, i int
	for sc := bufio.NewScanner(strings.NewReader(string(out))); sc.Scan(); i++ {
		var status, n int
		var secs float64
		if _, err := fmt.Sscanf(sc.Text(), "%d %g %d", &status, &secs, &n); err != nil || i >= len(plan) {
			t.Fatalf("curl printed %q (line %d): %v", sc.Text(), i, err)
		}
		if status != plan[i].status {
			t.Fatalf("traffic was not as planned: request %d %s answered %d, want %d", i, plan[i].Path, status, plan[i].status)
		}
		maxMicros = max(maxMicros, uint64(math.Ceil(secs*1e6)))
		connects += n
	}
	if i != len(plan) || connects != 1 {
		t.Fatalf("curl made %d requests over %d connections, want %d over 1", i, connects, len(plan))
	}
	return maxMicros
}

// checkHTTPRecords compares the client's and the server's records of the
// port with the plan, exactly, and their latencies with the client's.
func checkHTTPRecords(t *testing.T, p *testutil.Pair, port uint16, plan []httpRequest, tls bool, clientMaxMicros uint64) {
	t.Helper()
	for side, recs := range shared.checkSides(t, p, "", port, wantHTTP(plan, p.AddrA, tls)) {
		checkLatencies(t, side, recs, clientMaxMicros)
	}
}

// awaitTLSProbed makes one request at a time (request, to the address it
// is given) through a warm-up server of the test's binary on warmPort until
// the agent reads the TLS plaintext on both ends. The prober attaches to
// the TLS libraries of new processes within its scan period, and from then
// on every process mapping the same file is probed: the counted requests
// that follow are all seen. The warm-up's records are on a port of their
// own, apart from those counted.
func (a api) awaitTLSProbed(t *testing.T, bin string, p *testutil.Pair, warmPort uint16, request func(addr netip.AddrPort) error) {
	t.Helper()
	addr := netip.AddrPortFrom(p.AddrA, warmPort)
	l7Serve(t, bin, p.A, addr, "-tls")
	testutil.Eventually(t, 60*time.Second, func() error {
		if err := request(addr); err != nil {
			return fmt.Errorf("warm-up request: %w", err)
		}
		for side, q := range sideQueries(p, "", warmPort) {
			seen := false
			for k := range groupsOf(a.flows(t, q)) {
				seen = seen || k.TLS
			}
			if !seen {
				return fmt.Errorf("no TLS request on the %s side's records of the warm-up yet", side)
			}
		}
		return nil
	})
}

// pairedSeries counts connections sampled on their client's end for both.
const pairedSeries = "flowlens_l7_connections_paired_total"

// Issue 14, items 1 and 2: 1,000 requests over keep-alive connections,
// plain and over TLS (Go's crypto/tls on both ends; curl's OpenSSL against
// Go's server), are counted exactly per status and path template on both
// the client's and the server's records, with latencies within what the
// client measured.
func TestL7HTTP(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := l7Binary(t, "l7peer")
	plan := httpMix()
	for _, tc := range []struct {
		name  string
		tls   bool
		curl  bool
		port  uint16
		conns int
	}{
		{name: "plain", port: 8080, conns: 4},
		{name: "tls-go", tls: true, port: 8443, conns: 4},
		{name: "tls-curl", tls: true, curl: true, port: 8443},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := randomPair(t, false)
			addr := netip.AddrPortFrom(p.AddrA, tc.port)
			var args []string
			scheme := "http"
			if tc.tls {
				args, scheme = []string{"-tls"}, "https"
			}
			server := l7Serve(t, bin, p.A, addr, args...)
			base := scheme + "://" + addr.String()
			if tc.tls {
				shared.awaitTLSProbed(t, bin, p, 9443, func(warm netip.AddrPort) error {
					url := "https://" + warm.String() + "/warmup"
					if tc.curl {
						return p.B.Command("curl", "--http1.1", "-k", "-sS", "--max-time", "5", "-o", "/dev/null", url).Run()
					}
					return p.B.Command(bin, "get", "-url", url).Run()
				})
			}
			paired := metricValue(t, shared, pairedSeries)
			var clientMax uint64
			if tc.curl {
				clientMax = runCurl(t, p.B, base, plan)
			} else {
				clientMax = runGoClient(t, bin, p.B, base, plan, tc.conns).MaxMicros
			}
			var served struct{ Requests int }
			server.Stop(t, &served)
			if served.Requests != len(plan) {
				t.Fatalf("the server answered %d requests, want %d", served.Requests, len(plan))
			}
			checkHTTPRecords(t, p, tc.port, plan, tc.tls, clientMax)
			// Both ends are on this node: the plain connections were
			// sampled on the client's end only, and both sides' records
			// still hold every request. (The counter is the node's:
			// other local pairs may have been made meanwhile.)
			if now := metricValue(t, shared, pairedSeries); !tc.tls && now-paired < float64(tc.conns) {
				t.Errorf("%s went from %v to %v over %d local connections", pairedSeries, paired, now, tc.conns)
			}
		})
	}
}
