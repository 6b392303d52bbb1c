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
	"github.com/flowlens/flowlens/internal/startpages"
	"github.com/flowlens/flowlens/internal/topology"
)

// upConfig is everything `flowlens up` is started with.
type upConfig struct {
	nodeConfig
	hubConfig
	API server.Config // where and how the API is served
}

func newUpCmd(logger func() *slog.Logger) *cobra.Command {
	cfg := upConfig{nodeConfig: defaultNodeConfig(), hubConfig: defaultHubConfig(), API: server.DefaultConfig()}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Watch every connection on this host and serve flows, topology, metrics and health",
		Long: `up runs the node agent and the hub in one process: the embedded default for a
single Linux host, no Kubernetes needed. With a kubeconfig (--kubeconfig,
$KUBECONFIG, or in-cluster) it names pods, workloads, Services and nodes too;
with --data-dir its history survives a restart.
It needs root (or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN) and a
kernel with BTF.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if cfg.History.Dir != "" && !cmd.Flags().Changed("ended-flush") {
				// Each flush ticks the hub, and with a history each tick
				// is a write to its log (≈10 ms): ten a second is too dear.
				cfg.Agent.EndedFlush = 0
			}
			return runUp(ctx, logger(), cfg)
		},
	}
	cfg.nodeConfig.flags(cmd.Flags())
	cfg.hubConfig.flags(cmd.Flags())
	cfg.API.Flags(cmd.Flags())
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
	reg := prometheus.NewRegistry()

	// The embedded hub: the same pipeline `flowlens hub` runs over every
	// agent's records, fed in process and ticked with the agent's
	// interval. The join is done before it, in the node's publisher, where
	// a record's wait for its pod and for its other side are one wait.
	// It ticks at each of the agent's flushes, up to FlushesPerInterval an
	// interval (ended connections go ahead of the rest): what it counts in
	// ticks is scaled to last as many intervals as before.
	ticks := cfg.Agent.FlushesPerInterval()
	cfg.Hub.Interval, cfg.Hub.ExternalTicks = cfg.Agent.Interval, true
	cfg.Hub.Publish = publish.Config{Hold: cfg.Publish.Hold * ticks}
	// One agent: the two sides of a connection reach the hub at most an
	// interval apart (an ended side is flushed at once, an open one at the
	// interval's end), plus, with Kubernetes, the publisher's wait for a
	// pod's metadata. That, and a flush, is how long a server record waits
	// for its client and an ended connection is remembered for its other
	// side: longer costs memory in a burst (a connection each, issue 17),
	// shorter counts a connection twice.
	apart := 1
	if cfg.Kube.Enabled() {
		apart += cfg.Publish.Hold
	}
	cfg.Hub.Topology.Linger, cfg.Hub.Topology.Hold = apart*ticks+1, apart*ticks+1
	cfg.Hub.Topology.Remember = topology.DefaultRemember * ticks
	var n *node // ticks come from its agent, once it is set
	cfg.Hub.CgroupPath = func(id uint64) string {
		if n.cgroupPath == nil {
			return ""
		}
		return n.cgroupPath(id)
	}
	h, err := startHub(ctx, log, cfg.hubConfig, reg)
	if err != nil {
		return err
	}
	defer h.close()
	reg.MustRegister(h.collector)

	local := hub.Agent{ID: cfg.Agent.Node, Node: cfg.Agent.Node, Incarnation: rand.Uint64(), Addr: "local"}
	var seq uint64
	cfg.Publish.Join = cfg.Kube.Enabled()
	n, err = startNode(ctx, log, cfg.nodeConfig, reg, func(recs []flow.Record) {
		seq++
		if err := h.core.Receive(ctx, &hub.Batch{Agent: local, Seq: seq, SentAt: time.Now(), Records: recs}); err != nil {
			log.Warn("embedded hub refused an interval's records", "records", len(recs), "err", err)
		}
		h.core.Tick(ctx, time.Now())
	})
	if err != nil {
		return err
	}
	srv := server.New(h.core.Ring(), reg, n.ready, log, cfg.API.Limits)
	h.serve(srv)
	reg.MustRegister(metrics.APICollector{API: srv})
	log.Info("flowlens up", "listen", cfg.API.Listen, "metrics_listen", cfg.API.MetricsListen, "node", cfg.Agent.Node,
		"interval", cfg.Agent.Interval, "kubernetes", n.kube != nil, "data_dir", cfg.History.Dir)

	releaseStartPages(log)

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ctx, lns...) }()
	go func() { errc <- h.core.Run(ctx) }()
	runErr := n.agent.Run(ctx)
	err = errors.Join(runErr, <-errc, <-errc)
	log.Info("flowlens stopped: eBPF programs detached")
	return err
}

// releaseStartPages gives back the executable's pages that start-up
// touched: DuckDB's initialisers, every package's init, the datapath's load
// and the TLS scan mapped ≈50 MiB of it that the process will not read
// again. Called once a command has started all it runs.
func releaseStartPages(log *slog.Logger) {
	if released, err := startpages.Release(); err != nil {
		log.Warn("start-up pages of the executable kept", "err", err)
	} else {
		log.Debug("start-up pages of the executable given back", "mapped_bytes", released)
	}
}
