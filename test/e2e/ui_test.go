package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/internal/topology"
	"github.com/flowlens/flowlens/internal/ui"
	"github.com/flowlens/flowlens/test/e2e/browser"
	"github.com/flowlens/flowlens/test/peer/result"
)

// screenshotDir is where the UI tests leave their screenshots for a
// reviewer (gitignored): FLOWLENS_SCREENSHOTS overrides it.
func screenshotDir() string {
	if d := os.Getenv("FLOWLENS_SCREENSHOTS"); d != "" {
		return d
	}
	return filepath.Join("testdata", "screenshots")
}

// viewport is the map's zoom and pan, as Cytoscape holds them.
type viewport struct {
	Zoom float64 `json:"zoom"`
	X    float64 `json:"x"`
	Y    float64 `json:"y"`
}

const readViewport = `(() => { const cy = window.__flowlens.cy; return {zoom: cy.zoom(), x: cy.pan().x, y: cy.pan().y}; })()`

// modelEdge is an edge of the page's model list (ui/src/main.ts).
type modelEdge struct {
	ID       string `json:"id"`
	Source   string `json:"source"`
	Target   string `json:"target"`
	Opened   string `json:"opened"`
	Failures string `json:"failures"`
	Mark     string `json:"mark"`
}

const readModelEdges = `[...document.querySelectorAll('#model li[data-kind="edge"]')].map(li => ({...li.dataset}))`

// edgeInModel is a JavaScript condition: the model list has an edge from
// src to dst.
func edgeInModel(src, dst string) string {
	return fmt.Sprintf(`document.querySelector('#model li[data-kind="edge"][data-source=%q][data-target=%q]')`, src, dst)
}

