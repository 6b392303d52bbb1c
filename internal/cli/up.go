package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/flowlens/flowlens/internal/agent"
	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/datapath"
	"github.com/flowlens/flowlens/internal/enrich"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/hub"
	"github.com/flowlens/flowlens/internal/identity"
	"github.com/flowlens/flowlens/internal/k8smeta"
	"github.com/flowlens/flowlens/internal/metrics"
	"github.com/flowlens/flowlens/internal/publish"
	"github.com/flowlens/flowlens/internal/server"
)

// upConfig is everything `flowlens up` is started with.
type upConfig struct {
	Agent    agent.Config
	Kube     k8smeta.Config
	API      server.Config // where and how the API is served
	RingSize int
	// Publish is how records wait for their names and other side, and how
	// many one source may put in the ring per interval.
	Publish publish.Config
	// KubeletCgroupRoot is the cgroup kubelet keeps its pods under (its
	// --cgroup-root): pods are read from cgroup paths only below it.
	KubeletCgroupRoot string
	// SyncWait bounds how long startup waits for the first list of
	// Kubernetes objects, so early flows are named; past it flowlens runs
	// on and names what it can.
	SyncWait time.Duration
}

func newUpCmd(logger func() *slog.Logger) *cobra.Command {
	cfg := upConfig{Agent: agent.DefaultConfig(), Publish: publish.DefaultConfig(), API: server.DefaultConfig(), RingSize: 1 << 16,
		KubeletCgroupRoot: "/", SyncWait: 30 * time.Second}
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
	cfg.Agent.Flags(cmd.Flags())
	cfg.Kube.Flags(cmd.Flags())
	cfg.Publish.Flags(cmd.Flags())
	cmd.Flags().StringVar(&cfg.KubeletCgroupRoot, "kubelet-cgroup-root", cfg.KubeletCgroupRoot,
		"cgroup kubelet keeps its pods under (its --cgroup-root, as /proc/<pid>/cgroup shows it): a cgroup names a pod only below it")
	cfg.API.Flags(cmd.Flags())
	cmd.Flags().IntVar(&cfg.RingSize, "flow-buffer", cfg.RingSize, "flow records kept in memory for the API")
	cmd.Flags().DurationVar(&cfg.SyncWait, "k8s-sync-wait", cfg.SyncWait, "how long to wait at start for the first list of Kubernetes objects")
	return cmd
}

