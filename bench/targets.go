package main

import (
	"fmt"
	"strings"

	"github.com/flowlens/flowlens/bench/internal/report"
)

// targets evaluates issue 17's goals against what was measured: the
// table the issue asks to fill from the committed results.
func targets(r *Results) []Target {
	out := []Target{
		perUnitTarget(r, "tcp-5k", "agent + eBPF CPU per short connection (tcp-5k)", "≤ 5 µs", 5),
		shareTarget(r, "tcp-5k", "share of the workload's CPU at 5k connections/s", "≤ 1.5% (agent + eBPF)", 0.015,
			func(c *Cost) float64 { return c.TotalShare }),
		shareTarget(r, "stream", "eBPF share on a bulk stream", "≤ 0.5%", 0.005,
			func(c *Cost) float64 { return c.BPFShare }),
		throughputTarget(r),
		perUnitTarget(r, "dns", "CPU per DNS query (agent + eBPF)", "≤ 5 µs", 5),
		latencyTarget(r),
		hotPathTarget(r),
		rssTarget(r),
	}
	out = append(out, holdTargets(r)...)
	return append(out, completenessTarget(r))
}

// agentCost is a scenario's agent pass's cost, if it ran.
func agentCost(r *Results, scenario string) (*Pass, *Cost) {
	if s := r.scenario(scenario); s != nil {
		if p := s.pass("agent"); p != nil && p.Cost != nil {
			return p, p.Cost
		}
	}
	return nil, nil
}

func perUnitTarget(r *Results, scenario, name, goal string, maxUS float64) Target {
	t := Target{Name: name, Goal: goal}
	if _, c := agentCost(r, scenario); c != nil && c.TotalUSPerUnit > 0 {
		t.Value = fmt.Sprintf("%s µs (agent %s + eBPF %s), net of background", report.Num(c.TotalUSPerUnit),
			report.Num(c.AgentUSPerUnit), report.Num(c.TotalUSPerUnit-c.AgentUSPerUnit))
		t.Met = boolp(c.TotalUSPerUnit <= maxUS)
	}
	return t
}

func shareTarget(r *Results, scenario, name, goal string, limit float64, share func(*Cost) float64) Target {
	t := Target{Name: name, Goal: goal}
	if _, c := agentCost(r, scenario); c != nil {
		t.Value = fmt.Sprintf("%s net of background (agent %s, eBPF %s; total raw %s)", report.Pct(share(c)),
			report.Pct(c.AgentShare), report.Pct(c.BPFShare), report.Pct(c.TotalShareRaw))
		t.Met = boolp(share(c) <= limit)
	}
	return t
}

// throughputTarget compares each scenario's agent pass with its baseline.
func throughputTarget(r *Results) Target {
	t := Target{Name: "throughput change with the agent: http-keepalive / stream / burst-100k", Goal: "each within −2%"}
	var parts []string
	met := true
	for _, name := range []string{"http-keepalive", "stream", "burst-100k"} {
		s := r.scenario(name)
		if s == nil {
			continue
		}
		base, ag := s.pass("baseline"), s.pass("agent")
		if base == nil || ag == nil {
			continue
		}
		rate := func(p *Pass) float64 {
			switch s.Kind {
			case "stream":
				return p.Throughput.Gbps
			case "http":
				return p.Throughput.ReqPerSec
			}
			return p.Throughput.ConnPerSec
		}
		if rate(base) <= 0 {
			continue
		}
		change := rate(ag)/rate(base) - 1
		parts = append(parts, name+" "+report.Pct(change))
		met = met && change >= -0.02
	}
	if len(parts) > 0 {
		t.Value = strings.Join(parts, ", ")
		t.Met = boolp(met && len(parts) == 3)
	}
	return t
}

func latencyTarget(r *Results) Target {
	t := Target{Name: "connect → visible in the API, p99", Goal: "≤ 300 ms"}
	for _, name := range []string{"tcp-5k", "tcp-1k", "tcp-20k-fast"} {
		if s := r.scenario(name); s != nil {
			if p := s.pass("observe"); p != nil && p.Latency != nil && p.Latency.N > 0 {
				l := p.Latency
				t.Value = fmt.Sprintf("p50 %s, p99 %s, max %s (%s)", ms(l.P50), ms(l.P99), ms(l.Max), name)
				t.Met = boolp(l.P99 <= 300)
				break
			}
		}
	}
	return t
}

func hotPathTarget(r *Results) Target {
	t := Target{Name: "user-space hot path", Goal: "≥ 2M events/s per core"}
	if g := r.GoBench; g != nil && g.HotPathEventsPerSec > 0 {
		t.Value = report.Num(g.HotPathEventsPerSec) + " events/s (decode + EndTCP + Flush, 10k per interval)"
		t.Met = boolp(g.HotPathEventsPerSec >= 2e6)
	}
	return t
}

func rssTarget(r *Results) Target {
	t := Target{Name: "peak RSS in the 100k burst", Goal: "≤ 96 MiB"}
	if b := r.scenario("burst-100k"); b != nil && b.Memory != nil && b.Memory.PeakRSSAgent > 0 {
		m := b.Memory
		t.Value = fmt.Sprintf("%s (idle %s; kernel maps %s besides)", report.Bytes(float64(m.PeakRSSAgent)),
			report.Bytes(float64(m.IdleRSS)), report.Bytes(float64(m.MapMemlock)))
		t.Met = boolp(m.PeakRSSAgent <= 96<<20)
	}
	return t
}

// completenessTarget: every pass whose records were compared is exact with
// nothing of the load lost; passes whose records outgrew the API ring are
// compared by their follow pass instead.
func completenessTarget(r *Results) Target {
	t := Target{Name: "completeness", Goal: "exact, 0 lost, in every scenario"}
	compared, short := 0, []string{}
	for _, s := range r.Scenarios {
		for _, p := range s.Passes {
			c := p.Completeness
			if c == nil || c.Client == nil {
				continue
			}
			compared++
			if !c.Exact || p.LostWorkload != 0 {
				short = append(short, fmt.Sprintf("%s/%s (lost %s)", s.Name, p.Name, report.Num(p.LostWorkload)))
			}
		}
	}
	if compared > 0 {
		t.Value = fmt.Sprintf("%d of %d compared passes exact with 0 lost", compared-len(short), compared)
		if len(short) > 0 {
			t.Value += "; not: " + strings.Join(short, ", ")
		}
		t.Met = boolp(len(short) == 0)
	}
	return t
}
