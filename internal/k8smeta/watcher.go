package k8smeta

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsinformers "k8s.io/client-go/informers/apps/v1"
	batchinformers "k8s.io/client-go/informers/batch/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/flowlens/flowlens/internal/identity"
)

const (
	// expireEvery is how often deleted pods and old address holders past
	// their grace are dropped from the index.
	expireEvery = 10 * time.Second
	// resolveEvery is how often an API server host name is looked up
	// again: managed control planes move their addresses now and then.
	resolveEvery = time.Minute
	// syncPoll is how often WaitForSync looks at the informers.
	syncPoll = 50 * time.Millisecond
	// kubernetesSlices selects the EndpointSlices of Service
	// default/kubernetes: where the API server really listens.
	kubernetesSlices = discoveryv1.LabelServiceName + "=kubernetes"
)

// Watcher feeds an identity.Index from the API server.
type Watcher struct {
	cfg    Config
	idx    *identity.Index
	log    *slog.Logger
	client kubernetes.Interface
	done   <-chan struct{}

	// synced reports, per informer, whether its handler has been given the
	// initial list: only then does the index hold it.
	synced []cache.InformerSynced

	events      atomic.Uint64
	watchErrors atomic.Uint64

	mu     sync.Mutex
	stale  bool
	lastOK time.Time // last probe the API server answered
}

// Status is the watcher's health.
type Status struct {
	Synced bool // every informer has delivered its initial list
	// Stale is set while the API server does not answer: names come from
	// the last known state. StaleSince is the last time it answered.
	Stale      bool
	StaleSince time.Time
	// WatchErrors counts lists and watches that failed for a reason other
	// than the API server being unreachable, e.g. forbidden: reflectors
	// retry refused connections without reporting them (that shows as
	// Stale), and retry everything else with backoff.
	WatchErrors uint64
	Events      uint64 // adds, updates and deletes delivered to the index
}

// Start connects to the API server and starts feeding idx: informers for
// pods, Services, Nodes, ReplicaSets, Jobs and the EndpointSlices of
// default/kubernetes, a probe for staleness, and periodic expiry. It
// returns at once; everything stops when ctx ends.
func Start(ctx context.Context, cfg Config, idx *identity.Index, log *slog.Logger) (*Watcher, error) {
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = defaultProbeInterval
	}
	rc, err := cfg.restConfig()
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "flowlens"
	// Protobuf is several times cheaper to decode than JSON, and every pod
	// update in the cluster is decoded on every node.
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	host, port, err := apiServerHost(rc.Host)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", rc.Host, err)
	}
	w := &Watcher{cfg: cfg, idx: idx, log: log, client: client, done: ctx.Done(), lastOK: time.Now()}

	// Informers log through klog's contextual logger: give them ours, so
	// that nothing client-go says bypasses slog.
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(log.Handler()))

	pods := coreinformers.NewPodInformer(client, metav1.NamespaceAll, 0, nil)
	services := coreinformers.NewServiceInformer(client, metav1.NamespaceAll, 0, nil)
	nodes := coreinformers.NewNodeInformer(client, 0, nil)
	replicaSets := appsinformers.NewReplicaSetInformer(client, metav1.NamespaceAll, 0, nil)
	jobs := batchinformers.NewJobInformer(client, metav1.NamespaceAll, 0, nil)
	slices := discoveryinformers.NewFilteredEndpointSliceInformer(client, metav1.NamespaceDefault, 0, nil,
		func(o *metav1.ListOptions) { o.LabelSelector = kubernetesSlices })
	deleteOwner := func(o identity.Owner, _ time.Time) { idx.DeleteOwner(o.Kind, o.Namespace, o.Name) }
	// The Service may have several slices (one per address family); any
	// change recomputes the whole set from the informer's store.
	apiEndpoints := func([]netip.AddrPort, time.Time) { idx.SetAPIServerEndpoints(storeEndpoints(slices.GetStore())) }
	err = errors.Join(
		watch(w, pods, "pods", podOf, idx.UpsertPod, func(p identity.Pod, now time.Time) { idx.DeletePod(p.UID, now) }),
		watch(w, services, "services", serviceOf, idx.UpsertService,
			func(s identity.Service, now time.Time) { idx.DeleteService(s.Namespace, s.Name, now) }),
		watch(w, nodes, "nodes", nodeOf, idx.UpsertNode, func(n identity.Node, now time.Time) { idx.DeleteNode(n.Name, now) }),
		watch(w, replicaSets, "replicasets", replicaSetOf, func(o identity.Owner, _ time.Time) { idx.UpsertOwner(o) }, deleteOwner),
		watch(w, jobs, "jobs", jobOf, func(o identity.Owner, _ time.Time) { idx.UpsertOwner(o) }, deleteOwner),
		watch(w, slices, "endpointslices", endpointsOf, apiEndpoints, apiEndpoints),
	)
	if err != nil {
		return nil, fmt.Errorf("set up informers: %w", err)
	}
	for _, inf := range []cache.SharedIndexInformer{pods, services, nodes, replicaSets, jobs, slices} {
		go inf.RunWithContext(ctx)
	}

	if a, err := netip.ParseAddr(host); err == nil {
		idx.SetAPIServer(addrPorts([]netip.Addr{a}, port))
	} else {
		go w.resolveAPIServer(ctx, host, port)
	}
	go w.probe(ctx)
	go w.expire(ctx)
	return w, nil
}

