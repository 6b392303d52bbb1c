package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowlens/flowlens/bench/internal/bpfstat"
	"github.com/flowlens/flowlens/bench/internal/perfshare"
	"github.com/flowlens/flowlens/bench/internal/promtext"
	"github.com/flowlens/flowlens/bench/internal/stats"
	"github.com/flowlens/flowlens/internal/datapath"
	"github.com/flowlens/flowlens/test/peer/result"
)

// scenario is one workload.
type scenario struct {
	Name     string        `json:"name"`
	Desc     string        `json:"description"`
	Kind     string        `json:"kind"` // tcp, stream, http, dns, hold
	Port     uint16        `json:"port"`
	Count    int           `json:"count,omitempty"` // connections, requests (cap) or queries
	Rate     float64       `json:"rate,omitempty"`  // per second; 0: as fast as possible
	Conc     int           `json:"concurrency,omitempty"`
	Bytes    int           `json:"bytes,omitempty"` // per connection, client to server
	Reply    int           `json:"reply,omitempty"` // per connection or response, server to client
	Duration time.Duration `json:"duration,omitempty"`
	// Observe adds a pass with API followers: latency, and completeness
	// past what the API ring holds (or when other traffic on the host
	// wraps it).
	Observe bool `json:"-"`
	// Tools adds a pass polling ss and conntrack instead of an agent.
	Tools bool `json:"-"`
	// Active (hold) sends Bytes on every held connection each interval.
	Active bool `json:"active,omitempty"`
	// OptIn runs only when named in --scenarios.
	OptIn bool `json:"-"`
}

func scenarios(short bool) []scenario {
	n := func(full, small int) int {
		if short {
			return small
		}
		return full
	}
	d := func(full, small time.Duration) time.Duration {
		if short {
			return small
		}
		return full
	}
	return []scenario{
		{Name: "tcp-1k", Desc: "short TCP connections at 1,000/s", Kind: "tcp", Port: 8080,
			Count: n(5000, 2000), Rate: 1000, Conc: 16, Bytes: 1000, Reply: 2000, Observe: true},
		{Name: "tcp-5k", Desc: "short TCP connections at 5,000/s", Kind: "tcp", Port: 8080,
			Count: n(25000, 5000), Rate: 5000, Conc: 32, Bytes: 1000, Reply: 2000, Observe: true, Tools: true},
		{Name: "tcp-20k-fast", Desc: "20,000 short TCP connections as fast as possible", Kind: "tcp", Port: 8080,
			Count: n(20000, 2000), Conc: 32, Bytes: 1000, Reply: 2000, Observe: true},
		{Name: "stream", Desc: "one long-lived TCP stream at full speed", Kind: "stream", Port: 8081,
			Duration: d(5*time.Second, 2*time.Second), Bytes: 64 << 10, Observe: true},
		{Name: "http-keepalive", Desc: "HTTP/1.1 keep-alive GETs on 16 connections, 1 KiB responses", Kind: "http", Port: 8082,
			Count: 5_000_000, Conc: 16, Reply: 1024, Duration: d(5*time.Second, 2*time.Second), Observe: true},
		{Name: "dns", Desc: "DNS queries at 1,000/s, a new UDP socket each", Kind: "dns", Port: 53,
			Count: n(5000, 1000), Rate: 1000, Conc: 8, Observe: true},
		{Name: "burst-100k", Desc: "a burst of 100,000 short TCP connections", Kind: "tcp", Port: 8080,
			Count: n(100000, 5000), Conc: 32, Bytes: 1000, Reply: 2000, Observe: true},
		{Name: "hold-100k-idle", Desc: "100,000 TCP connections held open and silent", Kind: "hold", Port: 9000,
			Count: n(100000, 2000), Rate: 10000, Conc: 32, Bytes: 8, Duration: d(10*time.Second, 3*time.Second), Observe: true},
		{Name: "hold-100k-active", Desc: "100,000 TCP connections held open, each sending 8 bytes per interval", Kind: "hold", Port: 9000,
			Count: n(100000, 2000), Rate: 10000, Conc: 32, Bytes: 8, Duration: d(10*time.Second, 3*time.Second), Active: true, Observe: true},
		// Opt-in: ≈10 KiB of kernel slab per connection (both ends) is
		// ≈10 GiB, the agent needs ≈2.3 KiB of RSS per connection held,
		// and opening and closing at 10k/s takes minutes. No observe
		// pass: its ring of 3M records and two followers would not fit
		// in 24 GiB beside the kernel's share; hold-100k checks
		// completeness the same way.
		{Name: "hold-1m-idle", Desc: "1,000,000 TCP connections held open and silent (opt-in)", Kind: "hold", Port: 9000,
			Count: n(1_000_000, 2000), Rate: 10000, Conc: 32, Bytes: 8, Duration: d(10*time.Second, 3*time.Second), OptIn: true},
	}
}

// defaultScenarios are those a run without --scenarios runs.
func defaultScenarios(short bool) []scenario {
	return slices.DeleteFunc(scenarios(short), func(s scenario) bool { return s.OptIn })
}

