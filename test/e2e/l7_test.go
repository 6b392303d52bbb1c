package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
)

// The L7 tests (issue 14, "What it must show") run real servers and
// clients in namespaces of their own: l7peer (testdata/l7/l7peer, Go's
// net/http and crypto/tls), curl, dig against dnsmasq, psql against
// PostgreSQL, redis-cli against redis-server. Each compares the request
// groups of the shared agent's records, summed over every record whose
// ends are the test's namespaces, with what the traffic itself did.

// l7Key is what identifies a request group (flow.Requests without its
// counts and latency), comparable, so that groups of several records and
// intervals sum under one key.
type l7Key struct {
	Protocol flow.L7Protocol
	TLS      bool
	Method   string
	Path     string
	Host     string
	Status   int
	Query    string
	QType    string
	RCode    string
	Answers  string // sorted, comma-joined
	Error    string
}

func (k l7Key) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", k.Protocol)
	if k.TLS {
		b.WriteString("+tls")
	}
	for _, f := range []struct{ name, v string }{
		{"method", k.Method}, {"path", k.Path}, {"host", k.Host}, {"query", k.Query},
		{"type", k.QType}, {"rcode", k.RCode}, {"answers", k.Answers}, {"error", k.Error},
	} {
		if f.v != "" {
			fmt.Fprintf(&b, " %s=%s", f.name, f.v)
		}
	}
	if k.Status != 0 {
		fmt.Fprintf(&b, " status=%d", k.Status)
	}
	return b.String()
}

func keyOf(r *flow.Requests) l7Key {
	answers := make([]string, len(r.Answers))
	for i, a := range r.Answers {
		answers[i] = a.String()
	}
	slices.Sort(answers) // a server may rotate them; the set is what counts
	return l7Key{Protocol: r.Protocol, TLS: r.TLS, Method: r.Method, Path: r.Path, Host: r.Host,
		Status: r.Status, Query: r.Query, QType: r.QType, RCode: r.RCode,
		Answers: strings.Join(answers, ","), Error: r.Error}
}

// l7Count is a group's counts summed over records.
type l7Count struct{ Count, Failed uint32 }

// l7Groups sums the request groups of records by key.
type l7Groups map[l7Key]l7Count

func groupsOf(recs []flow.Record) l7Groups {
	g := l7Groups{}
	for i := range recs {
		for j := range recs[i].Requests {
			r := &recs[i].Requests[j]
			c := g[keyOf(r)]
			c.Count += r.Count
			c.Failed += r.Failed
			g[keyOf(r)] = c
		}
	}
	return g
}

func (g l7Groups) total() (n uint32) {
	for _, c := range g {
		n += c.Count
	}
	return n
}