func runUp(ctx context.Context, log *slog.Logger, cfg upConfig) error {
	if err := cfg.Publish.Validate(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		log.Warn("not running as root: loading eBPF programs will likely fail")
	}
	lns, err := cfg.API.Open(log)
	if err != nil {
		return fmt.Errorf("open the API's listeners: %w", err)
	}
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()

	var names enrich.Enricher
	reg := prometheus.NewRegistry()
	var naming metrics.NamesCollector
	var cgroupPath func(uint64) string // names the sources of overload in the metrics
	mount, err := cgroup.ReadMount()
	if cfg.Agent.Datapath.CgroupMount == "" {
		if err != nil {
			log.Warn("no cgroup2 mount: UDP, container and pod names will be missing", "err", err)
		}
		// Inside a cgroup namespace the mount's root is this pod's own
		// cgroup: attached there, the programs would see only flowlens.
		host, nsErr := datapath.InInitCgroupNamespace()
		if nsErr != nil {
			return nsErr
		}
		if !host {
			return errors.New("in a cgroup namespace the cgroup2 mount is this container's own cgroup, not the host's root: mount the host's /sys/fs/cgroup and pass --cgroup-root")
		}
		cfg.Agent.Datapath.CgroupMount = mount.Dir
	}
	if dir := cfg.Agent.Datapath.CgroupMount; dir != "" {
		cgroups := cgroup.NewResolver(cgroup.ResolverConfig{Mount: dir, KubeletRoot: cfg.KubeletCgroupRoot})
		names.Cgroups, naming.Cgroups = cgroups, cgroups.Stats
		cgroupPath = func(id uint64) string { c, _ := cgroups.Lookup(id); return c.Path }
	}
	// Only where v1 hierarchies exist can a pod's cgroup be missing from
	// its sockets; elsewhere a /proc read per process would only risk a
	// reused pid naming the wrong pod.
	if mount.V1 {
		procs := cgroup.NewProcs(cgroup.ProcConfig{KubeletRoot: cfg.KubeletCgroupRoot})
		names.Processes, naming.Procs = procs, procs.Stats
	}
	var kube *k8smeta.Watcher
	if cfg.Kube.Enabled() {
		idx := identity.New(identity.Config{})
		if kube, err = k8smeta.Start(ctx, cfg.Kube, idx, log); err != nil {
			return fmt.Errorf("watch kubernetes: %w", err)
		}
		names.Identities, naming.Identity, naming.Kube = idx, idx.Stats, kube.Status
		waitForSync(ctx, kube, cfg.SyncWait, log)
	}
	// The embedded hub: the same pipeline `flowlens hub` runs over every
	// agent's records, fed in process. The join is done before it, in the
	// agent's publisher, where a record's wait for its pod and for its
	// other side are one wait; the hub caps what one source puts in the ring.
	hubCfg := hub.Config{Interval: cfg.Agent.Interval, RingSize: cfg.RingSize,
		Publish: publish.Config{Hold: cfg.Publish.Hold, MaxPerSource: cfg.Publish.MaxPerSource}}
	core := hub.New(hubCfg, log)
	local := hub.Agent{ID: cfg.Agent.Node, Node: cfg.Agent.Node, Incarnation: rand.Uint64(), Addr: "local"}
	var seq uint64
	agentPub := cfg.Publish
	agentPub.Join, agentPub.MaxPerSource = kube != nil, -1
	pub := publish.New(agentPub, names, func(recs []flow.Record) {
		seq++
		if err := core.Receive(ctx, &hub.Batch{Agent: local, Seq: seq, SentAt: time.Now(), Records: recs}); err != nil {
			log.Warn("embedded hub refused an interval's records", "records", len(recs), "err", err)
		}
		core.Tick(time.Now())
	}, log)
	naming.Publish = func() publish.Stats {
		s := pub.Stats()
		s.Capped = core.Publish().Capped
		return s
	}

	a, err := agent.New(cfg.Agent, log, pub.Publish)
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	reg.MustRegister(
		metrics.AgentCollector{Agent: a, CgroupName: cgroupPath},
		metrics.RingCollector{Ring: core.Ring()},
		naming,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "flowlens"}),
	)
	srv := server.New(core.Ring(), reg, readiness(a, kube), log, cfg.API.Limits)
	srv.SetTopology(core)
	reg.MustRegister(metrics.APICollector{API: srv})
	log.Info("flowlens up", "listen", cfg.API.Listen, "metrics_listen", cfg.API.MetricsListen, "node", cfg.Agent.Node,
		"interval", cfg.Agent.Interval, "kubernetes", kube != nil)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, lns...) }()
	runErr := a.Run(ctx)
	stopErr := <-errc
	log.Info("flowlens stopped: eBPF programs detached")
	return errors.Join(runErr, stopErr)
}

func waitForSync(ctx context.Context, kube *k8smeta.Watcher, wait time.Duration, log *slog.Logger) {
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	start := time.Now()
	if err := kube.WaitForSync(sctx); err != nil {
		log.Warn("kubernetes metadata not synced yet: flows are named as objects arrive", "waited", wait, "err", err)
		return
	}
	log.Info("kubernetes metadata synced", "took", time.Since(start).Round(time.Millisecond))
}

// readiness is ready once the agent completed an interval and, with
// Kubernetes, while its metadata is fresh: stale names are served, but a
// probe (and a person) should know.
func readiness(a *agent.Agent, kube *k8smeta.Watcher) func() error {
	return func() error {
		if !a.Ready() {
			return errors.New("agent has not completed its first interval")
		}
		if kube == nil {
			return nil
		}
		switch s := kube.Status(); {
		case !s.Synced:
			return errors.New("kubernetes metadata not synced yet")
		case s.Stale:
			return fmt.Errorf("kubernetes metadata stale since %s: the API server cannot be reached, names are from the last known state",
				s.StaleSince.UTC().Format(time.RFC3339))
		}
		return nil
	}
}
