package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/flowlens/flowlens/bench/internal/report"
)

func (r *Results) scenario(name string) *ScenarioResult {
	for _, s := range r.Scenarios {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func boolp(b bool) *bool { return &b }

func hubCell(m Meta) string {
	switch {
	case m.Hub != "":
		return "`" + m.Hub + "`: a fresh one per pass, in a cgroup of its own, not measured"
	case m.AgentIsAPI:
		return "embedded in the agent (`up`), measured with it"
	}
	return report.NA
}

func ms(v float64) string {
	if v >= 1000 {
		return report.Num(v/1000) + " s"
	}
	return report.Num(v) + " ms"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func frac(got, want int64) string {
	s := report.Int(got) + "/" + report.Int(want)
	if got == want {
		return s
	}
	return s + " ✗"
}

// tables renders the results.
func (r *Results) tables() []report.Table {
	var ts []report.Table

	over := report.Table{Title: "Overhead with the agent: CPU over the same window, net of the host's background (raw in parentheses); shares of the workload's CPU",
		Header: []string{"scenario", "workload CPU", "agent CPU", "eBPF CPU", "agent", "eBPF", "total", "total raw", "agent µs/unit", "total µs/unit", "background agent + eBPF"}}
	thr := report.Table{Title: "Throughput without → with the agent",
		Header: []string{"scenario", "metric", "without", "with", "change", "workload CPU without → with"}}
	floor := report.Table{Title: "Floor: programs that return at once, on every hook the agent's programs run from, no agent (hooks pass)",
		Header: []string{"scenario", "metric", "without", "with empty hooks", "change", "with the agent", "workload CPU without → empty hooks", "runs/unit", "ns/run", "eBPF/unit", "eBPF share"}}
	perfT := report.Table{Title: "The workload's CPU in eBPF programs and the kernel's dispatch around them, sampled by perf (-perf)",
		Header: []string{"scenario", "empty hooks", "per unit", "agent", "per unit", "of which BPF stats' clock reads (hooks / agent)", "workload samples (hooks / agent)"}}
	comp := report.Table{Title: "Completeness (flowlens' records vs what the generator and server counted)",
		Header: []string{"scenario", "pass", "client opened", "server opened", "client bytes →/←", "server bytes →/←", "lost", "exact", "unattributed records"}}
	lat := report.Table{Title: "Latency: connect() → record readable from /api/v1/flows?follow=1",
		Header: []string{"scenario", "connections", "p50", "p90", "p99", "max", "unmatched"}}
	bpfT := report.Table{Title: "Kernel side: the agent's eBPF programs (BPF stats, agent pass)",
		Header: []string{"scenario", "runs (net)", "ns/run", "eBPF CPU (net)", "runs/unit", "costliest programs (ns/run × runs, all runs)"}}
	mem := report.Table{Title: "Memory",
		Header: []string{"scenario", "connections", "idle RSS", "peak RSS", "peak RSS + followers", "RSS growth / 10k conns", "kernel maps", "peak tcp_socks", "peak API ring"}}
	tools := report.Table{Title: "Without eBPF: ss -tin and conntrack -L polled every 1 s (tcp-5k load)",
		Header: []string{"tool", "connections seen", "of", "CPU", "workload conn/s", "workload CPU"}}

	for _, s := range r.Scenarios {
		base, ag := s.pass("baseline"), s.pass("agent")
		if ag != nil && ag.Cost != nil {
			c := ag.Cost
			per := func(v float64) string {
				if v == 0 {
					return report.NA
				}
				return nonNeg(v, func(v float64) string { return report.Num(v) + " µs/" + s.unit() })
			}
			over.Add(s.Name, report.Seconds(ag.WorkloadCPU),
				nonNeg(c.AgentCPUNet, report.Seconds)+" ("+report.Seconds(c.AgentCPU)+")",
				nonNeg(c.BPFCPUNet, report.Seconds)+" ("+report.Seconds(c.BPFCPU)+")",
				nonNeg(c.AgentShare, report.Pct), nonNeg(c.BPFShare, report.Pct), nonNeg(c.TotalShare, report.Pct), report.Pct(c.TotalShareRaw),
				per(c.AgentUSPerUnit), per(c.TotalUSPerUnit),
				report.Num(c.BackgroundAgentPerSec*1e3)+" + "+report.Num(c.BackgroundBPFPerSec*1e3)+" ms/s")
		}
		metric, f := s.rate()
		if base != nil && ag != nil {
			thr.Add(s.Name, metric, report.Num(f(base)), report.Num(f(ag)), report.Pct(f(ag)/f(base)-1),
				report.Seconds(base.WorkloadCPU)+" → "+report.Seconds(ag.WorkloadCPU))
			if s.Kind == "stream" || s.Kind == "http" {
				if s.Kind == "http" {
					thr.Add(s.Name, "Gb/s", report.Num(base.Throughput.Gbps), report.Num(ag.Throughput.Gbps), report.Pct(ag.Throughput.Gbps/base.Throughput.Gbps-1), "")
				}
			}
		}
		if hk := s.pass("hooks"); base != nil && hk != nil && hk.EmptyHooks != nil {
			withAgent := report.NA
			if ag != nil {
				withAgent = report.Pct(f(ag)/f(base) - 1)
			}
			// No runs: BPF stats were off (-no-bpf-stats).
			runs, perRun, perUnit, share := report.NA, report.NA, report.NA, report.NA
			if b := hk.EmptyHooks; b.Runs > 0 {
				perRun = report.Num(b.NSPerRun)
				share = report.Pct(safeRatio(float64(b.TimeNS)/1e9, hk.WorkloadCPU))
				if units := s.units(hk.Traffic); units > 0 {
					runs = report.Num(float64(b.Runs) / float64(units))
					perUnit = report.Num(float64(b.TimeNS)/float64(units)/1e3) + " µs"
				}
			}
			floor.Add(s.Name, metric, report.Num(f(base)), report.Num(f(hk)), report.Pct(f(hk)/f(base)-1), withAgent,
				report.Seconds(base.WorkloadCPU)+" → "+report.Seconds(hk.WorkloadCPU), runs, perRun, perUnit, share)
		}
		if hk, ag := s.pass("hooks"), s.pass("agent"); (hk != nil && hk.Perf != nil) || (ag != nil && ag.Perf != nil) {
			cell := func(p *Pass) (share, perUnit, clock, samples string) {
				if p == nil || p.Perf == nil {
					return report.NA, report.NA, report.NA, report.NA
				}
				perUnit = report.NA
				if units := s.units(p.Traffic); units > 0 {
					perUnit = report.Num(p.Perf.Pct()/100*p.WorkloadCPU/float64(units)*1e6) + " µs/" + s.unit()
				}
				return report.Pct(p.Perf.Pct() / 100), perUnit, report.Pct(p.Perf.StatsClockPct() / 100), report.Int(int64(p.Perf.Samples))
			}
			hs, hu, hc, hn := cell(hk)
			as, au, ac, an := cell(ag)
			perfT.Add(s.Name, hs, hu, as, au, hc+" / "+ac, hn+" / "+an)
		}
		for _, p := range s.Passes {
			if c := p.Completeness; c != nil {
				if c.Client == nil {
					comp.Add(s.Name, p.Name+" ("+c.Source+")", report.NA, report.NA, report.NA, report.NA, lostCell(p), c.Note)
					continue
				}
				cl, sv := c.Client, c.Server
				opened := func(sd *Side) string {
					if s.Kind == "dns" {
						return frac(sd.Got.DgramsToDst, sd.Expected.DgramsToDst) + " dgrams"
					}
					return frac(sd.Got.Opened, sd.Expected.Opened)
				}
				bytesCell := func(sd *Side) string {
					ok := sd.Got.BytesToDst == sd.Expected.BytesToDst && sd.Got.BytesToSrc == sd.Expected.BytesToSrc
					cell := report.Bytes(float64(sd.Got.BytesToDst)) + " / " + report.Bytes(float64(sd.Got.BytesToSrc))
					if ok {
						return cell + " (=)"
					}
					return fmt.Sprintf("%d/%d of %d/%d ✗", sd.Got.BytesToDst, sd.Got.BytesToSrc, sd.Expected.BytesToDst, sd.Expected.BytesToSrc)
				}
				unattr := "0"
				if n := cl.Got.Unattributed + sv.Got.Unattributed; n > 0 {
					unattr = fmt.Sprintf("%s of %s (client %d, server %d)", report.Int(n), report.Int(cl.Got.Records+sv.Got.Records),
						cl.Got.Unattributed, sv.Got.Unattributed)
				}
				comp.Add(s.Name, p.Name+" ("+c.Source+")", opened(cl), opened(sv), bytesCell(cl), bytesCell(sv), lostCell(p),
					yesNo(c.Exact && p.LostWorkload == 0), unattr)
			}
			if l := p.Latency; l != nil {
				lat.Add(s.Name, report.Int(int64(l.N)), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), report.Int(int64(l.Unmatched)))
			}
			if t := p.Tools; t != nil {
				of := report.Int(p.Traffic.Connections)
				if t.DistinctPorts > 0 && int64(t.DistinctPorts) != p.Traffic.Connections {
					of += " (" + report.Int(int64(t.DistinctPorts)) + " source ports)"
				}
				tools.Add("ss -tin (both namespaces)", report.Int(int64(t.SSSeen)), of, report.Seconds(t.SSCPU)+fmt.Sprintf(" (%d polls)", t.Polls),
					report.Num(p.Throughput.ConnPerSec), report.Seconds(p.WorkloadCPU))
				if t.Conntrack {
					tools.Add("conntrack -L (client namespace)", report.Int(int64(t.ConntrackSeen)), of, report.Seconds(t.ConntrackCPU),
						"", "")
				} else {
					tools.Add("conntrack -L", report.NA, of, report.NA, "", "")
				}
				tools.Notes = append(tools.Notes, "seen: distinct client source ports observed over all polls; a port reused after TIME_WAIT (1 s, tcp_tw_reuse) counts once, so at most the number of source ports can be seen.")
				if t.ConntrackReason != "" {
					tools.Notes = append(tools.Notes, t.ConntrackReason+".")
				}
				if base != nil {
					tools.Notes = append(tools.Notes, fmt.Sprintf("Same load without any observer: %s conn/s, workload CPU %s.",
						report.Num(base.Throughput.ConnPerSec), report.Seconds(base.WorkloadCPU)))
				}
			}
		}
		if ag != nil && ag.Cost != nil && ag.Cost.BPF != nil {
			b := ag.Cost.BPF
			var top []string
			for i, pc := range b.Progs {
				if i == 4 || pc.Runs == 0 {
					break
				}
				top = append(top, fmt.Sprintf("%s %s×%s", pc.Name, report.Num(pc.NSPerRun), report.Num(float64(pc.Runs))))
			}
			perUnit := report.NA
			if units := s.units(ag.Traffic); units > 0 {
				perUnit = nonNeg(ag.Cost.BPFRunsNet/float64(units), report.Num)
			}
			bpfT.Add(s.Name, report.Num(float64(b.Runs))+" ("+nonNeg(ag.Cost.BPFRunsNet, report.Num)+")", report.Num(b.NSPerRun),
				report.Seconds(ag.Cost.BPFCPU)+" ("+nonNeg(ag.Cost.BPFCPUNet, report.Seconds)+")", perUnit, strings.Join(top, ", "))
		}
		if m := s.Memory; m != nil {
			conns := report.NA
			if ag != nil && s.Kind != "dns" {
				conns = report.Int(ag.Traffic.Connections)
			}
			growth := report.NA
			if m.RSSPer10kConns > 0 {
				growth = report.Bytes(m.RSSPer10kConns)
			}
			fillS, ringS := report.NA, report.NA
			if ob := s.pass("observe"); ob != nil && ob.Fill != nil {
				fillS = report.Num(ob.Fill.TCPSocks) + " / " + report.Num(ob.Fill.TCPCap)
				ringS = report.Num(ob.Fill.RingRecords) + " / " + report.Num(ob.Fill.RingCap)
			}
			peakObs := report.NA
			if s.pass("observe") != nil {
				peakObs = report.Bytes(float64(m.PeakRSS))
			}
			mem.Add(s.Name, conns, report.Bytes(float64(m.IdleRSS)), report.Bytes(float64(m.PeakRSSAgent)), peakObs, growth,
				report.Bytes(float64(m.MapMemlock)), fillS, ringS)
		}
	}
	over.Notes = []string{
		"agent CPU: the agent's own cgroup (cpu.stat usage_usec, children included) from the workload's start until " + drain.String() + " after its end (its last interval); /proc/<pid>/stat utime+stime is in results.json.",
		"eBPF CPU: run_time_ns of the agent's programs (BPF stats); it runs in the workload's context, so it is also inside workload CPU. The agent's iterators run inside its own reads: their time is in agent CPU and left out here. BPF stats time the programs only, not the kernel's dispatch around them (see the hooks pass and --perf).",
		"background: the agent sees every socket on the host; its CPU and its programs' run time per second in quiet windows just before and after the pass are subtracted (net). On a busy shared host the net values are noisy.",
		"shares divide by the workload's CPU in the same run (its cgroup's usage_usec: load generator and servers, eBPF included); total = agent + eBPF.",
	}
	comp.Notes = []string{
		"query: summed from /api/v1/flows after the run (when the API ring still holds every record); follow: streamed with ?follow=1 during the run.",
		"records are selected by the pass's addresses and port; unattributed: records that do not name the observing side's network namespace (nor its process).",
		"lost: increase of flowlens_agent_lost_total (all stages and reasons) over the pass; \"host\" marks udp_unparsed (IPv6 extension-header packets elsewhere on the host), which this IPv4-only load cannot cause. exact: every compared count equal and nothing else lost.",
	}
	lat.Notes = []string{
		"A connection that ended is emitted at the agent's next early flush (--ended-flush, 100 ms), an open one at the end of its interval (1 s): expect 0–100 ms plus processing for these short connections.",
		"Matched by source port (and connection start) between the generator's per-connection trace and the streamed client-side records.",
	}
	floor.Notes = []string{
		"What the hooks cost before any work: the same programs' hooks (tracepoints, cgroup_skb, cgroup sock and sock_addr; not the iterators, run once an interval, nor the TLS uprobes), each program returning at once. BPF stats count the program runs only; the kernel's dispatch around them shows in the workload's CPU and throughput.",
		"The same load and machine as the other passes, run after them: throughput moves by several points between runs of one build here, so read a difference against that noise.",
	}
	perfT.Notes = []string{
		"perf record -a -g during the load; a workload sample (the peer binary: load generator and servers) counts when any frame is an eBPF program, a raw tracepoint's or cgroup hook's run of one (bpf_trace_run*, __cgroup_bpf_run_filter_*), or a run helper. Per unit: that share of the pass's workload CPU, divided by its connections, requests or queries. BPF stats (on unless -no-bpf-stats) read the clock twice around each run; production does not.",
	}
	mem.Notes = []string{
		"peak RSS: VmHWM after the agent pass; + followers: after the pass with API followers. Kernel maps: locked memory of the agent's maps (preallocated, fixed).",
	}
	for _, t := range []report.Table{over, thr, floor, perfT, comp, lat, bpfT, mem, holdTable(r), tools} {
		if len(t.Rows) > 0 {
			ts = append(ts, t)
		}
	}
	if g := r.GoBench; g != nil {
		gb := report.Table{Title: "User-space hot path (Go benchmarks, one core): " + g.Command,
			Header: []string{"benchmark", "ns/op", "events/s per core", "B/op", "allocs/op"}}
		for _, b := range g.Results {
			ev := b.Metrics["events/s"]
			gb.Add(strings.TrimPrefix(b.Name, "Benchmark"), report.Num(b.Metrics["ns/op"]), report.Num(ev),
				report.Num(b.Metrics["B/op"]), report.Num(b.Metrics["allocs/op"]))
		}
		if g.HotPathEventsPerSec > 0 {
			gb.Notes = append(gb.Notes, "hot path per short connection (decode + EndTCP + Flush at 10k per interval): "+report.Num(g.HotPathEventsPerSec)+" events/s per core.")
		}
		if g.Error != "" {
			gb.Notes = append(gb.Notes, "error: "+g.Error)
		}
		ts = append(ts, gb)
	}
	tg := report.Table{Title: "Targets (reported, never asserted)", Header: []string{"target", "goal", "measured", "met"}}
	for _, t := range r.Targets {
		met := "not measured"
		if t.Met != nil {
			met = map[bool]string{true: "met", false: "NOT met"}[*t.Met]
		}
		v := t.Value
		if v == "" {
			v = report.NA
		}
		if t.Note != "" {
			v += " (" + t.Note + ")"
		}
		tg.Add(t.Name, t.Goal, v, met)
	}
	ts = append(ts, tg)
	return ts
}

// Text is the printed summary.
func (r *Results) Text() string {
	var b strings.Builder
	m := r.Meta
	fmt.Fprintf(&b, "\nflowlens benchmarks — %s, %s, %s (%d cores), %s\n", m.Date, m.Kernel, m.CPU, m.Cores, m.Uptime)
	fmt.Fprintf(&b, "agent: %s\n\n", m.Agent)
	for _, t := range r.tables() {
		b.WriteString(t.Text())
		b.WriteString("\n")
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	return b.String()
}

// Markdown is results.md.
func (r *Results) Markdown() string {
	var b strings.Builder
	m := r.Meta
	b.WriteString("# flowlens benchmarks\n\n")
	b.WriteString("Generated by `bench/` (do not edit by hand). What flowlens costs, how much it can take, how fast it shows.\n\n")
	b.WriteString("| | |\n|---|---|\n")
	dirty := ""
	if m.GitDirty {
		dirty = " (with uncommitted changes)"
	}
	for _, kv := range [][2]string{
		{"command", "`" + m.Command + "`"},
		{"date", m.Date},
		{"git commit", m.GitCommit + dirty},
		{"kernel", m.Kernel},
		{"CPU", fmt.Sprintf("%s, %d cores", m.CPU, m.Cores)},
		{"load (uptime)", m.Uptime},
		{"Go", m.GoVersion},
		{"agent", "`" + m.Agent + "`"},
		{"hub", hubCell(m)},
		{"eBPF stats", m.BPFStats},
		{"other eBPF programs at start", fmt.Sprintf("%d %s", len(m.OtherBPFProgs), strings.Join(m.OtherBPFProgs, " "))},
		{"mode", map[bool]string{true: "--short (small counts)", false: "full"}[m.Short]},
		{"run time", fmt.Sprintf("%.0f s", m.DurationSecond)},
	} {
		fmt.Fprintf(&b, "| %s | %s |\n", kv[0], strings.ReplaceAll(kv[1], "|", `\|`))
	}
	b.WriteString("\n## Scenarios\n\n")
	b.WriteString("Each runs between two network namespaces joined by a veth (no route out), load generator and servers in a cgroup v2 of their own: " +
		"first without an agent (baseline), then with a freshly started agent and no API client (agent: cost, completeness from the API afterwards), " +
		"then again with two API followers streaming the scenario's records (observe: latency, and completeness beyond what the API ring holds). " +
		"Then, with no agent, with a program that returns at once on each hook the agent's programs run from (hooks: the floor any agent on these hooks pays). " +
		"tcp-5k also runs with ss and conntrack polled instead of an agent (tools). Every pass gets fresh namespaces.\n\n")
	b.WriteString("| scenario | what | passes |\n|---|---|---|\n")
	for _, s := range r.Scenarios {
		var ps []string
		for _, p := range s.Passes {
			ps = append(ps, p.Name)
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", s.Name, s.Desc, strings.Join(ps, ", "))
	}
	b.WriteString("\n## Results\n\n")
	for _, t := range r.tables() {
		b.WriteString(t.Markdown())
		b.WriteString("\n")
	}
	if len(r.Errors) > 0 {
		b.WriteString("## Errors\n\n")
		for _, e := range r.Errors {
			b.WriteString("- " + e + "\n")
		}
	}
	return b.String()
}

// safeRatio is a/b, 0 when b is 0 (JSON has no NaN).
func safeRatio(a, b float64) float64 {
	if b == 0 || math.IsNaN(b) {
		return 0
	}
	return a / b
}

func lostCell(p *Pass) string {
	if !p.LostKnown {
		return report.NA
	}
	s := report.Num(p.LostWorkload)
	if host := p.LostTotal - p.LostWorkload; host > 0 {
		s += " (+" + report.Num(host) + " host)"
	}
	return s
}

// nonNeg formats a net value; below zero it is noise of the background
// estimate, shown as such.
func nonNeg(v float64, f func(float64) string) string {
	if v < 0 {
		return "≤0 (noise)"
	}
	return f(v)
}
