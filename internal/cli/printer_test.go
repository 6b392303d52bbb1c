package cli

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/server"
)

func TestEndpointNames(t *testing.T) {
	ip := netip.MustParseAddr
	for _, tc := range []struct {
		ep   flow.Endpoint
		want string
	}{
		{flow.Endpoint{IP: ip("10.0.0.1"), Port: 4000, PID: 1234, Command: "curl"}, "10.0.0.1:4000 (curl 1234)"},
		{flow.Endpoint{IP: ip("fd00::1"), Port: 53}, "[fd00::1]:53"},
		{flow.Endpoint{IP: ip("10.244.1.10"), Port: 43122, Kind: flow.KindPod, Namespace: "shop", Pod: "frontend-7d9f",
			Workload: &flow.Workload{Kind: "Deployment", Name: "frontend"}, PID: 7, Command: "peer"},
			"shop/frontend-7d9f:43122 (deploy/frontend peer 7)"},
		{flow.Endpoint{IP: ip("10.244.1.11"), Port: 80, Kind: flow.KindPod, Namespace: "shop", Pod: "bare",
			Workload: &flow.Workload{Kind: "Pod", Name: "bare"}}, "shop/bare:80"},
		{flow.Endpoint{IP: ip("10.96.0.20"), Port: 80, Kind: flow.KindPod, Namespace: "backend", Pod: "api-5c",
			Service: &flow.ServiceRef{Namespace: "backend", Name: "api"}}, "backend/api:80 (svc/api → pod api-5c)"},
		{flow.Endpoint{IP: ip("10.96.0.20"), Port: 80, Kind: flow.KindService,
			Service: &flow.ServiceRef{Namespace: "backend", Name: "api"}}, "backend/api:80 (svc/api)"},
		{flow.Endpoint{IP: ip("172.30.0.11"), Port: 10250, Kind: flow.KindNode, NodeName: "a"}, "node/a:10250"},
		{flow.Endpoint{IP: ip("127.0.0.1"), Port: 6443, Kind: flow.KindAPIServer}, "apiserver:6443"},
		{flow.Endpoint{IP: ip("192.0.2.1"), Port: 443, Kind: flow.KindWorld}, "192.0.2.1:443 (world)"},
		{flow.Endpoint{IP: ip("192.0.2.1"), Port: 443, Kind: flow.KindWorld, DNSName: "api.example.com"}, "api.example.com:443 (192.0.2.1 world)"},
		{flow.Endpoint{IP: ip("2001:db8::1"), Port: 80, DNSName: "v6.example.com", PID: 9, Command: "curl"}, "v6.example.com:80 ([2001:db8::1] curl 9)"},
		{flow.Endpoint{IP: ip("10.96.0.20"), Port: 80, Kind: flow.KindService, DNSName: "api.backend.svc.cluster.local",
			Service: &flow.ServiceRef{Namespace: "backend", Name: "api"}}, "backend/api:80 (svc/api)"},
	} {
		if got := endpoint(&tc.ep); got != tc.want {
			t.Errorf("endpoint = %q, want %q", got, tc.want)
		}
	}
}

// at is a record time and how printers show it.
var at = time.Date(2026, 11, 24, 6, 40, 2, 0, time.UTC)

func stamp() string { return at.Local().Format("15:04:05.000") }

