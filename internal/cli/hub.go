package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	flag "github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/flowlens/flowlens/internal/history"
	"github.com/flowlens/flowlens/internal/hub"
	"github.com/flowlens/flowlens/internal/ingest"
	"github.com/flowlens/flowlens/internal/metrics"
	"github.com/flowlens/flowlens/internal/server"
	"github.com/flowlens/flowlens/internal/ui"
)

// hubConfig is the hub side that `hub` and `up` share: the pipeline over
// the agents' records, its history, and the per-edge metrics.
type hubConfig struct {
	Hub      hub.Config
	History  history.Config // no Dir: memory only
	RingSize int
	// MaxEdgeSeries is the per-edge metrics' series budget.
	MaxEdgeSeries int
}

func defaultHubConfig() hubConfig {
	return hubConfig{RingSize: 1 << 16, MaxEdgeSeries: metrics.DefaultMaxEdgeSeries, Hub: hub.Config{Checkpoint: 5 * time.Second}}
}

func (c *hubConfig) flags(fs *flag.FlagSet) {
	c.History.Flags(fs)
	fs.DurationVar(&c.Hub.Checkpoint, "checkpoint-interval", c.Hub.Checkpoint,
		"how often the topology and the flows published since are saved to --data-dir: a restart replays the ingest log since")
	fs.IntVar(&c.RingSize, "flow-buffer", c.RingSize, "flow records kept in memory for the API")
	fs.IntVar(&c.Hub.MaxPerSource, "max-records-per-source", c.Hub.MaxPerSource,
		"records one cgroup (or network namespace) may put in the flow buffer per interval; the excess is counted (0: half the buffer, -1: no cap); the topology, metrics and history take them all")
	fs.IntVar(&c.Hub.Topology.MaxEdgesPerBucket, "max-edges-per-bucket", c.Hub.Topology.MaxEdgesPerBucket,
		"distinct edges (at the finest naming) one 10 s bucket of the topology holds; records of further edges are counted and dropped (0: 10,000)")
	fs.IntVar(&c.MaxEdgeSeries, "max-edge-series", c.MaxEdgeSeries,
		"edge label sets (workload and namespace each end, port, protocol) with Prometheus series of their own; "+
			"further edges share one series labelled \"other\" and are counted in flowlens_edge_series_folded_total")
}

// hubSide is a running hub side.
type hubSide struct {
	core      *hub.Hub
	hist      *history.DB // nil without --data-dir
	collector metrics.HubCollector
}

// startHub opens the history (with --data-dir), restores the hub from it
// and registers the hub's metrics on reg.
func startHub(ctx context.Context, log *slog.Logger, cfg hubConfig, reg *prometheus.Registry) (*hubSide, error) {
	edges := metrics.NewEdgeMetrics(cfg.MaxEdgeSeries)
	cfg.Hub.Topology.Observe = edges.Observe
	cfg.Hub.RingSize = cfg.RingSize
	h := &hubSide{}
	collector := metrics.HubCollector{}
	if cfg.History.Dir != "" {
		// The history's buckets are the store's.
		top := cfg.Hub.Topology
		if top.Resolution > 0 {
			cfg.History.Resolution = top.Resolution
		}
		var err error
		if h.hist, err = history.Open(ctx, cfg.History, log); err != nil {
			return nil, err
		}
		collector.History = h.hist.Stats
	}
	var err error
	if h.core, err = hub.New(ctx, cfg.Hub, h.hist, log); err != nil {
		h.close()
		return nil, err
	}
	collector.Hub, collector.Topology = h.core.Stats, h.core.Topology
	if cfg.Hub.Publish.Join {
		collector.Publish = h.core.Publish // up joins in its node's publisher, which reports it
	}
	h.collector = collector
	reg.MustRegister(edges, metrics.RingCollector{Ring: h.core.Ring()})
	return h, nil
}

// serve has srv answer from the hub: topology, agents, and flows in time
// from its history.
func (h *hubSide) serve(srv *server.Server) {
	srv.SetTopology(h.core)
	srv.SetAgents(func() any { return h.core.Agents() })
	srv.SetUI(ui.Handler(ui.Dist()))
	if h.hist != nil {
		srv.SetHistory(h.core)
	}
}

func (h *hubSide) close() {
	if h.hist != nil {
		if err := h.hist.Close(); err != nil {
			slog.Warn("close the history", "err", err)
		}
	}
}

func newHubCmd(logger func() *slog.Logger) *cobra.Command {
	cfg := defaultHubConfig()
	// A client record to a Service waits longer for its server side than
	// in up: the sides come from two agents, out of step after an outage.
	cfg.Hub.Interval, cfg.Hub.Publish.Hold = time.Second, 10
	api := server.DefaultConfig()
	api.Listen = []string{":4245"}
	ing := ingest.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Receive every agent's flows: one live topology of the cluster, its history, and its metrics",
		Long: `hub receives the flow records of any number of agents (flowlens agent --hub
<address>) over gRPC, joins the two sides of connections across nodes, and
serves the cluster's topology, flows and agents as JSON, and Prometheus
metrics, on the same port. With --data-dir it keeps its history on disk and
survives a restart: nothing an agent was told was received is lost or
counted twice.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if err := ing.Validate(); err != nil {
				return err
			}
			return runHub(ctx, logger(), cfg, api, ing)
		},
	}
	fs := cmd.Flags()
	cfg.flags(fs)
	api.Flags(fs)
	ing.Flags(fs)
	fs.DurationVar(&cfg.Hub.Interval, "interval", cfg.Hub.Interval, "how often received records go through the join into the topology")
	fs.IntVar(&cfg.Hub.Publish.Hold, "hold", cfg.Hub.Publish.Hold, "intervals a client record to a Service or node address waits for its server side")
	return cmd
}

func runHub(ctx context.Context, log *slog.Logger, cfg hubConfig, api server.Config, ing ingest.Config) error {
	cfg.Hub.Publish.Join = true
	lns, err := api.Open(log)
	if err != nil {
		return fmt.Errorf("open the hub's listeners: %w", err)
	}
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	reg := prometheus.NewRegistry()
	h, err := startHub(ctx, log, cfg, reg)
	if err != nil {
		return err
	}
	defer h.close()
	svc := ingest.New(ing, h.core, log)
	g := grpc.NewServer(ing.ServerOptions()...)
	svc.Register(g)
	h.collector.Ingest = svc.Stats
	reg.MustRegister(h.collector, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "flowlens"}))
	srv := server.New(h.core.Ring(), reg, func() error { return nil }, log, api.Limits)
	srv.SetGRPC(g)
	h.serve(srv)
	reg.MustRegister(metrics.APICollector{API: srv})
	log.Info("flowlens hub", "listen", api.Listen, "data_dir", cfg.History.Dir, "interval", cfg.Hub.Interval)
	releaseStartPages(log)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, lns...) }()
	runErr := h.core.Run(ctx)
	g.Stop()
	return errors.Join(runErr, <-errc)
}
