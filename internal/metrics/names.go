package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/identity"
	"github.com/flowlens/flowlens/internal/k8smeta"
	"github.com/flowlens/flowlens/internal/publish"
)

var (
	cgroupLookups = prometheus.NewDesc("flowlens_cgroup_lookups_total",
		"Cgroup id lookups, by whether the cgroup was found.", []string{"result"}, nil)
	cgroupWalks = prometheus.NewDesc("flowlens_cgroup_walks_total",
		"Walks of the cgroup2 tree to learn new cgroup ids.", nil, nil)
	cgroupEntries = prometheus.NewDesc("flowlens_cgroup_entries",
		"Cgroup ids cached.", nil, nil)
	scopeRecords = prometheus.NewDesc("flowlens_agent_scope_records_total",
		"Records by whether their observing socket's cgroup is in the agent's --watch-cgroup subtree: inside (kept), outside or unknown (a cgroup gone before its record was read; dropped).", []string{"cgroup"}, nil)
	cgroupEvictions = prometheus.NewDesc("flowlens_cgroup_evictions_total",
		"Cgroup ids dropped from the full cache; they are looked up again when seen.", nil, nil)
	procReads = prometheus.NewDesc("flowlens_cgroup_proc_reads_total",
		"Reads of /proc/<pid>/cgroup to name a process's pod where its v2 cgroup does not, by result.", []string{"result"}, nil)
	identityObjects = prometheus.NewDesc("flowlens_identity_objects",
		"Kubernetes objects the identity index holds.", []string{"kind"}, nil)
	kubeStale = prometheus.NewDesc("flowlens_k8s_metadata_stale",
		"1 while the API server cannot be reached and names come from the last known state.", nil, nil)
	kubeSynced = prometheus.NewDesc("flowlens_k8s_metadata_synced",
		"1 once every informer completed its first list.", nil, nil)
	kubeWatchErrors = prometheus.NewDesc("flowlens_k8s_watch_errors_total",
		"Errors of list and watch calls to the API server.", nil, nil)
	kubeEvents = prometheus.NewDesc("flowlens_k8s_events_total",
		"Object changes received from the API server.", nil, nil)
	joined = prometheus.NewDesc("flowlens_join_records_total",
		"Client records to a Service or node address, by whether the workload behind it was found.", []string{"result"}, nil)
	joinBackends = prometheus.NewDesc("flowlens_join_backends",
		"Backends indexed by client address for the join.", nil, nil)
	early = prometheus.NewDesc("flowlens_names_early_records_total",
		"Records whose cgroup named a pod before its metadata (or its container's status) arrived, by how their wait ended.", []string{"result"}, nil)
	earlyHeld = prometheus.NewDesc("flowlens_names_early_records_waiting",
		"Records waiting for their pod's metadata or for their server side.", nil, nil)
)

// NamesCollector reports how endpoints get their names: cgroup resolution,
// the Kubernetes metadata cache and the Service join. A nil source is a
// stage that is not running (no cgroup2, no cluster).
type NamesCollector struct {
	Cgroups  func() cgroup.ResolverStats
	Procs    func() cgroup.ProcStats
	Identity func() identity.Stats
	Kube     func() k8smeta.Status
	Publish  func() publish.Stats
	Scope    func() cgroup.ScopeStats
}

// Describe implements prometheus.Collector. Losses are reported under
// flowlens_agent_lost_total with their own stage labels; that descriptor is
// the agent collector's, and a registry takes each descriptor once.
func (NamesCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cgroupLookups, cgroupWalks, cgroupEntries, cgroupEvictions, procReads, identityObjects,
		kubeStale, kubeSynced, kubeWatchErrors, kubeEvents, joined, joinBackends, early, earlyHeld, scopeRecords} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c NamesCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	bit := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	if c.Cgroups != nil {
		s := c.Cgroups()
		counter(cgroupLookups, s.Hits, "found")
		counter(cgroupLookups, s.Misses, "unknown")
		counter(cgroupWalks, s.Rescans)
		gauge(cgroupEntries, float64(s.Entries))
		counter(cgroupEvictions, s.Evicted)
	}
	if c.Scope != nil {
		s := c.Scope()
		counter(scopeRecords, s.Inside, "inside")
		counter(scopeRecords, s.Outside, "outside")
		counter(scopeRecords, s.Unknown, "unknown")
	}
	if c.Procs != nil {
		s := c.Procs()
		counter(procReads, s.Reads-s.Errors, "read")
		counter(procReads, s.Errors, "gone")
	}
	if c.Identity != nil {
		s := c.Identity()
		gauge(identityObjects, float64(s.Pods), "pod")
		gauge(identityObjects, float64(s.PodAddrs), "pod_address")
		gauge(identityObjects, float64(s.DeletedPods), "deleted_pod")
		gauge(identityObjects, float64(s.Services), "service")
		gauge(identityObjects, float64(s.Nodes), "node")
		gauge(identityObjects, float64(s.Owners), "owner")
		counter(lost, s.Dropped, "names", "deleted_pod_evicted")
	}
	if c.Kube != nil {
		s := c.Kube()
		gauge(kubeStale, bit(s.Stale))
		gauge(kubeSynced, bit(s.Synced))
		counter(kubeWatchErrors, s.WatchErrors)
		counter(kubeEvents, s.Events)
	}
	if c.Publish != nil {
		s := c.Publish()
		counter(early, s.NamedLate, "named_late")
		counter(early, s.Unnamed, "gave_up")
		counter(early, s.Overflow, "not_held")
		gauge(earlyHeld, float64(s.Held))
		counter(joined, s.Join.Matched, "matched")
		counter(joined, s.Unmatched, "unmatched")
		gauge(joinBackends, float64(s.Join.Backends))
		counter(lost, s.Join.Dropped, "join", "backend_index_full")
	}
}