// Process names are anyone's to choose (prctl, exec of a file so named),
// pod names the API server's: neither reaches the terminal raw.
func TestHostileNamesAreEscaped(t *testing.T) {
	r := flow.Record{Time: at, Observer: "client", Protocol: flow.TCP, Verdict: flow.VerdictClosed,
		Source: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), Port: 1, PID: 7, Command: "\x1b[2J\x1b[H"},
		Destination: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Port: 2, Kind: flow.KindPod, Namespace: "ns",
			Pod: "a\u202eb\r\x9b\xff"}}
	for format, want := range map[string]string{
		"compact": stamp() + ` [client] 10.0.0.1:1 (\x1b[2J\x1b[H 7) -> ns/a\u202eb\r\x9b\xff:2 tcp CLOSED bytes=0/0` + "\n",
		"table": "TIME          OBSERVER  SOURCE                        DESTINATION              PROTO  VERDICT  OPENED  CLOSED  FAILED  BYTES→  BYTES←  RTT  DROPS\n" +
			stamp() + `  client    10.0.0.1:1 (\x1b[2J\x1b[H 7)  ns/a\u202eb\r\x9b\xff:2  tcp    closed   0       0       0       0       0       -    -` + "\n",
	} {
		var out bytes.Buffer
		p, err := newPrinter(format, &out)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.print(&r, nil); err != nil {
			t.Fatal(err)
		}
		if err := p.flush(); err != nil {
			t.Fatal(err)
		}
		if out.String() != want {
			t.Errorf("%s:\n%q\nwant\n%q", format, out.String(), want)
		}
	}
}

func TestDropsPrinted(t *testing.T) {
	r := flow.Record{Time: at, Observer: "client", Protocol: flow.TCP, Verdict: flow.VerdictTimeout, TimedOut: 1, SYNRetrans: 1,
		Source:      flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), Port: 1},
		Destination: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Port: 2},
		Drops:       map[string]uint64{"no_socket": 1, "netfilter_drop": 2}}
	for format, want := range map[string]string{
		"compact": stamp() + " [client] 10.0.0.1:1 -> 10.0.0.2:2 tcp TIMEOUT timeout=1 syn_retrans=1 bytes=0/0 drops=netfilter_drop:2,no_socket:1\n",
		"table": "TIME          OBSERVER  SOURCE      DESTINATION  PROTO  VERDICT  OPENED  CLOSED  FAILED  BYTES→  BYTES←  RTT  DROPS\n" +
			stamp() + "  client    10.0.0.1:1  10.0.0.2:2   tcp    timeout  0       0       1       0       0       -    netfilter_drop:2,no_socket:1\n",
	} {
		var out bytes.Buffer
		p, _ := newPrinter(format, &out)
		if err := p.print(&r, nil); err != nil {
			t.Fatal(err)
		}
		if err := p.flush(); err != nil {
			t.Fatal(err)
		}
		if out.String() != want {
			t.Errorf("%s:\n%q\nwant\n%q", format, out.String(), want)
		}
	}
}

func TestLostRecordsPrinted(t *testing.T) {
	l := &server.LostRecords{Count: 1536, Reason: server.ReasonBehindRing, Time: at}
	raw := []byte(`{"lost_records":{"count":1536,"reason":"reader_behind_ring","time":"2026-11-24T06:40:02Z"}}`)
	line := stamp() + " LOST 1536 records: this reader fell behind the agent's ring, which overwrote them (reader_behind_ring)"
	for format, want := range map[string]string{
		"compact": line + "\n",
		"json":    string(raw) + "\n",
		"table":   strings.Join(tableHeader, "  ") + "\n--- " + line + " ---\n",
	} {
		var out bytes.Buffer
		p, _ := newPrinter(format, &out)
		if err := p.lost(l, raw); err != nil {
			t.Fatal(err)
		}
		if err := p.flush(); err != nil {
			t.Fatal(err)
		}
		if out.String() != want {
			t.Errorf("%s:\n%q\nwant\n%q", format, out.String(), want)
		}
	}
}