// TestUIAgainstUp drives the UI of a real `flowlens up` in Chromium with
// known traffic between two network namespaces: N connections from a
// client to a server and M refused ones.
func TestUIAgainstUp(t *testing.T) {
	testutil.RequirePrivileged(t)
	const n, m, later = 12, 5, 3
	p := randomPair(t, false)
	serverBin, serverCmd := peerAs(t, "uis")
	clientBin, clientCmd := peerAs(t, "uic")
	lateBin, lateCmd := peerAs(t, "uil")
	host, err := os.Hostname()
	testutil.Must(t, err, "hostname")
	clientID, serverID, lateID := "process:"+host+"/"+clientCmd, "process:"+host+"/"+serverCmd, "process:"+host+"/"+lateCmd
	refusedID := "external:" + p.AddrA.String()

	serve := func(bin string, port uint16) *testutil.Process {
		addr := netip.AddrPortFrom(p.AddrA, port)
		s := testutil.Start(t, p.A.Command(bin, "tcp-serve", "-listen", addr.String(), "-reply", "100"))
		var ready struct{ Ready bool }
		s.ReadJSON(t, &ready)
		if !ready.Ready {
			t.Fatalf("server on %s did not become ready", addr)
		}
		return s
	}
	connect := func(port uint16, count int) result.Connect {
		var res result.Connect
		testutil.Output(t, p.B.Command(clientBin, "tcp-connect", "-addr", netip.AddrPortFrom(p.AddrA, port).String(),
			"-count", strconv.Itoa(count), "-bytes", "500"), &res)
		return res
	}
	server := serve(serverBin, 8080)
	if res := connect(8080, n); res.OK != n {
		t.Fatalf("client: %+v, want %d connections", res, n)
	}
	if res := connect(8089, m); res.Refused != m { // nothing listens there
		t.Fatalf("client: %+v, want %d refused", res, m)
	}
	var sres result.Serve
	server.Stop(t, &sres)

	// The API first: once it has settled the page must show exactly it.
	type figures struct{ opened, refused uint64 }
	read := func() figures {
		g, err := shared.topology("level=process&window=5m")
		testutil.Must(t, err, "topology")
		var f figures
		for _, e := range g.Edges {
			if e.Source == clientID && e.Destination == serverID {
				f.opened += e.ConnectionsOpened
			}
			if e.Source == clientID && e.Destination == refusedID {
				f.refused += e.Failures.Refused
			}
		}
		return f
	}
	if got := settle(t, "the API's edges", 30*time.Second, read, func(f figures) bool { return f.opened >= n && f.refused >= m }); got != (figures{n, m}) {
		t.Fatalf("API: %+v, want %d opened, %d refused", got, n, m)
	}

	b := browser.Start(t)
	shots := screenshotDir()
	b.Open(t, "http://"+string(shared)+"/?level=process&window=5m")
	b.WaitFor(t, "first render", `window.__flowlens && window.__flowlens.ready && `+edgeInModel(clientID, refusedID), "window.__flowlens && window.__flowlens.lastError", 20*time.Second)

	// The map: the three nodes and the two edges with their figures.
	var edges []modelEdge
	b.Eval(t, readModelEdges, &edges)
	byEnds := map[[2]string]modelEdge{}
	for _, e := range edges {
		byEnds[[2]string{e.Source, e.Target}] = e
	}
	conn, refused := byEnds[[2]string{clientID, serverID}], byEnds[[2]string{clientID, refusedID}]
	if conn.Opened != strconv.Itoa(n) || conn.Failures != "0" {
		t.Errorf("map edge %s → %s: %+v, want %d opened, 0 failed", clientID, serverID, conn, n)
	}
	if refused.Opened != "0" || refused.Failures != strconv.Itoa(m) {
		t.Errorf("map edge %s → %s: %+v, want 0 opened, %d failed", clientID, refusedID, refused, m)
	}
	for _, id := range []string{clientID, serverID, refusedID} {
		var ok bool
		b.Eval(t, fmt.Sprintf(`!!document.querySelector('#model li[data-kind="node"][data-id=%q]') && window.__flowlens.cy.getElementById(%q).nonempty()`, id, id), &ok)
		if !ok {
			t.Errorf("node %s missing from the map", id)
		}
	}
	b.Screenshot(t, shots, "map.png")

	// Clicking the edge (a real mouse click on its middle) shows its figures.
	var mid struct{ X, Y float64 }
	b.Eval(t, fmt.Sprintf(`(() => { const r = document.getElementById("map").getBoundingClientRect();
		const p = window.__flowlens.cy.getElementById(%q).renderedMidpoint(); return {X: r.left + p.x, Y: r.top + p.y}; })()`, conn.ID), &mid)
	b.Do(t, "click the edge", chromedp.MouseClickXY(mid.X, mid.Y))
	b.WaitFor(t, "edge details", fmt.Sprintf(`document.querySelector('#details[data-kind="edge"][data-id=%q] #edge-flows table')`, conn.ID),
		`document.getElementById("details").dataset.id`, 10*time.Second)
	var shown string
	b.Eval(t, `document.querySelector('#details [data-field="connections_opened"]').textContent`, &shown)
	if shown != strconv.Itoa(n) {
		t.Errorf("details panel: %q connections opened, want %d", shown, n)
	}
	// Its most recent flows: on a plain host the client's records know
	// only the server's address, so the page pairs each end's records by
	// the client's address and port; the API's records paired here too.
	want := min(20, pairedRecords(shared.flows(t, url.Values{"last": {"200"}, "from-command": {clientCmd}, "node": {host}}.Encode()),
		shared.flows(t, url.Values{"last": {"200"}, "to-command": {serverCmd}, "node": {host}}.Encode())))
	var rows int
	b.Eval(t, `document.querySelectorAll('#edge-flows tbody tr').length`, &rows)
	if rows != want || rows < min(20, n) {
		t.Errorf("details panel: %d recent flows, want the API's %d (at least %d)", rows, want, min(20, n))
	}
	var sel string
	b.Eval(t, `new URLSearchParams(location.search).get("sel")`, &sel)
	if sel != conn.ID {
		t.Errorf("URL selection %q, want %q", sel, conn.ID)
	}
	// Its figures over the window, step by step (5 m in 10 s steps): the
	// connections opened in its steps add up to exactly N.
	const chartValues = `document.querySelector('#edge-chart svg[data-series="connections_opened"]').dataset.values`
	b.WaitFor(t, "the edge's chart", `document.querySelector('#edge-chart svg[data-series="connections_opened"]')`,
		`document.getElementById("edge-chart").textContent`, 10*time.Second)
	var steps string
	b.Eval(t, chartValues, &steps)
	if sum, points := sumValues(t, steps); sum != n || points != 30 {
		t.Errorf("edge chart: %d opened over %d steps (%s), want %d over 30", sum, points, steps, n)
	}
	b.Screenshot(t, shots, "details.png")

	// Searching the server's address selects the server's node (the
	// refused connects to that address name no process: they do not
	// count), and its inbound edge from the client has a sparkline of
	// exactly N opened.
	b.Do(t, "search the server's address", chromedp.SendKeys(chromedp.CSS(`#search`), p.AddrA.String()+"\r"))
	spark := fmt.Sprintf(`document.querySelector('#details[data-kind="node"][data-id=%q] [data-trend=%q] svg.spark')`, serverID, conn.ID)
	b.WaitFor(t, "the server's node", spark, `document.getElementById("search-status").textContent`, 10*time.Second)
	b.Eval(t, spark+`.dataset.values`, &steps)
	if sum, _ := sumValues(t, steps); sum != n {
		t.Errorf("sparkline of %s → %s: %d opened (%s), want %d", clientID, serverID, sum, steps, n)
	}
	b.Eval(t, `new URLSearchParams(location.search).get("sel")`, &sel)
	if sel != serverID {
		t.Errorf("search %s: URL selection %q, want %q", p.AddrA, sel, serverID)
	}
	b.Screenshot(t, shots, "search.png")
	// The edge again, from the list of elements, as a keyboard user would.
	b.Eval(t, fmt.Sprintf(`document.querySelector('#model button[data-select=%q]').click() || true`, conn.ID), nil)
	b.WaitFor(t, "edge details again", fmt.Sprintf(`document.querySelector('#details[data-kind="edge"][data-id=%q] #edge-chart svg')`, conn.ID),
		`document.getElementById("details").dataset.id`, 10*time.Second)

	// The flow table filtered by verdict refused (and this test's address)
	// shows exactly the refused connects. A lost-records row may come with
	// them: other tests' traffic fills this agent's ring in the full suite,
	// and a record overwritten while the table's first read scanned back
	// for its last records is announced, as it should be.
	addFilter := func(name, value string) {
		b.Do(t, "filter "+name, chromedp.SetValue(chromedp.CSS(`#filter-name`), name),
			chromedp.SendKeys(chromedp.CSS(`#filter-value`), value+"\r"))
	}
	addFilter("verdict", "refused")
	addFilter("to-ip", p.AddrA.String())
	countRefused := fmt.Sprintf(`document.querySelectorAll('#flows-body tr[data-verdict="refused"]').length === %d && document.querySelectorAll('#flows-body tr[data-verdict]').length === %d`, m, m)
	b.WaitFor(t, "refused rows", countRefused,
		`Array.from(document.querySelectorAll('#flows-body tr')).map(r => r.dataset.verdict + ': ' + r.textContent).join(' | ')`, 10*time.Second)
	var cli string
	b.Eval(t, `document.getElementById("cli").textContent`, &cli)
	if wantCLI := fmt.Sprintf("flowlens observe --server %s --follow --verdict refused --to-ip %s", shared, p.AddrA); cli != wantCLI {
		t.Errorf("CLI command %q, want %q", cli, wantCLI)
	}

	// A new edge shows without a reload, and the user's view stays: zoom in
	// and pan a little first, so an accidental fit would show.
	b.Eval(t, `(() => { const cy = window.__flowlens.cy; cy.zoom(cy.zoom() * 1.3); cy.panBy({x: 37, y: -21}); window.__noReload = true; return true; })()`, nil)
	var before viewport
	b.Eval(t, readViewport, &before)
	posOf := fmt.Sprintf(`(() => { const p = window.__flowlens.cy.getElementById(%q).position(); return [p.x, p.y]; })()`, serverID)
	var posBefore []float64
	b.Eval(t, posOf, &posBefore)
	changesSince := time.Now().Truncate(10 * time.Second) // a bucket boundary before the new traffic
	late := serve(lateBin, 8081)
	if res := connect(8081, later); res.OK != later {
		t.Fatalf("client: %+v, want %d connections", res, later)
	}
	late.Stop(t, &sres)
	b.WaitFor(t, "the new edge, live", edgeInModel(clientID, lateID)+` && window.__noReload`, `window.__flowlens.renders`, 15*time.Second)
	var after viewport
	b.Eval(t, readViewport, &after)
	if after != before {
		t.Errorf("viewport moved on a live update: %+v, then %+v", before, after)
	}
	var posAfter []float64
	b.Eval(t, posOf, &posAfter)
	if !slices.Equal(posBefore, posAfter) {
		t.Errorf("node %s moved on a live update: %v, then %v", serverID, posBefore, posAfter)
	}
	var stillSelected bool
	b.Eval(t, fmt.Sprintf(`window.__flowlens.cy.getElementById(%q).selected()`, conn.ID), &stillSelected)
	if !stillSelected {
		t.Error("the selected edge lost its selection on a live update")
	}

	// The diff view: since a time before the new traffic, its edge appeared.
	b.Open(t, "http://"+string(shared)+"/?"+url.Values{"level": {"process"}, "window": {"5m"}, "since": {changesSince.UTC().Format(time.RFC3339)}}.Encode())
	b.WaitFor(t, "diff view", fmt.Sprintf(`window.__flowlens && window.__flowlens.ready && document.querySelector('#model li[data-kind="edge"][data-source=%q][data-target=%q][data-mark="appeared"]')`, clientID, lateID),
		`window.__flowlens && window.__flowlens.lastError`, 20*time.Second)
	b.Screenshot(t, shots, "diff.png")

	// Nothing but the flowlens port was asked for, and the page raised no
	// error, exception or CSP violation.
	if reqs := b.Requests(); len(reqs) == 0 {
		t.Error("no requests recorded: the recorder is broken")
	}
	if foreign := b.Foreign(string(shared)); len(foreign) > 0 {
		t.Errorf("the page asked other hosts: %v", foreign)
	}
	if problems := b.Problems(); len(problems) > 0 {
		t.Errorf("page problems: %v", problems)
	}
}