func scenarioNames() []string {
	var out []string
	for _, s := range scenarios(false) {
		out = append(out, s.Name)
	}
	return out
}

// unit is what per-item costs are counted in.
func (s scenario) unit() string {
	switch s.Kind {
	case "tcp", "hold":
		return "connection"
	case "http":
		return "request"
	case "dns":
		return "query"
	}
	return ""
}

// rate names the scenario's throughput and reads it from a pass.
func (s scenario) rate() (string, func(*Pass) float64) {
	switch s.Kind {
	case "tcp":
		return "conn/s", func(p *Pass) float64 { return p.Throughput.ConnPerSec }
	case "http":
		return "req/s", func(p *Pass) float64 { return p.Throughput.ReqPerSec }
	case "dns":
		return "queries/s", func(p *Pass) float64 { return p.Throughput.ReqPerSec }
	}
	return "Gb/s", func(p *Pass) float64 { return p.Throughput.Gbps }
}

// units counts what the scenario's figures are per (unit): 0 when it has none.
func (s scenario) units(t Traffic) int64 {
	switch s.Kind {
	case "tcp":
		return t.Connections
	case "http", "dns":
		return t.Requests
	}
	return 0
}

// Traffic is what the load generator and the server know they did.
type Traffic struct {
	Connections  int64   `json:"connections"` // TCP connections the client made (HTTP: dialed)
	Failed       int64   `json:"failed"`      // failed connects (HTTP: failed requests, DNS: unanswered)
	Requests     int64   `json:"requests,omitempty"`
	BytesOut     int64   `json:"bytes_out"` // client to server, payload
	BytesIn      int64   `json:"bytes_in"`
	DatagramsOut int64   `json:"datagrams_out,omitempty"`
	DatagramsIn  int64   `json:"datagrams_in,omitempty"`
	Seconds      float64 `json:"seconds"`
	Server       struct {
		Connections  int64 `json:"connections"`
		Requests     int64 `json:"requests,omitempty"`
		BytesIn      int64 `json:"bytes_in"`
		BytesOut     int64 `json:"bytes_out"`
		DatagramsIn  int64 `json:"datagrams_in,omitempty"`
		DatagramsOut int64 `json:"datagrams_out,omitempty"`
	} `json:"server"`
}

// clientJSON is the union of what the peer's client modes print: the TCP
// modes' result.Connect, and what the HTTP and DNS modes print besides.
type clientJSON struct {
	result.Connect
	Connections  int64 `json:"connections"`
	Requests     int64 `json:"requests"`
	Errors       int64 `json:"errors"`
	Queries      int64 `json:"queries"`
	Answers      int64 `json:"answers"`
	Timeouts     int64 `json:"timeouts"`
	DatagramsOut int64 `json:"datagrams_out"`
	DatagramsIn  int64 `json:"datagrams_in"`
}

// Throughput of the workload.
type Throughput struct {
	ConnPerSec float64 `json:"connections_per_second,omitempty"`
	ReqPerSec  float64 `json:"requests_per_second,omitempty"`
	Gbps       float64 `json:"gbit_per_second"`
}

// Cost is what the agent cost during a pass. The host may be busy with
// other work the agent observes too (it sees every socket on the host), so
// the agent's CPU and its programs' run time are also sampled in quiet
// windows just before and after the pass; "net" values subtract that
// background rate over the pass's window.
type Cost struct {
	WindowSeconds float64       `json:"window_seconds"` // workload start to drain end
	AgentCPU      float64       `json:"agent_cpu_seconds"`
	AgentCPUStat  float64       `json:"agent_cpu_seconds_proc_stat"` // utime+stime+cutime+cstime
	BPF           *bpfstat.Cost `json:"bpf,omitempty"`
	BPFCPU        float64       `json:"bpf_cpu_seconds"`

	BackgroundAgentPerSec float64 `json:"background_agent_cpu_seconds_per_second"`
	BackgroundBPFPerSec   float64 `json:"background_bpf_cpu_seconds_per_second"`
	BackgroundBPFRunsSec  float64 `json:"background_bpf_runs_per_second"`
	AgentCPUNet           float64 `json:"agent_cpu_seconds_net"`
	BPFCPUNet             float64 `json:"bpf_cpu_seconds_net"`
	BPFRunsNet            float64 `json:"bpf_runs_net"`

	AgentShare     float64 `json:"agent_share_of_workload_cpu"` // net
	BPFShare       float64 `json:"bpf_share_of_workload_cpu"`   // net
	TotalShare     float64 `json:"total_share_of_workload_cpu"` // net
	AgentShareRaw  float64 `json:"agent_share_of_workload_cpu_raw"`
	TotalShareRaw  float64 `json:"total_share_of_workload_cpu_raw"`
	AgentUSPerUnit float64 `json:"agent_us_per_unit,omitempty"` // net
	TotalUSPerUnit float64 `json:"total_us_per_unit,omitempty"` // net
}

