package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/hub"
	"github.com/flowlens/flowlens/internal/metrics"
	"github.com/flowlens/flowlens/internal/publish"
	"github.com/flowlens/flowlens/internal/server"
)

// upConfig is everything `flowlens up` is started with.
type upConfig struct {
	nodeConfig
	API      server.Config // where and how the API is served
	RingSize int
}

func newUpCmd(logger func() *slog.Logger) *cobra.Command {
	cfg := upConfig{nodeConfig: defaultNodeConfig(), API: server.DefaultConfig(), RingSize: 1 << 16}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Watch every connection on this host and serve flows, metrics and health",
		Long: `up runs the node agent and its API in one process: the embedded default for a
single Linux host, no Kubernetes needed. With a kubeconfig (--kubeconfig,
$KUBECONFIG, or in-cluster) it names pods, workloads, Services and nodes too.
It needs root (or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN) and a
kernel with BTF.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runUp(ctx, logger(), cfg)
		},
	}
	cfg.nodeConfig.flags(cmd.Flags())
	cfg.API.Flags(cmd.Flags())
	cmd.Flags().IntVar(&cfg.RingSize, "flow-buffer", cfg.RingSize, "flow records kept in memory for the API")
	return cmd
}

func runUp(ctx context.Context, log *slog.Logger, cfg upConfig) error {
	lns, err := cfg.API.Open(log)
	if err != nil {
		return fmt.Errorf("open the API's listeners: %w", err)
	}
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()

	// The embedded hub: the same pipeline `flowlens hub` runs over every
	// agent's records, fed in process. The join is done before it, in the
	// node's publisher, where a record's wait for its pod and for its other
	// side are one wait; the hub caps what one source puts in the ring.
	core := hub.New(hub.Config{Interval: cfg.Agent.Interval, RingSize: cfg.RingSize,
		Publish: publish.Config{Hold: cfg.Publish.Hold, MaxPerSource: cfg.Publish.MaxPerSource}}, log)
	local := hub.Agent{ID: cfg.Agent.Node, Node: cfg.Agent.Node, Incarnation: rand.Uint64(), Addr: "local"}
	var seq uint64
	cfg.Publish.Join, cfg.Publish.MaxPerSource = cfg.Kube.Enabled(), -1
	reg := prometheus.NewRegistry()
	n, err := startNode(ctx, log, cfg.nodeConfig, reg, func(recs []flow.Record) {
		seq++
		if err := core.Receive(ctx, &hub.Batch{Agent: local, Seq: seq, SentAt: time.Now(), Records: recs}); err != nil {
			log.Warn("embedded hub refused an interval's records", "records", len(recs), "err", err)
		}
		core.Tick(time.Now())
	}, func() uint64 { return core.Publish().Capped })
	if err != nil {
		return err
	}
	reg.MustRegister(metrics.RingCollector{Ring: core.Ring()})
	srv := server.New(core.Ring(), reg, n.ready, log, cfg.API.Limits)
	srv.SetTopology(core)
	reg.MustRegister(metrics.APICollector{API: srv})
	log.Info("flowlens up", "listen", cfg.API.Listen, "metrics_listen", cfg.API.MetricsListen, "node", cfg.Agent.Node,
		"interval", cfg.Agent.Interval, "kubernetes", n.kube != nil)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, lns...) }()
	runErr := n.agent.Run(ctx)
	stopErr := <-errc
	log.Info("flowlens stopped: eBPF programs detached")
	return errors.Join(runErr, stopErr)
}