// TestUIRequests drives real HTTP requests (l7peer: Go's net/http, one
// keep-alive connection) from one network namespace to another through the
// shared agent, with a known mix (32×200, 4×404, 4×500 on two path
// templates), and checks the page shows them exactly: the edge's panel
// counts per status class with the API's latencies, the map colors the
// edge by its failed requests (10 %: bad), and the flow table lists the
// client's request groups, their counts adding up to the mix.
func TestUIRequests(t *testing.T) {
	testutil.RequirePrivileged(t)
	const port = 8080
	// Two commands of their own (the map names processes by command), new
	// each run, so the 5 m window holds no other run's edge.
	build := func(prefix string) (bin, command string) {
		command = fmt.Sprintf("%s%08x", prefix, rand.Uint32())
		return testutil.GoBuild(t, t.TempDir(), "./testdata/l7/l7peer", command), command
	}
	serverBin, serverCmd := build("urs")
	clientBin, clientCmd := build("urc")
	host, err := os.Hostname()
	testutil.Must(t, err, "hostname")
	clientID, serverID := "process:"+host+"/"+clientCmd, "process:"+host+"/"+serverCmd

	p := randomPair(t, false)
	addr := netip.AddrPortFrom(p.AddrA, port)
	plan := make([]httpRequest, 40)
	for i := range plan {
		status := 200
		switch i % 10 {
		case 0:
			status = 404
		case 1:
			status = 500
		}
		path, template := fmt.Sprintf("/users/%d?s=%d", 7000+i, status), "/users/{id}"
		if i%2 == 1 {
			path, template = fmt.Sprintf("/orders/%d?s=%d", 9000+i, status), "/orders/{id}"
		}
		plan[i] = httpRequest{Method: "GET", Path: path, template: template, status: status}
	}
	server := l7Serve(t, serverBin, p.A, addr)
	runGoClient(t, clientBin, p.B, "http://"+addr.String(), plan, 1)
	var served struct{ Requests int }
	server.Stop(t, &served)
	if served.Requests != len(plan) {
		t.Fatalf("the server answered %d requests, want %d", served.Requests, len(plan))
	}

	// The API first, exactly: the client's records and the edge's classes.
	want := wantHTTP(plan, p.AddrA, false)
	clientQuery := sideQueries(p, "", port)["client"]
	if got := groupsOf(shared.settledRequests(t, clientQuery, want.total())); !checkGroups(t, "client", got, want) {
		t.FailNow()
	}
	// What settles is every edge of either process, so that requests
	// counted on another edge than the pair's show where they went.
	var edge topology.Edge
	settle(t, "the edge's requests", 30*time.Second, func() string {
		g, err := shared.topology("level=process&window=5m")
		testutil.Must(t, err, "topology")
		edge = topology.Edge{}
		var seen []string
		for _, e := range g.Edges {
			if e.Source == clientID && e.Destination == serverID {
				edge = e
			}
			if e.Source == clientID || e.Destination == serverID {
				seen = append(seen, fmt.Sprintf("%s → %s: %d connections, %d requests", e.Source, e.Destination, e.ConnectionsOpened, e.Requests))
			}
		}
		b, _ := json.Marshal(edge.RequestFigures)
		return fmt.Sprintf("%s; edges %q", b, seen)
	}, func(string) bool { return edge.Requests >= uint64(len(plan)) })
	type class struct {
		Class            string
		Requests, Failed string
		Min, Avg, Max    string
	}
	wantClasses := []class{{Class: "2xx", Requests: "32", Failed: "0"}, {Class: "4xx", Requests: "4", Failed: "0"}, {Class: "5xx", Requests: "4", Failed: "4"}}
	if len(edge.RequestFigures) != len(wantClasses) || edge.Requests != 40 || edge.RequestsFailed != 4 {
		t.Fatalf("API edge %s → %s: %d requests, %d failed, %+v; want 40, 4 and %+v", clientID, serverID, edge.Requests, edge.RequestsFailed, edge.RequestFigures, wantClasses)
	}
	for i, f := range edge.RequestFigures {
		w := &wantClasses[i]
		if f.Protocol != flow.HTTP || f.Class != w.Class || strconv.FormatUint(f.Requests, 10) != w.Requests ||
			strconv.FormatUint(f.Failed, 10) != w.Failed || f.LatencySamples != f.Requests {
			t.Fatalf("API edge class %d: %+v, want http %+v, every request answered", i, f, *w)
		}
		// The page must show the API's latencies (µs, as its cells carry them).
		w.Min, w.Avg, w.Max = fmt.Sprint(f.LatencyMin), fmt.Sprint(f.LatencyAvg), fmt.Sprint(f.LatencyMax)
	}

	// The edge's panel, opened by a deep link.
	b := browser.Start(t)
	b.Open(t, "http://"+string(shared)+"/?"+url.Values{"level": {"process"}, "window": {"5m"}, "sel": {edge.ID}}.Encode())
	table := `#details[data-kind="edge"][data-id=` + strconv.Quote(edge.ID) + `] #edge-requests table[data-protocol="http"]`
	b.WaitFor(t, "the edge's requests", `document.querySelector(`+strconv.Quote(table)+`)`,
		`window.__flowlens && (window.__flowlens.lastError || document.getElementById("details").textContent)`, 20*time.Second)
	var classes []class
	b.Eval(t, `[...document.querySelectorAll(`+strconv.Quote(table+" tbody tr")+`)].map(tr => {
		const f = (n) => tr.querySelector('[data-field="' + n + '"]');
		return {Class: tr.dataset.class, Requests: f("requests").textContent, Failed: f("failed").textContent,
			Min: f("min").dataset.us, Avg: f("avg").dataset.us, Max: f("max").dataset.us};
	})`, &classes)
	if !slices.Equal(classes, wantClasses) {
		t.Errorf("edge panel, http by class:\n%+v\nwant\n%+v", classes, wantClasses)
	}
	var summary struct{ Requests, Failed, Health string }
	b.Eval(t, fmt.Sprintf(`({Requests: document.querySelector('#edge-requests dl [data-field="requests"]').textContent,
		Failed: document.querySelector('#edge-requests dl [data-field="requests_failed"]').textContent,
		Health: document.querySelector('#model li[data-kind="edge"][data-id=%q]').dataset.health})`, edge.ID), &summary)
	if want := (struct{ Requests, Failed, Health string }{"40", "4 (10.0 %)", "bad"}); summary != want {
		t.Errorf("edge panel and map: %+v, want %+v (4 of 40 requests failed: more than 5 %%)", summary, want)
	}
	b.Screenshot(t, screenshotDir(), "requests.png")

	// The flow table, the client's records of the server: its request
	// groups add up to the mix, group by group.
	addFilter := func(name, value string) {
		b.Do(t, "filter "+name, chromedp.SetValue(chromedp.CSS(`#filter-name`), name),
			chromedp.SendKeys(chromedp.CSS(`#filter-value`), value+"\r"))
	}
	addFilter("observer", "client")
	addFilter("from-netns", strconv.FormatUint(uint64(p.B.Inode), 10))
	addFilter("to-ip", p.AddrA.String()) // a namespace's inode is reused once it is gone
	addFilter("to-port", strconv.Itoa(port))
	var lines []string
	for k, c := range want {
		lines = append(lines, fmt.Sprintf("http %s %s %d: count=%d failed=%d", k.Method, k.Path, k.Status, c.Count, c.Failed))
	}
	slices.Sort(lines)
	const tableGroups = `(() => { const sum = {};
		for (const s of document.querySelectorAll('#flows-body tr[data-observer="client"] .req')) {
			const g = sum[s.dataset.key] ??= {count: 0, failed: 0};
			g.count += Number(s.dataset.count); g.failed += Number(s.dataset.failed);
		}
		return Object.entries(sum).map(([k, g]) => k + ": count=" + g.count + " failed=" + g.failed).sort().join("\n"); })()`
	wantTable := strings.Join(lines, "\n")
	b.WaitFor(t, "the flow table's request groups", tableGroups+` === `+strconv.Quote(wantTable), tableGroups, 15*time.Second)
	b.Screenshot(t, screenshotDir(), "requests-flows.png")
	if problems := b.Problems(); len(problems) > 0 {
		t.Errorf("page problems: %v", problems)
	}
}

