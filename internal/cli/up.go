package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/flowlens/flowlens/internal/agent"
	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/metrics"
	"github.com/flowlens/flowlens/internal/ring"
	"github.com/flowlens/flowlens/internal/server"
)

// DefaultListen is where `flowlens up` serves and `flowlens observe` asks.
const DefaultListen = "127.0.0.1:4245"

func newUpCmd(logger func() *slog.Logger) *cobra.Command {
	cfg := agent.DefaultConfig()
	listen := DefaultListen
	ringSize := 1 << 16
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Watch every connection on this host and serve flows, metrics and health",
		Long: `up runs the node agent and its API in one process: the embedded default for a
single Linux host, no Kubernetes needed. It needs root (or CAP_BPF, CAP_PERFMON,
CAP_NET_ADMIN and CAP_SYS_ADMIN) and a kernel with BTF.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logger()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runUp(ctx, log, cfg, listen, ringSize)
		},
	}
	cfg.Flags(cmd.Flags())
	cmd.Flags().StringVar(&listen, "listen", listen, "address of the HTTP API")
	cmd.Flags().IntVar(&ringSize, "flow-buffer", ringSize, "flow records kept in memory for the API")
	return cmd
}

func runUp(ctx context.Context, log *slog.Logger, cfg agent.Config, listen string, ringSize int) error {
	if os.Geteuid() != 0 {
		log.Warn("not running as root: loading eBPF programs will likely fail")
	}
	if cfg.Datapath.CgroupMount == "" {
		mount, err := cgroup.FindMount()
		if err != nil {
			log.Warn("no cgroup2 mount: UDP and container ids will be missing", "err", err)
		}
		cfg.Datapath.CgroupMount = mount
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	flows := ring.New(ringSize)
	a, err := agent.New(cfg, log, nil, flows.Write)
	if err != nil {
		ln.Close()
		return fmt.Errorf("start agent: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		metrics.AgentCollector{Agent: a},
		metrics.RingCollector{Ring: flows},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "flowlens"}),
	)
	ready := func() error {
		if !a.Ready() {
			return errors.New("agent has not completed its first interval")
		}
		return nil
	}
	srv := server.New(flows, reg, ready, log)
	log.Info("flowlens up", "listen", ln.Addr().String(), "node", cfg.Node, "interval", cfg.Interval)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()
	runErr := a.Run(ctx)
	stopErr := <-errc
	log.Info("flowlens stopped: eBPF programs detached")
	return errors.Join(runErr, stopErr)
}
