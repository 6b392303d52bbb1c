package e2e

import (
	"bufio"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/test/peer/result"
)

// apiAddr is what dnsmasq answers for api.example.test: an address of a
// third namespace, joined to the client's only, that a later connection
// goes to.
var apiAddr = netip.MustParseAddr("10.99.0.7")

// dnsQuestion is one query dig makes, with how often.
type dnsQuestion struct {
	name, qtype string
	times       int
}

// digAnswer is what dig itself reports of one query.
type digAnswer struct {
	rcode   string // lower case, as flowlens names it
	answers []string
}

// runDig asks the questions in one dig from ns and returns dig's own view
// of each, in order.
func runDig(t *testing.T, ns *testutil.Netns, server netip.Addr, questions []dnsQuestion) []digAnswer {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig is required (Debian package dnsutils; hack/setup.sh installs it)")
	}
	args := []string{"@" + server.String(), "+tries=1", "+time=3", "+noall", "+comments", "+answer"}
	n := 0
	for _, q := range questions {
		for range q.times {
			args = append(args, q.name, q.qtype)
			n++
		}
	}
	out, err := ns.Command("dig", args...).Output()
	if err != nil {
		t.Fatalf("dig: %v\n%s", err, out)
	}
	var got []digAnswer
	for sc := bufio.NewScanner(strings.NewReader(string(out))); sc.Scan(); {
		line := sc.Text()
		if _, status, ok := strings.Cut(line, "status: "); ok && strings.HasPrefix(line, ";; ->>HEADER<<-") {
			rcode, _, _ := strings.Cut(status, ",")
			got = append(got, digAnswer{rcode: strings.ToLower(rcode)})
			continue
		}
		// An answer: "name. TTL IN A address".
		if f := strings.Fields(line); len(f) == 5 && f[2] == "IN" && (f[3] == "A" || f[3] == "AAAA") && len(got) > 0 {
			got[len(got)-1].answers = append(got[len(got)-1].answers, f[4])
		}
	}
	if len(got) != n {
		t.Fatalf("dig answered %d of %d queries:\n%s", len(got), n, out)
	}
	return got
}

// wantDNS is the groups dig's queries make, from what dig saw.
func wantDNS(questions []dnsQuestion, seen []digAnswer) l7Groups {
	g := l7Groups{}
	i := 0
	for _, q := range questions {
		for range q.times {
			a := seen[i]
			i++
			answers := slices.Clone(a.answers)
			slices.Sort(answers)
			k := l7Key{Protocol: flow.DNS, Query: q.name, QType: q.qtype, RCode: a.rcode, Answers: strings.Join(answers, ",")}
			c := g[k]
			c.Count++
			if a.rcode != "noerror" && a.rcode != "nxdomain" {
				c.Failed++
			}
			g[k] = c
		}
	}
	return g
}

// joinNetns links a new namespace to ns with a veth: ns gets local, the
// new one peer, on one /24 that exists only between them.
func joinNetns(t *testing.T, ns *testutil.Netns, local, peer netip.Prefix) *testutil.Netns {
	t.Helper()
	p := testutil.Prefix()
	c := testutil.NewNetns(t, p+"-c")
	testutil.Run(t, "ip", "link", "add", p+"c", "netns", c.Name, "type", "veth", "peer", "name", p+"d", "netns", ns.Name)
	c.Exec(t, "ip", "addr", "add", peer.String(), "dev", p+"c")
	c.Exec(t, "ip", "link", "set", p+"c", "up")
	ns.Exec(t, "ip", "addr", "add", local.String(), "dev", p+"d")
	ns.Exec(t, "ip", "link", "set", p+"d", "up")
	return c
}

// Issue 14, item 3: dig's queries to a dnsmasq the test runs are counted
// exactly per name, type, response code and answers on both sides; a
// connection the client then makes to an address it resolved carries the
// name on its destination.
func TestL7DNS(t *testing.T) {
	testutil.RequirePrivileged(t)
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Fatal("dnsmasq is required (Debian package dnsmasq-base; hack/setup.sh installs it)")
	}
	p := randomPair(t, false)
	// The server: local answers for example.test (NXDOMAIN for other
	// names in it), no upstream (REFUSED for everything else).
	testutil.Start(t, p.A.Command("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv",
		"--no-hosts", "--pid-file=", "--port=53", "--listen-address="+p.AddrA.String(), "--bind-interfaces",
		"--address=/api.example.test/"+apiAddr.String(),
		"--address=/web.example.test/10.99.0.9", "--address=/web.example.test/10.99.0.10",
		"--local=/example.test/"))
	// dnsmasq says nothing on stdout when ready: wait until it answers,
	// asking from its own namespace, whose records the checks leave out.
	testutil.Eventually(t, 10*time.Second, func() error {
		return p.A.Command("dig", "@"+p.AddrA.String(), "+tries=1", "+time=1", "+short", "ready.example.test").Run()
	})
	questions := []dnsQuestion{
		{"api.example.test", "A", 3},
		{"web.example.test", "A", 2},
		{"nope.example.test", "A", 4},
		{"api.example.test", "AAAA", 1},
		{"elsewhere.test", "A", 2},
	}
	seen := runDig(t, p.B, p.AddrA, questions)
	rcodes := map[string]int{}
	for _, a := range seen {
		rcodes[a.rcode]++
	}
	if want := map[string]int{"noerror": 5, "nxdomain": 5, "refused": 2}; !maps.Equal(rcodes, want) {
		t.Fatalf("traffic was not as planned: dnsmasq answered %v, want %v", rcodes, want)
	}
	shared.checkSides(t, p, "protocol=udp&", 53, wantDNS(questions, seen))

	// A connection to the answered address, in a third namespace.
	c := joinNetns(t, p.B, netip.MustParsePrefix("10.99.0.1/24"), netip.PrefixFrom(apiAddr, 24))
	listener := startServer(t, c, "tcp-serve", netip.AddrPortFrom(apiAddr, 80))
	var cres result.Connect
	testutil.Output(t, p.B.Command(peerBin, "tcp-connect", "-addr", netip.AddrPortFrom(apiAddr, 80).String(), "-count", "1"), &cres)
	var sres result.Serve
	listener.Stop(t, &sres)
	if cres.OK != 1 || sres.Connections != 1 {
		t.Fatalf("traffic was not as planned: client %+v server %+v", cres, sres)
	}
	recs := shared.settled(t, fmt.Sprintf("observer=client&from-netns=%d&to-ip=%s&to-port=80", p.B.Inode, apiAddr),
		func(s totals) bool { return s.closed >= 1 })
	for _, r := range recs {
		if r.Destination.DNSName != "api.example.test" {
			t.Errorf("client's record to %s:%d names its destination %q, want api.example.test",
				r.Destination.IP, r.Destination.Port, r.Destination.DNSName)
		}
	}
}