// sumValues adds up a chart's comma-separated values and counts them.
func sumValues(t *testing.T, csv string) (sum, points int) {
	t.Helper()
	for _, v := range strings.Split(csv, ",") {
		n, err := strconv.Atoi(v)
		testutil.Must(t, err, "a chart value")
		sum += n
		points++
	}
	return sum, points
}

// pairedRecords counts the records of connections both lists saw, by the
// client's address and port, each record once.
func pairedRecords(a, b []flow.Record) int {
	key := func(r *flow.Record) string { return fmt.Sprint(r.Protocol, r.Source.IP, r.Source.Port) }
	keys := func(l []flow.Record) map[string]bool {
		out := map[string]bool{}
		for i := range l {
			out[key(&l[i])] = true
		}
		return out
	}
	seen := map[string]bool{}
	keep := func(l []flow.Record, other map[string]bool) {
		for i := range l {
			if other[key(&l[i])] {
				j, _ := json.Marshal(l[i])
				seen[string(j)] = true
			}
		}
	}
	keep(a, keys(b))
	keep(b, keys(a))
	return len(seen)
}

// synthetic serves a generated topology of nodes and edges to the UI: each
// answer after the first changes the figures of a tenth of the edges and
// replaces one edge with a new one, as a busy cluster's would.
type synthetic struct {
	mu       sync.Mutex
	nodes    []topology.Node
	edges    []topology.Edge
	next     int // the next new edge's number
	answered int
	rng      *rand.Rand
}