// Rows of one flush are aligned together; a later, wider row widens its
// column from then on, and never narrows it.
func TestTableWidensNeverNarrows(t *testing.T) {
	var out bytes.Buffer
	p, _ := newPrinter("table", &out)
	rec := func(cmd string) *flow.Record {
		return &flow.Record{Time: at, Observer: "server", Protocol: flow.UDP, Verdict: flow.VerdictAnswered,
			Source:      flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), Port: 1, PID: 1, Command: cmd},
			Destination: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.9"), Port: 9}}
	}
	for _, batch := range [][]string{{"a", "bb"}, {"a-much-longer-command"}, {"c"}} {
		for _, c := range batch {
			_ = p.print(rec(c), nil)
		}
		_ = p.flush()
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	// Where DESTINATION's column starts, in runes, on each line.
	var starts []int
	for _, l := range lines {
		i := strings.Index(l, "DESTINATION")
		if i < 0 {
			i = strings.Index(l, "10.0.0.9:9")
		}
		starts = append(starts, utf8.RuneCountInString(l[:i]))
	}
	want := []int{43, 43, 43, 62, 62}
	if len(starts) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(starts), len(want), out.String())
	}
	for i := range want {
		if starts[i] != want[i] {
			t.Fatalf("DESTINATION starts at %v, want %v:\n%s", starts, want, out.String())
		}
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"curl":              "curl",
		"shop/api → pod µs": "shop/api → pod µs",
		"\x1b]0;pwned\x07":  `\x1b]0;pwned\a`,
		"a\nb\tc":           `a\nb\tc`,
		"\u202egnp.exe":     `\u202egnp.exe`,
		"bad\xffutf8":       `bad\xffutf8`,
		"\u00a0":            `\u00a0`,
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"curl", "\x1b[2J", "a\u202eb", "\xff\xfe", "µ→"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := clean(s)
		if !utf8.ValidString(out) {
			t.Fatalf("clean(%q) = %q: not UTF-8", s, out)
		}
		for _, r := range out {
			if !unicode.IsPrint(r) {
				t.Fatalf("clean(%q) = %q: holds %U", s, out, r)
			}
		}
		printable := utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
		if printable != (out == s) {
			t.Fatalf("clean(%q) = %q: printable text must pass unchanged, and only it", s, out)
		}
	})
}

func TestRequestsPrinted(t *testing.T) {
	ip := netip.MustParseAddr
	r := flow.Record{Time: at, Observer: "client", Protocol: flow.TCP, Verdict: flow.VerdictEstablished,
		Source:      flow.Endpoint{IP: ip("10.0.0.1"), Port: 1},
		Destination: flow.Endpoint{IP: ip("10.0.0.2"), Port: 80},
		Requests: []flow.Requests{
			{Protocol: flow.HTTP, Method: "GET", Path: "/users/{id}", Status: 200, Count: 12, Latency: &flow.RTT{MinMicros: 900, AvgMicros: 3140, MaxMicros: 9000}},
			{Protocol: flow.HTTP, TLS: true, Method: "POST", Host: "shop", Path: "/orders", Status: 503, Count: 2, Failed: 2, Latency: &flow.RTT{AvgMicros: 12_400}},
			{Protocol: flow.DNS, QType: "A", Query: "api.example.com", RCode: "noerror", Count: 3,
				Answers: []netip.Addr{ip("10.0.0.5"), ip("10.0.0.6")}, Latency: &flow.RTT{AvgMicros: 210}},
			{Protocol: flow.Postgres, TLS: true, Method: "INSERT", Error: "23505", Count: 1, Failed: 1, Latency: &flow.RTT{AvgMicros: 1_500_000}},
			{Protocol: flow.Redis, Method: "GET", Count: 1, Failed: 1},
		}}
	want := stamp() + " [client] 10.0.0.1:1 -> 10.0.0.2:80 tcp ESTABLISHED bytes=0/0" +
		" | http GET /users/{id} 200 ×12 ~3.1ms" +
		"; https POST shop/orders 503 ×2 failed=2 ~12ms" +
		"; dns A api.example.com noerror → 10.0.0.5,10.0.0.6 ×3 ~210µs" +
		"; postgres+tls INSERT error 23505 ×1 failed=1 ~1.5s" +
		"; redis GET ×1 unanswered failed=1\n"
	var out bytes.Buffer
	if err := (compact{&out}).print(&r, nil); err != nil {
		t.Fatal(err)
	}
	if out.String() != want {
		t.Errorf("got\n%q\nwant\n%q", out.String(), want)
	}
}