// Side compares one observer's records with the truth.
type Side struct {
	Filter   string   `json:"filter"`
	Fields   []string `json:"fields"` // compared
	Expected totals   `json:"expected"`
	Got      totals   `json:"got"`
	Exact    bool     `json:"exact"`
}

// Completeness of a pass.
type Completeness struct {
	Source string `json:"source"` // query (after the run) or follow (streamed during it)
	Client *Side  `json:"client,omitempty"`
	Server *Side  `json:"server,omitempty"`
	Exact  bool   `json:"exact"`
	Note   string `json:"note,omitempty"`
}

// Latency from connect() to the record in the API, milliseconds.
type Latency struct {
	stats.Summary
	Unmatched int `json:"unmatched"`
}

// Fill is the peak of the agent's tables during a pass (polled /metrics).
type Fill struct {
	TCPSocks    float64 `json:"tcp_socks_peak"`
	TCPCap      float64 `json:"tcp_socks_capacity"`
	UDPFlows    float64 `json:"udp_flows_peak"`
	UDPCap      float64 `json:"udp_flows_capacity"`
	TableTCP    float64 `json:"table_tcp_peak"`
	RingRecords float64 `json:"api_ring_records_peak"`
	RingCap     float64 `json:"api_ring_capacity"`
}

// Tools is what ss and conntrack, polled every second, saw.
type Tools struct {
	Polls           int     `json:"polls"`
	DistinctPorts   int     `json:"distinct_source_ports"` // the generator used
	SSSeen          int     `json:"ss_connections_seen"`
	SSCPU           float64 `json:"ss_cpu_seconds"`
	Conntrack       bool    `json:"conntrack"`
	ConntrackSeen   int     `json:"conntrack_connections_seen,omitempty"`
	ConntrackCPU    float64 `json:"conntrack_cpu_seconds,omitempty"`
	ConntrackBytes  uint64  `json:"conntrack_ip_bytes_original,omitempty"`
	ConntrackReason string  `json:"conntrack_note,omitempty"`
}

// Pass is one run of a scenario's workload.
type Pass struct {
	Name        string             `json:"name"` // baseline, agent, observe, hooks, tools
	Traffic     Traffic            `json:"traffic"`
	WorkloadCPU float64            `json:"workload_cpu_seconds"`
	Throughput  Throughput         `json:"throughput"`
	Cost        *Cost              `json:"cost,omitempty"`
	Lost        map[string]float64 `json:"lost,omitempty"` // loss counters that moved
	LostTotal   float64            `json:"lost_total"`
	// LostWorkload leaves out losses that this IPv4-only workload cannot
	// cause or suffer: udp_unparsed counts IPv6 packets with extension
	// headers anywhere on the host (MLD reports of interfaces coming up in
	// other namespaces, for one).
	LostWorkload float64       `json:"lost_workload"`
	LostKnown    bool          `json:"lost_known"`
	Completeness *Completeness `json:"completeness,omitempty"`
	Hold         *HoldCost     `json:"hold,omitempty"`
	Latency      *Latency      `json:"latency_ms,omitempty"`
	Fill         *Fill         `json:"fill,omitempty"`
	Tools        *Tools        `json:"tools,omitempty"`
	// EmptyHooks is what the programs of the hooks pass cost: each returns
	// at once, on a hook the agent's programs run from.
	EmptyHooks *bpfstat.Cost `json:"empty_hooks,omitempty"`
	// Perf is the workload's CPU in eBPF and its dispatch, sampled (-perf).
	Perf  *perfshare.Share `json:"perf,omitempty"`
	Error string           `json:"error,omitempty"`
	// Diagnostics, when the counts are not exact: the agent's hooks and
	// table sizes from /metrics, and the end of its log.
	Diagnostics []string `json:"diagnostics,omitempty"`
}

// Memory of the agent in a scenario.
type Memory struct {
	IdleRSS         uint64        `json:"idle_rss_bytes"`
	PeakRSSAgent    uint64        `json:"peak_rss_bytes_agent_pass"` // VmHWM after the agent pass
	PeakRSS         uint64        `json:"peak_rss_bytes"`            // VmHWM at the end (API followers included)
	MapMemlock      uint64        `json:"kernel_map_bytes"`
	Maps            []bpfstat.Map `json:"maps,omitempty"`
	RSSPer10kConns  float64       `json:"rss_growth_bytes_per_10k_connections,omitempty"`
	MapPer10kTCPCap float64       `json:"tcp_map_bytes_per_10k_entries,omitempty"`
}

// ScenarioResult is everything measured for one scenario.
type ScenarioResult struct {
	scenario
	Passes []*Pass  `json:"passes"`
	Memory *Memory  `json:"memory,omitempty"`
	Errors []string `json:"errors,omitempty"`
}

