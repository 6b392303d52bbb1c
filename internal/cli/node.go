package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	flag "github.com/spf13/pflag"

	"github.com/flowlens/flowlens/internal/agent"
	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/datapath"
	"github.com/flowlens/flowlens/internal/enrich"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/identity"
	"github.com/flowlens/flowlens/internal/k8smeta"
	"github.com/flowlens/flowlens/internal/metrics"
	"github.com/flowlens/flowlens/internal/publish"
)

// nodeConfig is the node side that `up` and `agent` share: the data path,
// naming, and the wait for names (and, in up, for the other side).
type nodeConfig struct {
	Agent agent.Config
	Kube  k8smeta.Config
	// Publish is how records wait for their names and other side, and how
	// many one source may put in the ring per interval.
	Publish publish.Config
	// KubeletCgroupRoot is the cgroup kubelet keeps its pods under (its
	// --cgroup-root): pods are read from cgroup paths only below it.
	KubeletCgroupRoot string
	// WatchCgroup, when set, scopes the agent to the sockets of that
	// cgroup subtree.
	WatchCgroup string
	// SyncWait bounds how long startup waits for the first list of
	// Kubernetes objects, so early flows are named; past it flowlens runs
	// on and names what it can.
	SyncWait time.Duration
}

func defaultNodeConfig() nodeConfig {
	return nodeConfig{Agent: agent.DefaultConfig(), Publish: publish.DefaultConfig(), KubeletCgroupRoot: "/", SyncWait: 30 * time.Second}
}

func (c *nodeConfig) flags(fs *flag.FlagSet) {
	c.Agent.Flags(fs)
	c.Kube.Flags(fs)
	c.Publish.Flags(fs)
	fs.StringVar(&c.KubeletCgroupRoot, "kubelet-cgroup-root", c.KubeletCgroupRoot,
		"cgroup kubelet keeps its pods under (its --cgroup-root, as /proc/<pid>/cgroup shows it): a cgroup names a pod only below it")
	fs.StringVar(&c.WatchCgroup, "watch-cgroup", c.WatchCgroup,
		"watch only sockets of this cgroup subtree (as /proc/<pid>/cgroup shows it), e.g. /kubepods.slice: records observed by other sockets are counted and dropped")
	fs.DurationVar(&c.SyncWait, "k8s-sync-wait", c.SyncWait, "how long to wait at start for the first list of Kubernetes objects")
}

// node is a running node side.
type node struct {
	agent *agent.Agent
	kube  *k8smeta.Watcher // nil without Kubernetes
	pub   *publish.Publisher
	// cgroupPath names a cgroup by id (nil without cgroup2).
	cgroupPath func(uint64) string
}

// startNode loads the data path and starts naming; its records go to
// sink once named (and, with join, joined). Its metrics go to reg.
func startNode(ctx context.Context, log *slog.Logger, cfg nodeConfig, reg *prometheus.Registry, sink func([]flow.Record)) (*node, error) {
	if err := cfg.Publish.Validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		log.Warn("not running as root: loading eBPF programs will likely fail")
	}
	var names enrich.Enricher
	var naming metrics.NamesCollector
	var cgroupPath func(uint64) string // names the sources of overload in the metrics
	var cgroups *cgroup.Resolver
	mount, err := cgroup.ReadMount()
	if cfg.Agent.Datapath.CgroupMount == "" {
		if err != nil {
			log.Warn("no cgroup2 mount: UDP, container and pod names will be missing", "err", err)
		}
		// Inside a cgroup namespace the mount's root is this pod's own
		// cgroup: attached there, the programs would see only flowlens.
		host, nsErr := datapath.InInitCgroupNamespace()
		if nsErr != nil {
			return nil, nsErr
		}
		if !host {
			return nil, errors.New("in a cgroup namespace the cgroup2 mount is this container's own cgroup, not the host's root: mount the host's /sys/fs/cgroup and pass --cgroup-root")
		}
		cfg.Agent.Datapath.CgroupMount = mount.Dir
	}
	if dir := cfg.Agent.Datapath.CgroupMount; dir != "" {
		cgroups = cgroup.NewResolver(cgroup.ResolverConfig{Mount: dir, KubeletRoot: cfg.KubeletCgroupRoot})
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
	n := &node{}
	if cfg.Kube.Enabled() {
		idx := identity.New(identity.Config{})
		if n.kube, err = k8smeta.Start(ctx, cfg.Kube, idx, log); err != nil {
			return nil, fmt.Errorf("watch kubernetes: %w", err)
		}
		names.Identities, naming.Identity, naming.Kube = idx, idx.Stats, n.kube.Status
		waitForSync(ctx, n.kube, cfg.SyncWait, log)
	}
	// Hold counts the agent's flushes, up to FlushesPerInterval an interval.
	pub := cfg.Publish
	pub.Hold *= cfg.Agent.FlushesPerInterval()
	n.pub = publish.New(pub, names, sink)
	naming.Publish = n.pub.Stats
	n.cgroupPath = cgroupPath
	records := n.pub.Publish
	if cfg.WatchCgroup != "" {
		if cgroups == nil {
			return nil, errors.New("--watch-cgroup needs a cgroup2 mount")
		}
		scope := cgroup.NewScope(cfg.WatchCgroup, cgroups)
		naming.Scope = scope.Stats
		records = func(recs []flow.Record) { n.pub.Publish(inScope(recs, scope)) }
	}
	if n.agent, err = agent.New(cfg.Agent, log, records); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	reg.MustRegister(
		metrics.AgentCollector{Agent: n.agent, CgroupName: cgroupPath},
		metrics.L7Collector{Agent: n.agent},
		naming,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "flowlens"}),
	)
	return n, nil
}

// inScope keeps, in place, the records whose observing socket is in scope.
func inScope(recs []flow.Record, scope *cgroup.Scope) []flow.Record {
	kept := recs[:0]
	for i := range recs {
		if scope.Contains(recs[i].Observing().CgroupID) {
			kept = append(kept, recs[i])
		}
	}
	return kept
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

// ready is ready once the agent completed an interval and, with
// Kubernetes, while its metadata is fresh: stale names are served, but a
// probe (and a person) should know.
func (n *node) ready() error {
	if !n.agent.Ready() {
		return errors.New("agent has not completed its first interval")
	}
	if n.kube == nil {
		return nil
	}
	switch s := n.kube.Status(); {
	case !s.Synced:
		return errors.New("kubernetes metadata not synced yet")
	case s.Stale:
		return fmt.Errorf("kubernetes metadata stale since %s: the API server cannot be reached, names are from the last known state",
			s.StaleSince.UTC().Format(time.RFC3339))
	}
	return nil
}
