package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCompareIsExact(t *testing.T) {
	sc := scenario{Kind: "tcp"}
	var tr Traffic
	tr.Connections, tr.BytesOut, tr.BytesIn = 10, 1000, 2000
	tr.Server.Connections, tr.Server.BytesIn, tr.Server.BytesOut = 10, 1000, 2000
	e := expect(sc, tr)
	good := totals{Records: 12, Opened: 10, Closed: 10, BytesToDst: 1000, BytesToSrc: 2000}
	if c := compare("query", e, good, good, "c", "s"); !c.Exact {
		t.Errorf("exact totals judged inexact: %+v", c)
	}
	over := good
	over.Opened = 11 // an overshoot is as wrong as a shortfall
	if c := compare("query", e, over, good, "c", "s"); c.Exact || c.Client.Exact || !c.Server.Exact {
		t.Errorf("overshoot judged exact: %+v", c)
	}
	failed := good
	failed.Failed = 1
	if c := compare("query", e, failed, good, "c", "s"); c.Exact {
		t.Error("a failed connect the generator did not see was not noticed")
	}
	if !reached(e.client, over, e.fields) || reached(e.client, totals{Opened: 10}, e.fields) {
		t.Error("reached")
	}

	dt := Traffic{DatagramsOut: 5, DatagramsIn: 5, BytesOut: 100, BytesIn: 150}
	dt.Server.DatagramsIn, dt.Server.DatagramsOut, dt.Server.BytesIn, dt.Server.BytesOut = 5, 5, 100, 150
	dns := expect(scenario{Kind: "dns"}, dt)
	got := totals{DgramsToDst: 5, DgramsToSrc: 5, BytesToDst: 100, BytesToSrc: 150}
	if c := compare("follow", dns, got, totals{}, "c", "s"); !c.Client.Exact || c.Server.Exact || c.Exact {
		t.Errorf("dns %+v", c)
	}
}