func newSynthetic(nodes, edges int) *synthetic {
	s := &synthetic{rng: rand.New(rand.NewPCG(1, 2))}
	for i := range nodes {
		ns := fmt.Sprintf("ns-%02d", i%20)
		name := fmt.Sprintf("Deployment/app-%03d", i)
		s.nodes = append(s.nodes, topology.Node{ID: "workload:" + ns + "/" + name, Kind: topology.NodeWorkload, Namespace: ns, Name: name})
	}
	have := map[[2]int]bool{}
	for len(s.edges) < edges {
		a, b := s.rng.IntN(nodes), s.rng.IntN(nodes)
		if a == b || have[[2]int{a, b}] {
			continue
		}
		have[[2]int{a, b}] = true
		s.edges = append(s.edges, s.edge(a, b))
	}
	return s
}

func (s *synthetic) edge(a, b int) topology.Edge {
	src, dst := s.nodes[a].ID, s.nodes[b].ID
	opened := uint64(1 + s.rng.IntN(1000))
	return topology.Edge{ID: topology.EdgeID(src, dst), Source: src, Destination: dst, ConnectionsOpened: opened,
		ConnectionsClosed: opened, ConnectionsOpenedPerSecond: float64(opened) / 60,
		Failures: topology.Failures{Refused: uint64(s.rng.IntN(3))}, Records: opened}
}