func (r *ScenarioResult) pass(name string) *Pass {
	for _, p := range r.Passes {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// drain is how long to wait after the workload for the agent to report the
// last of it: one interval and some slack.
const drain = 1500 * time.Millisecond

func (e *env) runScenario(ctx context.Context, sc scenario) *ScenarioResult {
	if sc.Kind == "hold" {
		return e.runHold(ctx, sc)
	}
	res := &ScenarioResult{scenario: sc}
	fail := func(what string, err error) {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", what, err))
		e.logf("%s: %s: %v", sc.Name, what, err)
	}
	add := func(p *Pass, err error) {
		if p != nil {
			if err != nil {
				p.Error = err.Error()
			}
			res.Passes = append(res.Passes, p)
		}
		if err != nil {
			fail("pass", err)
		}
	}

	if e.runs("baseline") {
		e.logf("%s: baseline (no agent)", sc.Name)
		add(e.pass(ctx, sc, "baseline", nil))
	}
	if ctx.Err() == nil && (e.runs("agent") || e.runs("observe")) {
		e.agentPasses(ctx, sc, res, add, fail)
	}
	if ctx.Err() == nil && e.runs("hooks") {
		e.logf("%s: empty programs on the agent's hooks (no agent)", sc.Name)
		add(e.pass(ctx, sc, "hooks", nil))
	}
	if sc.Tools && ctx.Err() == nil && e.runs("tools") {
		e.logf("%s: ss and conntrack polled every second (no agent)", sc.Name)
		add(e.pass(ctx, sc, "tools", nil))
	}
	return res
}

// agentPasses starts an agent and runs the passes that measure it, and
// the agent's memory.
func (e *env) agentPasses(ctx context.Context, sc scenario, res *ScenarioResult, add func(*Pass, error), fail func(string, error)) {
	a, err := e.startAgent(ctx)
	if err != nil {
		fail("start agent", err)
		return
	}
	defer a.stop()
	mem := &Memory{}
	res.Memory = mem
	if m, err := a.memory(); err == nil {
		mem.IdleRSS = m.RSS
	}

	if e.runs("agent") {
		e.logf("%s: with agent", sc.Name)
		p, err := e.pass(ctx, sc, "agent", a)
		add(p, err)
		if m, err := a.memory(); err == nil {
			mem.PeakRSSAgent = m.Peak
			if sc.Kind == "tcp" && p != nil && p.Traffic.Connections > 0 {
				mem.RSSPer10kConns = float64(m.Peak-min(m.Peak, mem.IdleRSS)) / (float64(p.Traffic.Connections) / 1e4)
			}
		}
	}
	if sc.Observe && a.api != "" && ctx.Err() == nil && e.runs("observe") {
		e.logf("%s: with agent and API followers", sc.Name)
		add(e.pass(ctx, sc, "observe", a))
	}
	if m, err := a.memory(); err == nil {
		mem.PeakRSS = m.Peak
	}
	if s, err := a.bpf(ctx); err == nil {
		mem.MapMemlock, mem.Maps = s.MapMemory()
		for _, m := range mem.Maps {
			if m.Name == "tcp_socks" && m.MaxEntries > 0 {
				mem.MapPer10kTCPCap = float64(m.Memlock) / (float64(m.MaxEntries) / 1e4)
			}
		}
	}
}

// workload runs the scenario's servers and client in a fresh namespace pair
// and cgroup; around the client's run it calls before and after.
type workload struct {
	pair    *pair
	cg      *cgroup
	trace   string
	traffic Traffic
	cpu     float64
}

// serverArgs and clientArgs are the peer command lines for a scenario.
func (sc scenario) serverArgs(p *pair) []string {
	addr := fmt.Sprintf("%s:%d", p.addrA, sc.Port)
	switch sc.Kind {
	case "http":
		return []string{"http-serve", "-listen", addr, "-body", strconv.Itoa(sc.Reply)}
	case "dns":
		return []string{"dns-serve", "-listen", addr}
	}
	return []string{"tcp-serve", "-listen", addr, "-reply", strconv.Itoa(sc.Reply)}
}

func (sc scenario) clientArgs(p *pair, trace string) []string {
	addr := fmt.Sprintf("%s:%d", p.addrA, sc.Port)
	limit := "120s" // every client is bounded in count and in time
	switch sc.Kind {
	case "stream":
		return []string{"tcp-stream", "-addr", addr, "-duration", sc.Duration.String(), "-chunk", strconv.Itoa(sc.Bytes)}
	case "http":
		return []string{"http-load", "-addr", addr, "-connections", strconv.Itoa(sc.Conc),
			"-requests", strconv.Itoa(sc.Count), "-duration", sc.Duration.String()}
	case "dns":
		return []string{"dns-load", "-addr", addr, "-count", strconv.Itoa(sc.Count),
			"-rate", fmt.Sprint(sc.Rate), "-concurrency", strconv.Itoa(sc.Conc), "-duration", limit}
	}
	args := []string{"tcp-connect", "-addr", addr, "-count", strconv.Itoa(sc.Count), "-bytes", strconv.Itoa(sc.Bytes),
		"-rate", fmt.Sprint(sc.Rate), "-concurrency", strconv.Itoa(sc.Conc), "-duration", limit}
	if trace != "" {
		args = append(args, "-trace", trace)
	}
	return args
}

func (sc scenario) traffic(c clientJSON) Traffic {
	var t Traffic
	t.BytesOut, t.BytesIn, t.Seconds = c.BytesOut, c.BytesIn, c.Seconds
	switch sc.Kind {
	case "http":
		t.Connections, t.Requests, t.Failed = c.Connections, c.Requests, c.Errors
	case "dns":
		t.Requests, t.Failed = c.Answers, c.Timeouts+c.Errors
		t.DatagramsOut, t.DatagramsIn = c.DatagramsOut, c.DatagramsIn
	default:
		t.Connections, t.Failed = c.OK, c.Refused+c.TimedOut+c.Failed
	}
	return t
}

func (t Traffic) throughput(kind string) Throughput {
	var tp Throughput
	if t.Seconds <= 0 {
		return tp
	}
	switch kind {
	case "tcp":
		tp.ConnPerSec = float64(t.Connections) / t.Seconds
	case "http", "dns":
		tp.ReqPerSec = float64(t.Requests) / t.Seconds
	}
	tp.Gbps = float64(t.BytesOut+t.BytesIn) * 8 / t.Seconds / 1e9
	return tp
}

// pass runs the workload once. a is nil for the baseline, hooks and tools
// passes.
func (e *env) pass(ctx context.Context, sc scenario, name string, a *agent) (*Pass, error) {
	p := &Pass{Name: name}
	pr, cg, done, err := e.newWorkload()
	if err != nil {
		return nil, err
	}
	defer done()
	if name == "hooks" {
		empty, err := datapath.AttachEmpty(e.cgMount)
		if err != nil {
			return nil, fmt.Errorf("attach empty programs: %w", err)
		}
		defer empty.Close()
	}
	flowlens := a != nil && a.api != ""
	observe := name == "observe"

	srv, err := e.startServer(ctx, cg, pr.a, sc.serverArgs(pr)...)
	if err != nil {
		return nil, err
	}
	defer srv.kill()

	// What selects this pass's records: the addresses and port, which only
	// this pass's namespaces use. Each side's records must also name its
	// namespace (attribution), counted apart from completeness.
	proto := "tcp"
	if sc.Kind == "dns" {
		proto = "udp"
	}
	base := fmt.Sprintf("from-ip=%s&to-ip=%s&to-port=%d&protocol=%s", pr.addrB, pr.addrA, sc.Port, proto)
	csel := selection{"observer=client&" + base, pr.inoB}
	ssel := selection{"observer=server&" + base, pr.inoA}
	cf, sf := csel.filter, ssel.filter

	var m0 promtext.Samples
	var cfol, sfol *follower
	var fill *fillPoller
	if flowlens {
		if m0, err = a.metrics(ctx); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		if observe {
			if cfol, err = a.follow(ctx, csel, true); err != nil {
				return nil, err
			}
			defer cfol.stop()
			if sfol, err = a.follow(ctx, ssel, false); err != nil {
				return nil, err
			}
			defer sfol.stop()
			fill = startFill(ctx, a)
			defer fill.stop()
		}
	}
	var tools *toolsPoller
	if name == "tools" {
		tools = e.startTools(ctx, pr, sc.Port)
		defer tools.stop()
	}
	trace := ""
	if (observe || name == "tools") && sc.Kind == "tcp" {
		trace = filepath.Join(e.tmp, fmt.Sprintf("trace-%d", e.next()))
		defer os.Remove(trace)
	}

	var a0, a1 cpuSample
	var b0, b1 bpfstat.Snapshot
	var bgs []background
	if a != nil && name == "agent" {
		bgs = append(bgs, e.quiet(ctx, a))
		a0, _ = a.cpu()
		b0, _ = a.bpf(ctx)
	}
	if name == "hooks" {
		b0, _ = bpfSnapshot(ctx, os.Getpid())
	}
	var rec *perfshare.Recorder
	if e.opts.Perf && (name == "agent" || name == "hooks") {
		if rec, err = perfshare.Start(ctx, filepath.Join(e.tmp, fmt.Sprintf("perf-%d.data", e.next()))); err != nil {
			return nil, err
		}
	}
	w0, err := cg.cpu()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var cj clientJSON
	err = e.runJSON(ctx, cg, pr.b, &cj, e.peer, sc.clientArgs(pr, trace)...)
	if rec != nil {
		// The load generator and the servers are all the peer binary:
		// its command name, as the kernel keeps it (15 bytes).
		comm := filepath.Base(e.peer)
		comm = comm[:min(len(comm), 15)]
		share, perr := rec.Stop(ctx, comm)
		if perr != nil {
			return nil, perr
		}
		p.Perf = &share
	}
	if err != nil {
		return nil, err
	}
	w1, err := cg.cpu()
	if err != nil {
		return nil, err
	}
	p.Traffic = sc.traffic(cj)
	if err := srv.stop(&p.Traffic.Server); err != nil {
		return nil, err
	}
	p.WorkloadCPU = w1.Sub(w0).Usage.Seconds()
	p.Throughput = p.Traffic.throughput(sc.Kind)
	if name == "hooks" {
		if b1, err = bpfSnapshot(ctx, os.Getpid()); err != nil {
			return p, fmt.Errorf("read the empty programs' stats: %w", err)
		}
		c := bpfstat.Diff(b0, b1)
		p.EmptyHooks = &c
	}
	if tools != nil {
		p.Tools = tools.finish()
		p.Tools.DistinctPorts, _ = distinctPorts(trace)
	}

	if a != nil && name == "agent" {
		if err := sleepCtx(ctx, drain); err != nil {
			return p, err
		}
		a1, _ = a.cpu()
		b1, _ = a.bpf(ctx)
		window := time.Since(start)
		bgs = append(bgs, e.quiet(ctx, a))
		p.Cost = cost(sc, p, a0, a1, b0, b1, window, bgs...)
	}
	if !flowlens {
		return p, nil
	}

	exp := expect(sc, p.Traffic)
	if observe {
		if p.Completeness, err = followed(ctx, exp, cfol, sfol, cf, sf, settleWait); err != nil {
			return p, err
		}
		if trace != "" {
			p.Latency, err = latency(trace, cfol)
			if err != nil {
				return p, err
			}
		}
	} else if p.Completeness, err = queried(ctx, a, exp, csel, ssel, m0, settleWait); err != nil {
		return p, err
	}
	if fill != nil {
		p.Fill = fill.stop()
	}
	return p, losses(ctx, a, p, m0)
}

// settleWait is how long records may take to add up after a pass.
const settleWait = 20 * time.Second

// followed compares what two followers streamed with what is expected,
// once it settled or wait passed.
func followed(ctx context.Context, exp expectation, cfol, sfol *follower, cf, sf string, wait time.Duration) (*Completeness, error) {
	c, s, err := settle(ctx, func() (totals, totals, error) {
		c, err1 := cfol.totals()
		s, err2 := sfol.totals()
		return c, s, errors.Join(err1, err2)
	}, exp, wait)
	if err != nil {
		return nil, err
	}
	return compare("follow", exp, c, s, cf, sf), nil
}

// queried compares the records the API ring holds with what is expected,
// when it still holds every record written since m0.
func queried(ctx context.Context, a *agent, exp expectation, csel, ssel selection, m0 promtext.Samples, wait time.Duration) (*Completeness, error) {
	m, err := a.metrics(ctx)
	if err != nil {
		return nil, err
	}
	written := m.Sum("flowlens_flow_ring_written_total") - m0.Sum("flowlens_flow_ring_written_total")
	if ringCap := m.Sum("flowlens_flow_ring_capacity"); ringCap > 0 && written > ringCap {
		return &Completeness{Source: "query", Note: fmt.Sprintf(
			"not checked: %.0f records written during the pass, more than the API ring holds (%.0f); see the follow pass", written, ringCap)}, nil
	}
	c, s, err := settle(ctx, func() (totals, totals, error) {
		c, err1 := a.query(ctx, csel)
		s, err2 := a.query(ctx, ssel)
		return c, s, errors.Join(err1, err2)
	}, exp, wait)
	if err != nil {
		return nil, err
	}
	out := compare("query", exp, c, s, csel.filter, ssel.filter)
	// Other traffic on the host writes records too; if the ring
	// wrapped while we read it, a shortfall proves nothing.
	if m2, err := a.metrics(ctx); err == nil && !out.Exact {
		written := m2.Sum("flowlens_flow_ring_written_total") - m0.Sum("flowlens_flow_ring_written_total")
		if ringCap := m2.Sum("flowlens_flow_ring_capacity"); written > ringCap {
			out = &Completeness{Source: "query", Note: fmt.Sprintf(
				"not checked: the API ring wrapped while it was read (%.0f records written since the pass began, the ring holds %.0f): other traffic on the host; see the follow pass", written, ringCap)}
		}
	}
	return out, nil
}

// losses records what the agent's loss counters moved by since m0 and,
// when the counts are not exact, what may say why.
func losses(ctx context.Context, a *agent, p *Pass, m0 promtext.Samples) error {
	m1, err := a.metrics(ctx)
	if err != nil {
		return err
	}
	p.Lost = promtext.Delta(m0, m1, "flowlens_agent_lost_total")
	p.LostKnown = len(m1.Series("flowlens_agent_lost_total")) > 0
	if p.Completeness != nil && p.Completeness.Client != nil && !p.Completeness.Exact {
		for _, name := range []string{"flowlens_datapath_hook_attached", "flowlens_datapath_map_entries", "flowlens_agent_table_entries", "flowlens_agent_events_read_total", "flowlens_agent_flows_emitted_total"} {
			for _, k := range sortedKeys(m1.Series(name)) {
				p.Diagnostics = append(p.Diagnostics, fmt.Sprintf("%s %v", k, m1[k]))
			}
		}
		p.Diagnostics = append(p.Diagnostics, strings.Split(a.tail(), "\n")...)
	}
	for k, v := range p.Lost {
		p.LostTotal += v
		if !hostOnlyLoss(k) {
			p.LostWorkload += v
		}
	}
	return nil
}

// background is the agent's activity in a quiet window.
type background struct {
	agentCPU, bpfNS, bpfRuns float64
	seconds                  float64
}

func (e *env) quiet(ctx context.Context, a *agent) background {
	win := 1500 * time.Millisecond
	if e.opts.Short {
		win = 500 * time.Millisecond
	}
	c0, _ := a.cpu()
	b0, _ := a.bpf(ctx)
	t0 := time.Now()
	_ = sleepCtx(ctx, win)
	c1, _ := a.cpu()
	b1, _ := a.bpf(ctx)
	d := bpfstat.Diff(b0, b1)
	return background{c1.cg.Sub(c0.cg).Usage.Seconds(), float64(d.TimeNS), float64(d.Runs), time.Since(t0).Seconds()}
}

func cost(sc scenario, p *Pass, a0, a1 cpuSample, b0, b1 bpfstat.Snapshot, window time.Duration, bgs ...background) *Cost {
	c := &Cost{
		WindowSeconds: window.Seconds(),
		AgentCPU:      a1.cg.Sub(a0.cg).Usage.Seconds(),
		AgentCPUStat:  a1.stat.Sub(a0.stat).Seconds(),
	}
	var runs float64
	if len(b1.Progs) > 0 {
		bc := bpfstat.Diff(b0, b1)
		c.BPF = &bc
		c.BPFCPU = float64(bc.TimeNS) / 1e9
		runs = float64(bc.Runs)
	}
	var bg background
	for _, b := range bgs {
		bg.agentCPU += b.agentCPU
		bg.bpfNS += b.bpfNS
		bg.bpfRuns += b.bpfRuns
		bg.seconds += b.seconds
	}
	if bg.seconds > 0 {
		c.BackgroundAgentPerSec = bg.agentCPU / bg.seconds
		c.BackgroundBPFPerSec = bg.bpfNS / 1e9 / bg.seconds
		c.BackgroundBPFRunsSec = bg.bpfRuns / bg.seconds
	}
	c.AgentCPUNet = c.AgentCPU - c.BackgroundAgentPerSec*c.WindowSeconds
	c.BPFCPUNet = c.BPFCPU - c.BackgroundBPFPerSec*c.WindowSeconds
	c.BPFRunsNet = runs - c.BackgroundBPFRunsSec*c.WindowSeconds
	w := p.WorkloadCPU
	c.AgentShare = safeRatio(c.AgentCPUNet, w)
	c.BPFShare = safeRatio(c.BPFCPUNet, w)
	c.TotalShare = safeRatio(c.AgentCPUNet+c.BPFCPUNet, w)
	c.AgentShareRaw = safeRatio(c.AgentCPU, w)
	c.TotalShareRaw = safeRatio(c.AgentCPU+c.BPFCPU, w)
	if units := sc.units(p.Traffic); units > 0 {
		c.AgentUSPerUnit = c.AgentCPUNet / float64(units) * 1e6
		c.TotalUSPerUnit = (c.AgentCPUNet + c.BPFCPUNet) / float64(units) * 1e6
	}
	return c
}

// expectation is what the records of each side must add up to.
type expectation struct {
	client, server totals
	fields         []string
}

func expect(sc scenario, t Traffic) expectation {
	var e expectation
	switch sc.Kind {
	case "dns":
		e.client = totals{DgramsToDst: t.DatagramsOut, DgramsToSrc: t.DatagramsIn, BytesToDst: t.BytesOut, BytesToSrc: t.BytesIn}
		e.server = totals{DgramsToDst: t.Server.DatagramsIn, DgramsToSrc: t.Server.DatagramsOut, BytesToDst: t.Server.BytesIn, BytesToSrc: t.Server.BytesOut}
		e.fields = []string{"datagrams_to_destination", "datagrams_to_source", "bytes_to_destination", "bytes_to_source"}
	default:
		e.client = totals{Opened: t.Connections, Closed: t.Connections, BytesToDst: t.BytesOut, BytesToSrc: t.BytesIn}
		e.server = totals{Opened: t.Server.Connections, Closed: t.Server.Connections, BytesToDst: t.Server.BytesIn, BytesToSrc: t.Server.BytesOut}
		e.fields = []string{"connections_opened", "connections_closed", "bytes_to_destination", "bytes_to_source"}
		if sc.Kind == "tcp" {
			e.client.Failed = t.Failed
			e.fields = append(e.fields, "connections_failed")
		}
	}
	return e
}

func field(t totals, name string) int64 {
	switch name {
	case "connections_opened":
		return t.Opened
	case "connections_closed":
		return t.Closed
	case "connections_failed":
		return t.Failed
	case "bytes_to_destination":
		return t.BytesToDst
	case "bytes_to_source":
		return t.BytesToSrc
	case "datagrams_to_destination":
		return t.DgramsToDst
	case "datagrams_to_source":
		return t.DgramsToSrc
	}
	panic("unknown field " + name)
}

// reached reports whether got has at least what is expected in every field.
func reached(exp, got totals, fields []string) bool {
	for _, f := range fields {
		if field(got, f) < field(exp, f) {
			return false
		}
	}
	return true
}

func compare(source string, e expectation, c, s totals, cf, sf string) *Completeness {
	side := func(filter string, exp, got totals) *Side {
		sd := &Side{Filter: filter, Fields: e.fields, Expected: exp, Got: got, Exact: true}
		for _, f := range e.fields {
			if field(got, f) != field(exp, f) {
				sd.Exact = false
			}
		}
		return sd
	}
	out := &Completeness{Source: source, Client: side(cf, e.client, c), Server: side(sf, e.server, s)}
	out.Exact = out.Client.Exact && out.Server.Exact
	return out
}

// settle polls until both sides reach what is expected and stop changing,
// or wait passes; the caller compares exactly, so an overshoot shows.
func settle(ctx context.Context, get func() (totals, totals, error), e expectation, wait time.Duration) (totals, totals, error) {
	deadline := time.Now().Add(wait)
	var pc, ps totals
	stable := 0
	for {
		c, s, err := get()
		if err != nil {
			return c, s, err
		}
		if c == pc && s == ps && reached(e.client, c, e.fields) && reached(e.server, s, e.fields) {
			if stable++; stable >= 2 {
				return c, s, nil
			}
		} else {
			stable = 0
		}
		pc, ps = c, s
		if time.Now().After(deadline) {
			return c, s, nil // compared as they are: short of the truth
		}
		if err := sleepCtx(ctx, 700*time.Millisecond); err != nil {
			return c, s, err
		}
	}
}

// latency matches each connection the generator traced (start, source
// port) with the first record of that port that reached the API reader
// after it started (and, when records carry it, whose connection start is
// the same connection's), and summarises the delays in milliseconds.
func latency(trace string, f *follower) (*Latency, error) {
	file, err := os.Open(trace)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	var ms []float64
	unmatched := 0
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 2 {
			continue
		}
		ns, err1 := strconv.ParseInt(fs[0], 10, 64)
		port, err2 := strconv.ParseUint(fs[1], 10, 16)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("trace line %q", sc.Text())
		}
		start := time.Unix(0, ns)
		found := false
		for _, ar := range f.ports[uint16(port)] {
			if ar.at.Before(start) {
				continue
			}
			if !ar.connStart.IsZero() && math.Abs(ar.connStart.Sub(start).Seconds()) > 0.5 {
				continue
			}
			ms = append(ms, ar.at.Sub(start).Seconds()*1e3)
			found = true
			break
		}
		if !found {
			unmatched++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return &Latency{Summary: stats.Summarize(ms), Unmatched: unmatched}, nil
}

// distinctPorts counts the source ports in a trace: ports are reused
// (TIME_WAIT reuse after 1 s), and tools that key on the 4-tuple can tell
// apart at most this many connections.
func distinctPorts(trace string) (int, error) {
	b, err := os.ReadFile(trace)
	if err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			seen[f[1]] = true
		}
	}
	return len(seen), nil
}

