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
	mk := func(name string, passes ...*Pass) *ScenarioResult {
		return &ScenarioResult{scenario: scenario{Name: name, Kind: "tcp"}, Passes: passes}
	}
	agent5k := &Pass{Name: "agent", WorkloadCPU: 2, Throughput: Throughput{ConnPerSec: 5000},
		Cost: &Cost{TotalShare: 0.005, AgentShare: 0.003, BPFShare: 0.002}}
	lat := &Pass{Name: "observe", Latency: &Latency{}}
	lat.Latency.N, lat.Latency.P99 = 100, 1020
	fast := &Pass{Name: "agent", Throughput: Throughput{ConnPerSec: 12000}, LostKnown: true,
		Completeness: &Completeness{Exact: true, Client: &Side{Exact: true}, Server: &Side{Exact: true}}}
	r := &Results{Scenarios: []*ScenarioResult{mk("tcp-5k", agent5k, lat), mk("tcp-20k-fast", fast)}}
	r.Targets = targets(r)
	got := map[string]*bool{}
	for _, tg := range r.Targets {
		got[tg.Name] = tg.Met
	}
	if m := got["agent CPU at 5k conn/s"]; m == nil || !*m {
		t.Error("CPU target")
	}
	if m := got["connect → visible in the API"]; m == nil || *m {
		t.Error("latency target: p99 1.02 s is not < 1 s")
	}
	if m := got["nothing lost at 20k connections"]; m == nil || !*m {
		t.Error("loss target")
	}
	if m := got["user-space hot path"]; m != nil {
		t.Error("hot path judged without benchmarks")
	}
	if md := r.Markdown(); !strings.Contains(md, "| agent CPU at 5k conn/s | < 1% of the workload's CPU (agent + eBPF) |") {
		t.Errorf("markdown lacks the targets:\n%s", md)
	}
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
