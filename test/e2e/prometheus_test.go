package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/metrics"
	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/internal/topology"
)

// requireTool returns the path of a Debian-packaged tool the test needs:
// skipped without it when not root, a failure as root (hack/setup.sh,
// which `make test` runs as root, installs it).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s not installed (Debian package prometheus; hack/setup.sh installs it as root)", name)
	}
	t.Fatalf("%s not installed: run hack/setup.sh (it installs Debian's prometheus package)", name)
	return ""
}

// promServer is a real Prometheus started by a test.
type promServer struct{ base string }

// startPrometheus runs Debian's prometheus on a free loopback port,
// scraping target (host:port, path /metrics) every second, its data in a
// temporary directory; it is killed at cleanup.
func startPrometheus(t *testing.T, target string) promServer {
	t.Helper()
	bin := requireTool(t, "prometheus")
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: flowlens
    static_configs:
      - targets: [%q]
`, target)
	testutil.Must(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644), "write prometheus.yml")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testutil.Must(t, err, "find a free port")
	addr := ln.Addr().String()
	ln.Close()
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	testutil.Must(t, err, "create prometheus.log")
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	testutil.Must(t, cmd.Start(), "start prometheus")
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("prometheus log:\n%s", b[max(0, len(b)-8192):])
		}
	})
	p := promServer{base: "http://" + addr}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus at %s not ready within 60s", addr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// query evaluates expr now; ok is false when it returns no sample. expr
// must return at most one sample.
func (p promServer) query(t *testing.T, expr string) (v float64, ok bool) {
	t.Helper()
	resp, err := http.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(expr))
	testutil.Must(t, err, "query prometheus")
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	testutil.Must(t, err, "read prometheus' answer")
	var answer struct {
		Status string
		Error  string
		Data   struct {
			ResultType string
			Result     []struct{ Value [2]any }
		}
	}
	if err := json.Unmarshal(body, &answer); err != nil || answer.Status != "success" || answer.Data.ResultType != "vector" {
		t.Fatalf("query %s: %s %v: %s", expr, resp.Status, err, body)
	}
	switch len(answer.Data.Result) {
	case 0:
		return 0, false
	case 1:
		s, _ := answer.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		testutil.Must(t, err, "parse the sample of "+expr)
		return v, true
	}
	t.Fatalf("query %s: %d samples, want at most 1: %s", expr, len(answer.Data.Result), body)
	return 0, false
}

// await polls expr until it equals want, and fails the test with the last
// value at the deadline: a count that overshoots never equals want.
func (p promServer) await(t *testing.T, expr string, want float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, ok := p.query(t, expr)
		if ok && v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (a sample: %v), want %v within %s", expr, v, ok, want, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// serveEdgeMetrics serves m's exposition on a loopback port, as the hub's
// /metrics does, and returns its host:port.
func serveEdgeMetrics(t *testing.T, m *metrics.EdgeMetrics) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// syntheticEdge is one closed connection from pod i of Deployment
// load/client-<i> to load/api, through a topology store that counts it on
// m: 10,000 of them are 10,000 distinct label sets.
func syntheticEdge(i int, now time.Time) flow.Record {
	end := func(pod, deploy string, ip netip.Addr, port uint16) flow.Endpoint {
		return flow.Endpoint{IP: ip, Port: port, Kind: flow.KindPod, Namespace: "load", Pod: pod,
			Workload: &flow.Workload{Kind: "Deployment", Name: deploy}}
	}
	src := end(fmt.Sprintf("client-%d-x", i), fmt.Sprintf("client-%d", i), netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 40000)
	src.PID, src.Command = 7, "load"
	return flow.Record{Time: now, Start: now.Add(-time.Second), ConnStart: now.Add(-500 * time.Millisecond), Node: "node-a",
		Observer: "client", Protocol: flow.TCP, IPVersion: 4, Verdict: flow.VerdictClosed, Opened: 1, Closed: 1, BytesToDst: 10, BytesToSrc: 20,
		Source: src, Destination: end("api-0", "api", netip.MustParseAddr("10.9.255.1"), 8080)}
}

// A real Prometheus scraping the edge metrics of 10,000 distinct edges
// under a budget of 100 label sets holds exactly the budget's series plus
// the other series, and the folded counter is exact. The collector is fed
// by a topology store here, as the hub feeds it (-short skips: it starts
// a Prometheus server).
func TestPrometheusEdgeSeriesBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a Prometheus server")
	}
	const budget, edges = 100, 10_000
	m := metrics.NewEdgeMetrics(budget)
	now := time.Now()
	store := topology.New(topology.Config{Observe: m.Observe})
	store.Tick(now)
	recs := make([]flow.Record, edges)
	for i := range recs {
		recs[i] = syntheticEdge(i, now)
	}
	store.Ingest(recs)
	prom := startPrometheus(t, serveEdgeMetrics(t, m))
	prom.checkEdgeBudget(t, budget, edges)
}

// checkEdgeBudget asserts what a real Prometheus holds once it scraped the
// edge metrics of edges distinct synthetic edges (syntheticEdge, one
// record each) counted under a budget of budget label sets: the budget's
// series plus the other series, the folded counter exact.
func (p promServer) checkEdgeBudget(t *testing.T, budget, edges int) {
	t.Helper()
	// 100 label sets of their own, 9,900 folded, one record each.
	p.await(t, "flowlens_edge_series_folded_total", float64(edges-budget), 60*time.Second)
	other := `{source_namespace="other",source_workload="other",destination_namespace="other",destination_workload="other",destination_port="other",protocol="other"}`
	for _, c := range []struct {
		expr string
		want int
	}{
		{"flowlens_edge_label_sets", budget},
		{"flowlens_edge_connections_opened_total" + other, edges - budget},
		{"sum(flowlens_edge_connections_opened_total)", edges},
		{`sum(flowlens_edge_bytes_total{direction="to_source"})`, 20 * edges},
		// Each label set and the other one: opened, closed, bytes and
		// retransmits each way (no failure, no RTT sample); and the
		// folded counter and the two gauges.
		{`count({__name__=~"flowlens_edge_.*"})`, (budget+1)*6 + 3},
	} {
		if v, ok := p.query(t, c.expr); !ok || v != float64(c.want) {
			t.Errorf("%s = %v (a sample: %v), want %v", c.expr, v, ok, c.want)
		}
	}
	limit := float64((budget+1)*metrics.SeriesPerEdgeLabelSet + 3)
	if v, _ := p.query(t, `count({__name__=~"flowlens_edge_.*"})`); v > limit {
		t.Errorf("%v edge series, over the budget's bound of %v", v, limit)
	}
}

// The same through a real `flowlens hub --max-edge-series 100`: 10,000
// distinct synthetic endpoints pushed to it over gRPC (internal/ship) as
// an agent pushes, a real Prometheus scraping its one port; its exposition
// passes promtool check metrics.
func TestPrometheusHubEdgeSeriesBudget(t *testing.T) {
	testutil.RequirePrivileged(t) // the package builds flowlens as root
	const budget, edges = 100, 10_000
	addr := freeLoopbackAddr(t)
	cmd := exec.Command(flowlensBin, "hub", "--listen", addr, "--max-edge-series", strconv.Itoa(budget))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	testutil.Must(t, cmd.Start(), "start flowlens hub")
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("flowlens hub exited: %v", err)
		}
	})
	waitReady(t, addr, "flowlens hub")
	now := time.Now()
	recs := make([]flow.Record, edges)
	for i := range recs {
		recs[i] = syntheticEdge(i, now)
	}
	shipToHub(t, addr, "synthetic", recs)
	prom := startPrometheus(t, addr)
	prom.checkEdgeBudget(t, budget, edges)

	promtool := requireTool(t, "promtool")
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(scrapeText(t, api(addr)))
	if out, err := check.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics of the hub: %v\n%s", err, out)
	}
}

// N connections between two processes in their own namespaces are N on
// their edge's opened counter, read from a real Prometheus scraping
// `flowlens up`.
func TestPrometheusEdgeConnectionsFromUp(t *testing.T) {
	testutil.RequirePrivileged(t)
	if !strings.Contains(scrapeText(t, shared), "flowlens_edge_label_sets ") {
		// The lead wires metrics.EdgeMetrics into `up` and `hub` (issue 12).
		t.Skip("flowlens up does not export the per-edge metrics (flowlens_edge_*) yet")
	}
	prom := startPrometheus(t, string(shared))
	const n, size, reply = 20, 1000, 300
	clientCmd, serverCmd := processTraffic(t, "prom", n, size, reply)

	host, err := os.Hostname()
	testutil.Must(t, err, "hostname")
	// On a plain host an end no workload names is labelled by its
	// topology node: the process on this host.
	edge := fmt.Sprintf(`{source_workload="process:%s/%s",destination_workload="process:%s/%s",destination_port="8080",protocol="tcp"}`,
		host, clientCmd, host, serverCmd)
	prom.await(t, "flowlens_edge_connections_opened_total"+edge, n, 60*time.Second)
	for expr, want := range map[string]float64{
		"flowlens_edge_connections_closed_total" + edge:                                                       n,
		`sum(flowlens_edge_bytes_total` + strings.Replace(edge, "}", `,direction="to_destination"}`, 1) + `)`: n * size,
		`sum(flowlens_edge_bytes_total` + strings.Replace(edge, "}", `,direction="to_source"}`, 1) + `)`:      n * reply,
	} {
		if v, ok := prom.query(t, expr); !ok || v != want {
			t.Errorf("%s = %v (a sample: %v), want %v", expr, v, ok, want)
		}
	}
}

// scrapeText is the exposition a flowlens serves on /metrics.
func scrapeText(t *testing.T, a api) string {
	t.Helper()
	resp, err := http.Get("http://" + string(a) + "/metrics")
	testutil.Must(t, err, "get /metrics")
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	testutil.Must(t, err, "read /metrics")
	return string(b)
}

// dashboardVariables are what Grafana substitutes in the dashboard's
// queries, with a value that makes the query valid PromQL for promtool.
var dashboardVariables = strings.NewReplacer("$__rate_interval", "1m", "$__range", "1h", "$namespace", ".*")

// metricName matches a flowlens metric name in an expression.
var metricName = regexp.MustCompile(`\bflowlens_[a-z0-9_]+`)

// The Grafana dashboard is valid JSON with a node graph and the panels the
// README promises, every query is PromQL that promtool accepts, and every
// metric it names is one the edge collector exports. Pure (promtool only).
func TestGrafanaDashboard(t *testing.T) {
	promtool := requireTool(t, "promtool")
	b, err := os.ReadFile(filepath.Join(deployDir, "grafana", "flowlens.json"))
	testutil.Must(t, err, "read the dashboard")
	var dash struct {
		UID        string
		Templating struct {
			List []struct{ Name, Type, Query any }
		}
		Panels []struct {
			ID      int
			Type    string
			Title   string
			Targets []struct {
				Datasource struct{ Type, UID string }
				Expr       string
				RefID      string
			}
		}
	}
	testutil.Must(t, json.Unmarshal(b, &dash), "decode the dashboard")
	if !slices.ContainsFunc(dash.Templating.List, func(v struct{ Name, Type, Query any }) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	}) {
		t.Error("no Prometheus datasource variable named datasource")
	}

	families := edgeFamilies()
	var rules []map[string]string
	var types []string
	for _, p := range dash.Panels {
		types = append(types, p.Type)
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Datasource.Type != "prometheus" || q.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q query %s: datasource %+v, want the datasource variable", p.Title, q.RefID, q.Datasource)
			}
			expr := dashboardVariables.Replace(q.Expr)
			if strings.Contains(expr, "$") {
				t.Errorf("panel %q query %s: a variable the test does not know: %s", p.Title, q.RefID, q.Expr)
			}
			names := metricName.FindAllString(expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q query %s names no flowlens metric: %s", p.Title, q.RefID, q.Expr)
			}
			for _, name := range names {
				if !families[name] {
					t.Errorf("panel %q query %s: %s is not a metric the edge collector exports", p.Title, q.RefID, name)
				}
			}
			rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:panel%d_%s", p.ID, q.RefID), "expr": expr})
		}
	}
	slices.Sort(types)
	if want := []string{"nodeGraph", "timeseries", "timeseries", "timeseries", "timeseries", "timeseries", "timeseries"}; !slices.Equal(types, want) {
		t.Errorf("panel types %q, want %q", types, want)
	}

	// promtool reads the queries as recording rules: JSON is YAML.
	file := map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}}
	rb, err := json.Marshal(file)
	testutil.Must(t, err, "encode rules")
	path := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	testutil.Must(t, os.WriteFile(path, rb, 0o644), "write rules")
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("SUCCESS: %d rules found", len(rules)); !strings.Contains(string(out), want) {
		t.Errorf("promtool check rules says %q, want %q", out, want)
	}
}

// edgeFamilies are the metric names the edge collector exports, a
// histogram's series names included.
func edgeFamilies() map[string]bool {
	ch := make(chan *prometheus.Desc, 32)
	metrics.NewEdgeMetrics(1).Describe(ch)
	close(ch)
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for d := range ch {
		n := fqName.FindStringSubmatch(d.String())[1]
		names[n] = true
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			names[n+s] = true
		}
	}
	return names
}