// watch wires one informer: slim transform, error accounting, and handlers
// that feed the index with the time each event arrived.
func watch[O metav1.Object, T any](w *Watcher, inf cache.SharedIndexInformer, resource string,
	conv func(O) T, upsert, remove func(T, time.Time)) error {
	if err := inf.SetTransform(transform(conv)); err != nil {
		return fmt.Errorf("%s: %w", resource, err)
	}
	if err := inf.SetWatchErrorHandlerWithContext(w.watchError(resource)); err != nil {
		return fmt.Errorf("%s: %w", resource, err)
	}
	deliver := func(obj any, f func(T, time.Time)) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj // deleted while the watch was down: the last state we stored
		}
		if s, ok := obj.(*slim[T]); ok {
			w.events.Add(1)
			f(s.v, time.Now())
		}
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { deliver(obj, upsert) },
		UpdateFunc: func(_, obj any) { deliver(obj, upsert) },
		DeleteFunc: func(obj any) { deliver(obj, remove) },
	})
	if err != nil {
		return fmt.Errorf("%s: %w", resource, err)
	}
	w.synced = append(w.synced, reg.HasSynced)
	return nil
}

// watchError counts failed lists and watches. The reflector retries on its
// own with backoff; while the probe already says the API server is gone
// the errors are expected, otherwise (forbidden by RBAC, a server error)
// someone should look.
func (w *Watcher) watchError(resource string) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, _ *cache.Reflector, err error) {
		if errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			return // a watch ending normally or outliving its resource version: the reflector relists
		}
		w.watchErrors.Add(1)
		level := slog.LevelWarn
		if w.Status().Stale {
			level = slog.LevelDebug
		}
		w.log.Log(ctx, level, "kubernetes list/watch failed", "resource", resource, "err", err)
	}
}

func storeEndpoints(s cache.Store) []netip.AddrPort {
	var out []netip.AddrPort
	for _, obj := range s.List() {
		if es, ok := obj.(*slim[[]netip.AddrPort]); ok {
			out = append(out, es.v...)
		}
	}
	return out
}

// probe asks the API server's /readyz every ProbeInterval, through the
// same client as the informers. Informers alone cannot say the cache is
// stale: a reflector waiting in backoff reports nothing.
func (w *Watcher) probe(ctx context.Context) {
	rc := w.client.Discovery().RESTClient()
	tick := time.NewTicker(w.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, w.cfg.ProbeInterval)
		_, err := rc.Get().AbsPath("/readyz").DoRaw(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		w.probed(err, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (w *Watcher) probed(err error, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case err == nil && w.stale:
		w.log.Info("kubernetes API server answers again", "stale_for", now.Sub(w.lastOK).Round(time.Millisecond))
		w.stale = false
	case err != nil && !w.stale:
		w.log.Warn("kubernetes API server does not answer: names come from the last known state", "err", err)
		w.stale = true
	}
	if err == nil {
		w.lastOK = now
	}
}

func (w *Watcher) expire(ctx context.Context) {
	tick := time.NewTicker(expireEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			w.idx.Expire(now)
		}
	}
}

// resolveAPIServer looks up the API server's host name now and then, so
// that connections to it are named even after its addresses move.
func (w *Watcher) resolveAPIServer(ctx context.Context, host string, port uint16) {
	tick := time.NewTicker(resolveEvery)
	defer tick.Stop()
	for {
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err == nil {
			w.idx.SetAPIServer(addrPorts(addrs, port))
		} else if ctx.Err() == nil {
			w.log.Warn("resolve API server host", "host", host, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// WaitForSync waits until every informer has fed its initial list to the
// index, ctx ends, or the watcher stops.
func (w *Watcher) WaitForSync(ctx context.Context) error {
	tick := time.NewTicker(syncPoll)
	defer tick.Stop()
	for !w.hasSynced() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubernetes caches not synced: %w", context.Cause(ctx))
		case <-w.done:
			return errors.New("kubernetes caches not synced: watcher stopped")
		case <-tick.C:
		}
	}
	return nil
}

func (w *Watcher) hasSynced() bool {
	for _, synced := range w.synced {
		if !synced() {
			return false
		}
	}
	return true
}

// Status returns the watcher's health.
func (w *Watcher) Status() Status {
	s := Status{Synced: w.hasSynced(), WatchErrors: w.watchErrors.Load(), Events: w.events.Load()}
	w.mu.Lock()
	defer w.mu.Unlock()
	s.Stale = w.stale
	if w.stale {
		s.StaleSince = w.lastOK
	}
	return s
}
