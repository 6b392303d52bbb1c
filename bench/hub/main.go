// Command hub measures what a `flowlens hub` costs and how fast it shows:
// a real hub process (the binary built from this tree), on loopback, fed by
// synthetic agents in this process that ship over gRPC with internal/ship,
// each with its own agent id, once with its history (--data-dir) and once
// without. For each it reports
//
//   - memory per 10,000 distinct workload edges: the hub's RSS and Go heap
//     (go_memstats from its /metrics) before and after 10,000 edges are
//     pushed into each of six 10 s buckets;
//   - topology query time over a 24 h window at 10,000 edges: records of
//     the same edges with end times spread over the last 24 h fill the
//     store's every bucket, then GET /api/v1/topology?window=24h is timed;
//   - ingest: records per second per core of the hub's CPU (utime+stime
//     from /proc/<pid>/stat), from the first record sent until the
//     topology counted the last (and, with a history, checkpointed it);
//   - connect → visible (root; with the history only): a real `flowlens agent` ships to the hub,
//     real connections run between two network namespaces the run makes,
//     and the hub's topology is polled until each batch shows.
//
// Usage (root for the connect → visible part; -connect-batches 0 skips it):
//
//	go run ./bench/hub [-o bench/results] [-agents 4] [-records 500000] [-connect-batches 30]
//
// A separate program rather than a scenario of ./bench: those run one load
// without and with an agent and compare the workload's CPU, while this
// drives a hub alone with synthetic records and needs none of that.
// Results go to hub.json and hub.md in -o. Ratios of one run, no
// thresholds: the numbers are written down, not judged.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/flowlens/flowlens/bench/internal/host"
)

type options struct {
	out            string
	flowlens       string
	peer           string
	agents         int
	edges          int
	records        int
	buckets        int // 10 s buckets the memory phase spreads each edge over
	spread24h      int // buckets of the 24 h each edge is put in
	queries        int
	connectBatches int
	connectSize    int
}

func main() {
	var o options
	flag.StringVar(&o.out, "o", "", "directory for hub.json and hub.md (default <module>/bench/results)")
	flag.StringVar(&o.flowlens, "flowlens", "", "use this flowlens binary instead of building one")
	flag.StringVar(&o.peer, "peer", "", "use this test/peer binary instead of building one")
	flag.IntVar(&o.agents, "agents", 4, "synthetic agents pushing to the hub, each with its own agent id")
	flag.IntVar(&o.edges, "edges", 10_000, "distinct workload edges")
	flag.IntVar(&o.records, "records", 500_000, "records pushed for the ingest rate")
	flag.IntVar(&o.buckets, "buckets", 6, "10 s buckets each edge is put in for the memory figure")
	flag.IntVar(&o.spread24h, "spread", 24, "buckets across the last 24 h each edge is put in for the 24 h query")
	flag.IntVar(&o.queries, "queries", 30, "repeats of each topology query")
	flag.IntVar(&o.connectBatches, "connect-batches", 30, "batches of real connections for connect → visible (root; 0 skips)")
	flag.IntVar(&o.connectSize, "connect-size", 5, "connections in one batch")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench/hub: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	start := time.Now()
	res, err := run(ctx, o)
	if res != nil {
		fmt.Print(res.markdown())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench/hub: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "bench/hub: done in %s; results in %s\n", time.Since(start).Round(time.Second), o.out)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench/hub: "+format+"\n", args...)
}

// run measures a hub without and with its history, and writes the results
// (also what was measured before an error).
func run(ctx context.Context, o options) (*results, error) {
	root, err := host.ModuleRoot()
	if err != nil {
		return nil, err
	}
	if o.out == "" {
		o.out = filepath.Join(root, "bench", "results")
	}
	tmp, err := os.MkdirTemp("", "flowlens-hubbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if o.flowlens == "" {
		o.flowlens = filepath.Join(tmp, "flowlens")
		if err := goBuild(ctx, root, o.flowlens, "./cmd/flowlens"); err != nil {
			return nil, err
		}
	}
	res := newResults(ctx, root, o)
	defer func() { res.Meta.DurationSeconds = time.Since(res.began).Seconds() }()
	for _, history := range []bool{false, true} {
		m, err := measureHub(ctx, o, tmp, history)
		if m != nil {
			res.Hubs = append(res.Hubs, m)
		}
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
			logf("%v", err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err := res.write(o.out); err != nil {
		return res, err
	}
	return res, ctx.Err()
}
