// Command bench measures what flowlens costs, how much it can take and how
// fast it shows: the same workloads run between two network namespaces
// without an agent and with one, and the run reports
//
//   - overhead: the agent's CPU time against the workload's (the workload
//     runs in a cgroup v2 of its own), per connection, plus the kernel-side
//     cost of its eBPF programs (BPF stats), and throughput without vs with;
//   - completeness: what the load generator knows it did against what
//     flowlens reported, connection by connection and byte by byte, and
//     every loss counter;
//   - latency: from a connection's connect() to its record in the API;
//   - memory: the agent's peak RSS and its kernel maps;
//   - the user-space hot path (Go benchmarks), and what `ss` and
//     `conntrack` polled at the same interval see of the same load.
//
// Usage (root; traffic stays inside namespaces the run creates):
//
//	go run ./bench [-o bench/results] [--short] [--agent 'CMD'] [--scenarios a,b]
//
// --agent runs another agent on the same load (through /bin/sh); `{listen}`
// in it is replaced by a free loopback address, and an agent started that
// way is taken to serve flowlens' API there; `{flowlens}` by the flowlens
// binary (e.g. --agent '{flowlens} up --listen {listen} --interval 500ms').
// Without `{listen}` only CPU, memory, eBPF cost and throughput are measured.
//
// The run is bounded (every load in count and time) and removes what it
// created — namespaces, cgroups, processes — also on SIGINT/SIGTERM. Results
// go to results.json and results.md; bench_test.go runs it in --short mode
// and asserts completeness exactly, never speed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	var o options
	var scen string
	flag.StringVar(&o.Out, "o", "", "directory for results.json and results.md (default <module>/bench/results)")
	flag.BoolVar(&o.Short, "short", false, "small counts and a few seconds per scenario")
	flag.StringVar(&o.Agent, "agent", "", "agent command line (default: <bin>/flowlens up --listen {listen})")
	flag.StringVar(&o.Hub, "hub", "", "hub command line, e.g. '{flowlens} hub --listen {hub}' with -agent '{flowlens} agent --hub {hub} --metrics-listen {listen}': a fresh hub per pass, in a cgroup of its own and not counted, so the agent's figures are a node agent's; records are read from the hub")
	flag.StringVar(&scen, "scenarios", "", "comma-separated scenarios to run (default all: "+strings.Join(scenarioNames(), ",")+")")
	var passes string
	flag.StringVar(&passes, "passes", "", "comma-separated passes to run (default all: "+strings.Join(passNames, ",")+"); with a scenario named several times in -scenarios, e.g. -passes baseline,hooks runs them interleaved")
	flag.StringVar(&o.Flowlens, "flowlens", "", "use this flowlens binary instead of building bin/flowlens")
	flag.StringVar(&o.Peer, "peer", "", "use this test/peer binary instead of building it")
	flag.BoolVar(&o.NoGoBench, "no-gobench", false, "skip the Go benchmarks of the user-space hot path")
	flag.BoolVar(&o.NoBPFStats, "no-bpf-stats", false, "leave BPF stats off: no eBPF run times, but no clock read around each program run either (what production pays; measure eBPF with perf)")
	flag.BoolVar(&o.Perf, "perf", false, "sample every CPU with perf during the agent and hooks passes: the workload's CPU in eBPF programs and the kernel's dispatch around them (perturbs the other figures a little)")
	flag.BoolVar(&o.NoInstall, "no-install", false, "do not apt-get install conntrack when it is missing")
	render := flag.String("render", "", "only write results.md again from the results.json in this directory (after a change to the report)")
	flag.Parse()
	if *render != "" {
		if err := rerender(*render); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if scen != "" {
		o.Scenarios = strings.Split(scen, ",")
	}
	if passes != "" {
		o.Passes = strings.Split(passes, ",")
	}
	o.Command = "go run ./bench " + shellJoin(os.Args[1:])
	o.Log = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	start := time.Now()
	res, err := run(ctx, o)
	if res != nil {
		fmt.Print(res.Text())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "bench: done in %s; results in %s\n", time.Since(start).Round(time.Second), res.OutDir)
}

// shellJoin quotes arguments that a shell would split.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;!#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