func TestLatencyMatchesBySourcePortAndStart(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	trace := filepath.Join(t.TempDir(), "trace")
	lines := []string{
		strconv.FormatInt(base.UnixNano(), 10) + " 40000",                           // seen 600 ms later
		strconv.FormatInt(base.Add(100*time.Millisecond).UnixNano(), 10) + " 40002", // never seen
		strconv.FormatInt(base.Add(2*time.Second).UnixNano(), 10) + " 40000",        // port reused: its own record
		strconv.FormatInt(base.Add(3*time.Second).UnixNano(), 10) + " 40004",        // only a stale record
		strconv.FormatInt(base.Add(4*time.Second).UnixNano(), 10) + " 40006",        // record without connection start
	}
	if err := os.WriteFile(trace, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &follower{ports: map[uint16][]arrival{
		40000: {
			{at: base.Add(600 * time.Millisecond), connStart: base.Add(time.Millisecond)},
			{at: base.Add(2900 * time.Millisecond), connStart: base.Add(2*time.Second + time.Millisecond)},
		},
		40004: {{at: base.Add(3200 * time.Millisecond), connStart: base.Add(1500 * time.Millisecond)}},
		40006: {{at: base.Add(4100 * time.Millisecond)}},
	}}
	l, err := latency(trace, f)
	if err != nil {
		t.Fatal(err)
	}
	if l.N != 3 || l.Unmatched != 2 || l.Min != 100 || l.Max != 900 || l.P50 != 600 {
		t.Errorf("latency %+v", l)
	}
}

func TestTargets(t *testing.T) {
	mk := func(name, kind string, passes ...*Pass) *ScenarioResult {
		return &ScenarioResult{scenario: scenario{Name: name, Kind: kind}, Passes: passes}
	}
	exact := func() *Completeness {
		return &Completeness{Exact: true, Client: &Side{Exact: true}, Server: &Side{Exact: true}}
	}
	agent5k := &Pass{Name: "agent", WorkloadCPU: 2, Throughput: Throughput{ConnPerSec: 5000}, Completeness: exact(),
		Cost: &Cost{TotalShare: 0.012, AgentShare: 0.007, BPFShare: 0.005, AgentUSPerUnit: 2, TotalUSPerUnit: 5.5}}
	lat := &Pass{Name: "observe", Latency: &Latency{}, Completeness: exact()}
	lat.Latency.N, lat.Latency.P99 = 100, 301
	short := &Pass{Name: "observe", LostWorkload: 1, Completeness: exact()}
	burst := mk("burst-100k", "tcp", &Pass{Name: "baseline", Throughput: Throughput{ConnPerSec: 1000}},
		&Pass{Name: "agent", Throughput: Throughput{ConnPerSec: 985}}, short)
	burst.Memory = &Memory{PeakRSSAgent: 96 << 20}
	stream := mk("stream", "stream", &Pass{Name: "baseline", Throughput: Throughput{Gbps: 10}},
		&Pass{Name: "agent", Throughput: Throughput{Gbps: 9.7}, Cost: &Cost{BPFShare: 0.004}})
	keep := mk("http-keepalive", "http", &Pass{Name: "baseline", Throughput: Throughput{ReqPerSec: 100}},
		&Pass{Name: "agent", Throughput: Throughput{ReqPerSec: 99}})
	r := &Results{Scenarios: []*ScenarioResult{mk("tcp-5k", "tcp", agent5k, lat), burst, stream, keep}}
	r.Targets = targets(r)
	got := map[string]*bool{}
	for _, tg := range r.Targets {
		got[tg.Name] = tg.Met
	}
	for name, want := range map[string]*bool{
		"agent + eBPF CPU per short connection (tcp-5k)":                         boolp(false), // 5.5 µs
		"share of the workload's CPU at 5k connections/s":                        boolp(true),  // 1.2%
		"eBPF share on a bulk stream":                                            boolp(true),  // 0.4%
		"throughput change with the agent: http-keepalive / stream / burst-100k": boolp(false), // stream −3%
		"connect → visible in the API, p99":                                      boolp(false), // 301 ms
		"peak RSS in the 100k burst":                                             boolp(true),  // exactly 96 MiB
		"completeness":                                                           boolp(false), // burst lost one
		"user-space hot path":                                                    nil,          // no benchmarks
		"CPU per DNS query (agent + eBPF)":                                       nil,          // not run
	} {
		m, ok := got[name]
		switch {
		case !ok:
			t.Errorf("no target %q", name)
		case (m == nil) != (want == nil) || m != nil && *m != *want:
			t.Errorf("%s: met %v, want %v", name, fmtMet(m), fmtMet(want))
		}
	}
	if md := r.Markdown(); !strings.Contains(md, "| completeness | exact, 0 lost, in every scenario | 2 of 3 compared passes exact with 0 lost; not: burst-100k/observe (lost 1.00) | NOT met |") {
		t.Errorf("markdown lacks the targets:\n%s", md)
	}
}

func fmtMet(m *bool) string {
	if m == nil {
		return "not measured"
	}
	return strconv.FormatBool(*m)
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"-o", "bench/results", "--agent", "/usr/bin/x up --listen {listen}", "it's"})
	want := `-o bench/results --agent '/usr/bin/x up --listen {listen}' 'it'\''s'`
	if got != want {
		t.Errorf("got %s", got)
	}
}

// What the peer's modes print decodes into one union: the TCP modes'
// result.Connect fields promoted, the HTTP and DNS modes' own beside them.
func TestClientJSONDecodesEveryMode(t *testing.T) {
	var c clientJSON
	if err := json.Unmarshal([]byte(`{"ok":5,"refused":1,"bytes_out":100,"bytes_in":7,"seconds":1.5,`+
		`"connections":5,"requests":3,"queries":2,"answers":2,"datagrams_out":2}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.OK != 5 || c.Refused != 1 || c.BytesOut != 100 || c.BytesIn != 7 || c.Seconds != 1.5 ||
		c.Connections != 5 || c.Requests != 3 || c.Queries != 2 || c.Answers != 2 || c.DatagramsOut != 2 {
		t.Errorf("decoded %+v", c)
	}
}
