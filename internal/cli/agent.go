package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/flowlens/flowlens/internal/metrics"
	"github.com/flowlens/flowlens/internal/ring"
	"github.com/flowlens/flowlens/internal/server"
	"github.com/flowlens/flowlens/internal/ship"
)

func newAgentCmd(logger func() *slog.Logger) *cobra.Command {
	cfg := defaultNodeConfig()
	hub := ship.DefaultConfig()
	api := server.Config{MetricsListen: ":9090"}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Watch this node's connections and stream their flows to a hub",
		Long: `agent runs on every node (a DaemonSet): the same data path and naming as up,
its records streamed to a hub (--hub) over gRPC. While the hub is away it
keeps a bounded backlog (--hub-backlog) and resends it; what did not fit is
counted, here and on the hub's /api/v1/agents. It serves only /metrics,
/healthz and /readyz (--metrics-listen): flows are read from the hub.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runAgent(ctx, logger(), cfg, hub, api)
		},
	}
	cfg.flags(cmd.Flags())
	hub.Flags(cmd.Flags())
	cmd.Flags().StringVar(&api.MetricsListen, "metrics-listen", api.MetricsListen, "address (host:port or unix:/path) serving /metrics, /healthz and /readyz")
	api.PprofFlag(cmd.Flags())
	return cmd
}

func runAgent(ctx context.Context, log *slog.Logger, cfg nodeConfig, hub ship.Config, api server.Config) error {
	hub.AgentID, hub.Node, hub.Version = cfg.Agent.Node, cfg.Agent.Node, buildVersion()
	if err := hub.Validate(); err != nil {
		return err
	}
	lns, err := api.Open(log)
	if err != nil {
		return fmt.Errorf("open the metrics listener: %w", err)
	}
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	reg := prometheus.NewRegistry()
	shipper := ship.New(hub, log)
	// The hub joins the two sides of a connection, whatever node each is
	// on: here records wait for their names only.
	cfg.Publish.Join = false
	n, err := startNode(ctx, log, cfg, reg, shipper.Send)
	if err != nil {
		return err
	}
	reg.MustRegister(metrics.ShipCollector{Ship: shipper.Stats})
	srv := server.New(ring.New(1), reg, n.ready, log, api.Limits)
	log.Info("flowlens agent", "hub", hub.Hub, "metrics_listen", api.MetricsListen, "node", cfg.Agent.Node,
		"interval", cfg.Agent.Interval, "kubernetes", n.kube != nil, "watch_cgroup", cfg.WatchCgroup)
	releaseStartPages(log)

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ctx, lns...) }()
	go func() { errc <- shipper.Run(ctx) }()
	runErr := n.agent.Run(ctx)
	err = errors.Join(runErr, <-errc, <-errc)
	log.Info("flowlens agent stopped: eBPF programs detached")
	return err
}

// buildVersion is the commit the binary was built from, as Go recorded it.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v = s.Value[:12]
		}
	}
	return v
}