// fillPoller samples the agent's table sizes from /metrics twice a second.
type fillPoller struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	f      Fill
}

func startFill(ctx context.Context, a *agent) *fillPoller {
	ctx, cancel := context.WithCancel(ctx)
	fp := &fillPoller{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(fp.done)
		for {
			if m, err := a.metrics(ctx); err == nil {
				fp.mu.Lock()
				f := &fp.f
				f.TCPSocks = max(f.TCPSocks, m[`flowlens_datapath_map_entries{map="tcp_socks"}`])
				f.UDPFlows = max(f.UDPFlows, m[`flowlens_datapath_map_entries{map="udp_flows"}`])
				f.TCPCap = m[`flowlens_datapath_map_capacity{map="tcp_socks"}`]
				f.UDPCap = m[`flowlens_datapath_map_capacity{map="udp_flows"}`]
				f.TableTCP = max(f.TableTCP, m[`flowlens_agent_table_entries{kind="tcp"}`])
				f.RingRecords = max(f.RingRecords, m["flowlens_flow_ring_records"])
				f.RingCap = m["flowlens_flow_ring_capacity"]
				fp.mu.Unlock()
			}
			if sleepCtx(ctx, 500*time.Millisecond) != nil {
				return
			}
		}
	}()
	return fp
}

func (fp *fillPoller) stop() *Fill {
	fp.cancel()
	<-fp.done
	fp.mu.Lock()
	defer fp.mu.Unlock()
	f := fp.f
	return &f
}

// hostOnlyLoss reports loss series that the benchmark's own traffic cannot
// cause or suffer (see Pass.LostWorkload).
func hostOnlyLoss(series string) bool {
	return strings.Contains(series, `reason="udp_unparsed"`)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