// String lists the groups one a line, sorted, for settling and messages.
func (g l7Groups) String() string {
	lines := make([]string, 0, len(g))
	for k, c := range g {
		lines = append(lines, fmt.Sprintf("%s: count=%d failed=%d", k, c.Count, c.Failed))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// settledRequests waits until the requests of the agent's records
// matching query settle with at least want requests, and returns the
// records.
func (a api) settledRequests(t *testing.T, query string, want uint32) []flow.Record {
	t.Helper()
	var recs []flow.Record
	settled := false
	defer func() {
		if !settled { // settle failed the test
			a.logL7Metrics(t)
		}
	}()
	settle(t, "requests of flows?"+query, 30*time.Second, func() string {
		recs = a.flows(t, query)
		g := groupsOf(recs)
		return fmt.Sprintf("%d\n%s", g.total(), g)
	}, func(s string) bool {
		var n uint32
		fmt.Sscanf(s, "%d", &n)
		return n >= want
	})
	settled = true
	return recs
}

// checkGroups compares the groups of records with what the traffic did,
// exactly: every group, nothing more; it reports whether they matched.
func checkGroups(t *testing.T, side string, got, want l7Groups) bool {
	t.Helper()
	if got.String() != want.String() {
		t.Errorf("%s side request groups:\n%s\nwant:\n%s", side, got, want)
		return false
	}
	return true
}

// logL7Metrics logs what the agent says of its L7 capture and parsing
// (samples, losses, unparsed, TLS probes), to tell where requests went.
func (a api) logL7Metrics(t *testing.T) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(scrapeText(t, a), "\n") {
		if strings.HasPrefix(l, "flowlens_l7_") || strings.HasPrefix(l, "flowlens_tls_") {
			lines = append(lines, l)
		}
	}
	t.Logf("the agent's L7 metrics:\n%s", strings.Join(lines, "\n"))
}

// sideQueries selects the records of a port between a pair (B the client,
// A the server) on each side, with filter (query parameters) beside.
func sideQueries(p *testutil.Pair, filter string, port uint16) map[string]string {
	return map[string]string{
		"client": fmt.Sprintf("%sobserver=client&from-netns=%d&to-ip=%s&to-port=%d", filter, p.B.Inode, p.AddrA, port),
		"server": fmt.Sprintf("%sobserver=server&to-netns=%d&from-ip=%s&to-port=%d", filter, p.A.Inode, p.AddrB, port),
	}
}

// checkSides compares the request groups of the client's and the server's
// records of a port between the pair with want, exactly, and returns the
// records by side.
func (a api) checkSides(t *testing.T, p *testutil.Pair, filter string, port uint16, want l7Groups) map[string][]flow.Record {
	t.Helper()
	recs := map[string][]flow.Record{}
	for side, q := range sideQueries(p, filter, port) {
		recs[side] = a.settledRequests(t, q, want.total())
		if !checkGroups(t, side, groupsOf(recs[side]), want) {
			a.logL7Metrics(t)
			logRequestRecords(t, side, recs[side])
		}
	}
	return recs
}

// logRequestRecords lists a side's records that carry requests, one a
// line: which connection (its client port and start) and interval, and
// its groups, so that a miscount shows where it sits in the connection.
func logRequestRecords(t *testing.T, side string, recs []flow.Record) {
	t.Helper()
	var b strings.Builder
	for i := range recs {
		r := &recs[i]
		if len(r.Requests) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s..%s port %d started %s:", r.Start.Format("15:04:05.000"), r.Time.Format("15:04:05.000"),
			r.Source.Port, r.ConnStart.Format("15:04:05.000000"))
		for j := range r.Requests {
			fmt.Fprintf(&b, " [%s %d]", keyOf(&r.Requests[j]), r.Requests[j].Count)
		}
	}
	t.Logf("%s side's records with requests:%s", side, b.String())
}

// checkLatencies checks every answered group's latency is a min ≤ avg ≤ max
// that fits within what the client measured around its requests (µs,
// rounded up), and that unanswered ones carry none.
func checkLatencies(t *testing.T, side string, recs []flow.Record, clientMaxMicros uint64) {
	t.Helper()
	for i := range recs {
		for _, r := range recs[i].Requests {
			l := r.Latency
			if l == nil {
				t.Errorf("%s side: %s count %d has no latency", side, keyOf(&r), r.Count)
				continue
			}
			if l.MinMicros > l.AvgMicros || l.AvgMicros > l.MaxMicros || uint64(l.MaxMicros) > clientMaxMicros {
				t.Errorf("%s side: %s latency %+v µs, want min ≤ avg ≤ max ≤ %d µs (the client's largest)",
					side, keyOf(&r), *l, clientMaxMicros)
			}
		}
	}
}

// l7Binary builds a program of testdata/l7 for the test.
func l7Binary(t *testing.T, name string) string {
	t.Helper()
	return testutil.GoBuild(t, t.TempDir(), "./testdata/l7/"+name, name)
}

// writeFile writes a file into the test's temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	testutil.Must(t, os.WriteFile(path, []byte(content), 0o644), "write "+name)
	return path
}
