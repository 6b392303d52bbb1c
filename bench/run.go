package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/flowlens/flowlens/bench/internal/gobench"
	"github.com/flowlens/flowlens/bench/internal/host"
)

// Meta says where and how the numbers were taken.
type Meta struct {
	Command string `json:"command"`
	host.Facts
	Short          bool     `json:"short"`
	Agent          string   `json:"agent"`
	AgentIsAPI     bool     `json:"agent_serves_flowlens_api"`
	Hub            string   `json:"hub,omitempty"` // -hub: where the agent's records went, not measured
	BPFStats       string   `json:"bpf_stats"`
	OtherBPFProgs  []string `json:"other_bpf_programs_at_start,omitempty"`
	DurationSecond float64  `json:"duration_seconds"`
}

// GoBench is the user-space hot path, measured by Go benchmarks on one core.
type GoBench struct {
	Command string           `json:"command"`
	Results []gobench.Result `json:"results"`
	// HotPath is decode + EndTCP (+ its share of Flush) per short
	// connection end event, on one core.
	HotPathEventsPerSec float64 `json:"hot_path_events_per_second_per_core"`
	Error               string  `json:"error,omitempty"`
}

// Target is one goal of the issue, met or not (never asserted).
type Target struct {
	Name  string `json:"name"`
	Goal  string `json:"goal"`
	Value string `json:"measured"`
	Met   *bool  `json:"met"` // nil: not measured in this run
	Note  string `json:"note,omitempty"`
}

// Results of a run.
type Results struct {
	Meta      Meta              `json:"meta"`
	Scenarios []*ScenarioResult `json:"scenarios"`
	GoBench   *GoBench          `json:"go_benchmarks,omitempty"`
	Targets   []Target          `json:"targets"`
	Errors    []string          `json:"errors,omitempty"`
	OutDir    string            `json:"-"`
}

// passNames are the passes a scenario can run, in their order.
var passNames = []string{"baseline", "agent", "observe", "hooks", "tools"}

// run sets up, runs every selected scenario and writes the results. The
// returned Results is non-nil once anything was measured, also with an error.
func run(ctx context.Context, o options) (*Results, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root: loads eBPF programs, creates network namespaces and cgroups")
	}
	selected := defaultScenarios(o.Short)
	if len(o.Scenarios) > 0 {
		all := scenarios(o.Short)
		var keep []scenario
		for _, name := range o.Scenarios {
			i := slices.IndexFunc(all, func(s scenario) bool { return s.Name == strings.TrimSpace(name) })
			if i < 0 {
				return nil, fmt.Errorf("unknown scenario %q (have %s)", name, strings.Join(scenarioNames(), ", "))
			}
			keep = append(keep, all[i])
		}
		selected = keep
	}

	for _, p := range o.Passes {
		if !slices.Contains(passNames, p) {
			return nil, fmt.Errorf("unknown pass %q (have %s)", p, strings.Join(passNames, ", "))
		}
	}

	e := &env{opts: o}
	defer e.close()
	began := time.Now()
	if err := e.setup(ctx); err != nil {
		return nil, err
	}
	if o.Out == "" {
		o.Out = filepath.Join(e.root, "bench", "results")
	}
	res := &Results{OutDir: o.Out, Meta: e.meta(ctx)}
	listen, _ := host.FreeAddr()
	res.Meta.Agent, res.Meta.AgentIsAPI = e.agentCommand(listen)
	res.Meta.Hub = strings.ReplaceAll(o.Hub, "{flowlens}", e.flowlens)
	var err error
	if o.NoBPFStats {
		res.Meta.BPFStats = "off (-no-bpf-stats): no eBPF run times, and no clock reads around each program run"
	} else if res.Meta.BPFStats, err = e.enableBPFStats(); err != nil {
		res.Errors = append(res.Errors, err.Error())
		e.logf("%v: eBPF run times will be missing", err)
	}
	for _, s := range selected {
		if s.Tools {
			e.conntrack = e.ensureConntrack(ctx)
		}
	}

	if !o.NoGoBench {
		res.GoBench = e.goBench(ctx)
	}
	for _, s := range selected {
		if ctx.Err() != nil {
			break
		}
		res.Scenarios = append(res.Scenarios, e.runScenario(ctx, s))
	}
	res.Meta.DurationSecond = time.Since(began).Seconds()
	res.Targets = targets(res)
	for _, s := range res.Scenarios {
		for _, m := range s.Errors {
			res.Errors = append(res.Errors, s.Name+": "+m)
		}
	}
	if ctx.Err() != nil {
		res.Errors = append(res.Errors, "interrupted: "+ctx.Err().Error())
	}
	if err := res.write(); err != nil {
		return res, err
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, nil
}

func (e *env) meta(ctx context.Context) Meta {
	m := Meta{Command: e.opts.Command, Facts: host.ReadFacts(ctx, e.root), Short: e.opts.Short}
	if b, err := exec.CommandContext(ctx, "bpftool", "prog", "show", "-j").Output(); err == nil {
		var ps []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		}
		if json.Unmarshal(b, &ps) == nil {
			for _, p := range ps {
				m.OtherBPFProgs = append(m.OtherBPFProgs, p.Type+"/"+p.Name)
			}
		}
	}
	return m
}

// goBench runs the user-space hot path benchmarks on one core.
func (e *env) goBench(ctx context.Context) *GoBench {
	benchtime := "1s"
	if e.opts.Short {
		benchtime = "200ms"
	}
	args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-cpu", "1", "-benchtime", benchtime,
		"./internal/datapath", "./internal/conntable"}
	g := &GoBench{Command: "go " + strings.Join(args, " ")}
	e.logf("user-space hot path: %s", g.Command)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = e.root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		g.Error = fmt.Sprintf("%v: %s%s", err, lastLine(out), lastLine(stderr.Bytes()))
		e.logf("go benchmarks: %s", g.Error)
	}
	g.Results, _ = gobench.Parse(bytes.NewReader(out))
	decode := findBench(g.Results, "BenchmarkDecode/ipv4", "ns/op")
	end := findBench(g.Results, "BenchmarkConntableEndFlush/per-interval=10000", "ns/op")
	if decode > 0 && end > 0 {
		g.HotPathEventsPerSec = 1e9 / (decode + end)
	}
	return g
}

func findBench(rs []gobench.Result, name, unit string) float64 {
	for _, r := range rs {
		if r.Name == name {
			return r.Metrics[unit]
		}
	}
	return 0
}

// rerender writes dir's results.md again from its results.json.
func rerender(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return err
	}
	r := &Results{OutDir: dir}
	if err := json.Unmarshal(b, r); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return r.write()
}

// write puts results.json and results.md in the output directory.
func (r *Results) write() error {
	if err := os.MkdirAll(r.OutDir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"results.json": append(js, '\n'), "results.md": []byte(r.Markdown())} {
		path := filepath.Join(r.OutDir, name)
		if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
			return err
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return err
		}
	}
	return nil
}