func (s *synthetic) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	if s.answered > 0 {
		for range len(s.edges) / 10 {
			e := &s.edges[s.rng.IntN(len(s.edges))]
			e.ConnectionsOpened += uint64(1 + s.rng.IntN(50))
		}
		// One edge goes, a new one (between two nodes no edge joins yet) comes.
		i := s.rng.IntN(len(s.edges))
		for {
			e := s.edge(s.rng.IntN(len(s.nodes)), s.rng.IntN(len(s.nodes)))
			if e.Source != e.Destination && !slices.ContainsFunc(s.edges, func(o topology.Edge) bool { return o.ID == e.ID }) {
				s.edges[i] = e
				break
			}
		}
	}
	s.answered++
	g := topology.Graph{Level: topology.LevelWorkload, WindowStart: time.Now().Add(-time.Minute), WindowEnd: time.Now(),
		WindowSeconds: 60, Nodes: s.nodes, Edges: s.edges}
	b, err := json.Marshal(g)
	s.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// TestUIRenderAtScale measures, in Chromium, the time to first render and
// to each live update of a 500-node, 2,000-edge topology served by a
// synthetic API beside the embedded UI.
func TestUIRenderAtScale(t *testing.T) {
	const nodes, edges, updates = 500, 2000, 10
	syn := newSynthetic(nodes, edges)
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/topology", syn)
	mux.HandleFunc("GET /api/v1/flows", func(http.ResponseWriter, *http.Request) {})
	mux.Handle("GET /", ui.Handler(ui.Dist()))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := browser.Start(t)
	b.Open(t, srv.URL+"/")
	b.WaitFor(t, "first render", `window.__flowlens && window.__flowlens.ready`, `window.__flowlens && window.__flowlens.lastError`, 60*time.Second)
	var count struct{ Nodes, Edges, Cy int }
	const readCounts = `({Nodes: document.querySelectorAll('#model li[data-kind="node"]').length,
		Edges: document.querySelectorAll('#model li[data-kind="edge"]').length,
		Cy: window.__flowlens.cy.nodes('[!group]').length + window.__flowlens.cy.edges().length})`
	b.Eval(t, readCounts, &count)
	if count.Nodes != nodes || count.Edges != edges || count.Cy != nodes+edges {
		t.Fatalf("first render: %+v, want %d nodes and %d edges in the list and the graph", count, nodes, edges)
	}
	var before viewport
	b.Eval(t, readViewport, &before)
	b.WaitFor(t, "live updates", fmt.Sprintf(`window.__flowlens.updateMs.length >= %d`, updates), `window.__flowlens.updateMs.length`, 60*time.Second)
	var probe struct {
		FirstRenderMs float64   `json:"firstRenderMs"`
		UpdateMs      []float64 `json:"updateMs"`
	}
	b.Eval(t, `window.__flowlens`+"\n"+`&& {firstRenderMs: window.__flowlens.firstRenderMs, updateMs: window.__flowlens.updateMs}`, &probe)
	b.Eval(t, readCounts, &count)
	if count.Nodes != nodes || count.Edges != edges || count.Cy != nodes+edges {
		t.Errorf("after %d updates: %+v, want %d nodes and %d edges", len(probe.UpdateMs), count, nodes, edges)
	}
	var after viewport
	b.Eval(t, readViewport, &after)
	if after != before {
		t.Errorf("viewport moved on live updates: %+v, then %+v", before, after)
	}
	b.Screenshot(t, screenshotDir(), "scale.png")
	u := slices.Clone(probe.UpdateMs)
	slices.Sort(u)
	t.Logf("%d nodes, %d edges: first render %.0f ms after navigation; %d live updates (fetch to drawn): median %.0f ms, max %.0f ms (%s)",
		nodes, edges, probe.FirstRenderMs, len(u), u[len(u)/2], u[len(u)-1], strings.Trim(fmt.Sprint(u), "[]"))
}
