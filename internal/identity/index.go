package identity

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// Index answers "who is this address, this cgroup" as of a given time. It
// is safe for concurrent use: the watcher writes, the agent reads.
type Index struct {
	cfg Config
	now func() time.Time // for Resolve without a time; replaced in tests

	mu sync.RWMutex

	pods    map[string]*podEntry // by UID, live and deleted within grace
	podIPs  history[netip.Addr, string]
	deleted []tombstone // deleted pods, oldest first

	services   map[svcKey]Service // live only: history keeps names of deleted ones
	clusterIPs history[netip.Addr, svcKey]
	nodePorts  history[uint16, svcKey]

	nodes     map[string][]netip.Addr // live only, by name
	nodeAddrs history[netip.Addr, string]

	owners map[ownerKey]*ownerEntry

	apiServer    map[netip.AddrPort]bool // where the agent reaches the API server
	apiEndpoints map[netip.AddrPort]bool // endpoints of Service default/kubernetes

	dropped uint64
}

type podEntry struct {
	pod     Pod
	deleted time.Time // zero while the pod lives
}

// tombstone queues a deletion for Expire and MaxPods. A pod upserted again
// after its deletion (never with real UIDs, but possible in data) leaves a
// tombstone whose time no longer matches the entry; it is skipped.
type tombstone struct {
	uid string
	at  time.Time
}

type svcKey struct{ namespace, name string }

type ownerKey struct{ kind, namespace, name string }

// ownerEntry is an owner's controller, counted by the pods referring to it,
// so that a ReplicaSet deleted with its pods still names their Deployment
// for as long as those pods resolve.
type ownerEntry struct {
	controller *OwnerRef
	known      bool // fed by UpsertOwner and not deleted since
	refs       int  // pods in the index whose controller this is
}

// kubernetesService is the Service in front of the API server.
var kubernetesService = svcKey{"default", "kubernetes"}

// New returns an empty index.
func New(cfg Config) *Index {
	if cfg.DeletedGrace <= 0 {
		cfg.DeletedGrace = defaultDeletedGrace
	}
	if cfg.MaxPods <= 0 {
		cfg.MaxPods = defaultMaxPods
	}
	return &Index{
		cfg:          cfg,
		now:          time.Now,
		pods:         map[string]*podEntry{},
		podIPs:       history[netip.Addr, string]{},
		services:     map[svcKey]Service{},
		clusterIPs:   history[netip.Addr, svcKey]{},
		nodePorts:    history[uint16, svcKey]{},
		nodes:        map[string][]netip.Addr{},
		nodeAddrs:    history[netip.Addr, string]{},
		owners:       map[ownerKey]*ownerEntry{},
		apiServer:    map[netip.AddrPort]bool{},
		apiEndpoints: map[netip.AddrPort]bool{},
	}
}

// UpsertPod adds or updates a pod; now is when the watch event arrived.
// Addresses the pod gained are claimed from now on, addresses it lost are
// released now.
func (x *Index) UpsertPod(p Pod, now time.Time) {
	p.IPs = addrs(p.IPs)
	if p.HostNetwork {
		p.IPs = nil
	}
	p.Containers = containerIDs(p.Containers)

	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.pods[p.UID]
	if e == nil {
		x.makeRoom()
		e = &podEntry{}
		x.pods[p.UID] = e
	} else {
		for _, ip := range e.pod.IPs {
			if !slices.Contains(p.IPs, ip) {
				x.podIPs.release(ip, p.UID, now)
			}
		}
		x.unref(e.pod)
	}
	for _, ip := range p.IPs {
		if e.deleted.IsZero() && slices.Contains(e.pod.IPs, ip) {
			// Still held: claiming again could take the address back
			// from a newer holder when an old pod's status lags.
			continue
		}
		x.podIPs.claim(ip, p.UID, now)
	}
	e.pod, e.deleted = p, time.Time{}
	x.ref(p)
}

// makeRoom drops the oldest deleted pods while the index is full.
func (x *Index) makeRoom() {
	for len(x.pods) >= x.cfg.MaxPods && len(x.deleted) > 0 {
		t := x.deleted[0]
		x.deleted = x.deleted[1:]
		if e := x.pods[t.uid]; e != nil && e.deleted.Equal(t.at) {
			x.dropPod(t.uid, e)
			x.dropped++
		}
	}
}

// DeletePod marks a pod deleted at now: its addresses are released, and it
// still resolves, by UID and by address for times before now, until
// DeletedGrace has passed.
func (x *Index) DeletePod(uid string, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.pods[uid]
	if e == nil || !e.deleted.IsZero() {
		return
	}
	for _, ip := range e.pod.IPs {
		x.podIPs.release(ip, uid, now)
	}
	e.deleted = now
	x.deleted = append(x.deleted, tombstone{uid: uid, at: now})
}

func (x *Index) dropPod(uid string, e *podEntry) {
	for _, ip := range e.pod.IPs {
		x.podIPs.forget(ip, uid)
	}
	x.unref(e.pod)
	delete(x.pods, uid)
}

func (x *Index) ref(p Pod) {
	if p.Controller == nil {
		return
	}
	k := ownerKey{p.Controller.Kind, p.Namespace, p.Controller.Name}
	o := x.owners[k]
	if o == nil {
		o = &ownerEntry{}
		x.owners[k] = o
	}
	o.refs++
}

func (x *Index) unref(p Pod) {
	if p.Controller == nil {
		return
	}
	k := ownerKey{p.Controller.Kind, p.Namespace, p.Controller.Name}
	if o := x.owners[k]; o != nil {
		o.refs--
		if o.refs <= 0 && !o.known {
			delete(x.owners, k)
		}
	}
}

// UpsertService adds or updates a Service.
func (x *Index) UpsertService(s Service, now time.Time) {
	s.ClusterIPs = addrs(s.ClusterIPs)
	k := svcKey{s.Namespace, s.Name}

	x.mu.Lock()
	defer x.mu.Unlock()
	old, existed := x.services[k]
	for _, ip := range old.ClusterIPs {
		if !slices.Contains(s.ClusterIPs, ip) {
			x.clusterIPs.release(ip, k, now)
		}
	}
	oldPorts, newPorts := nodePorts(old), nodePorts(s)
	for _, p := range oldPorts {
		if !slices.Contains(newPorts, p) {
			x.nodePorts.release(p, k, now)
		}
	}
	for _, ip := range s.ClusterIPs {
		if !existed || !slices.Contains(old.ClusterIPs, ip) {
			x.clusterIPs.claim(ip, k, now)
		}
	}
	for _, p := range newPorts {
		if !existed || !slices.Contains(oldPorts, p) {
			x.nodePorts.claim(p, k, now)
		}
	}
	x.services[k] = s
}

// DeleteService removes a Service; its addresses still name it for times
// before now, until DeletedGrace has passed.
func (x *Index) DeleteService(namespace, name string, now time.Time) {
	k := svcKey{namespace, name}
	x.mu.Lock()
	defer x.mu.Unlock()
	s, ok := x.services[k]
	if !ok {
		return
	}
	for _, ip := range s.ClusterIPs {
		x.clusterIPs.release(ip, k, now)
	}
	for _, p := range nodePorts(s) {
		x.nodePorts.release(p, k, now)
	}
	delete(x.services, k)
}

func nodePorts(s Service) []uint16 {
	var ports []uint16
	for _, p := range s.Ports {
		if p.NodePort != 0 && !slices.Contains(ports, p.NodePort) {
			ports = append(ports, p.NodePort)
		}
	}
	return ports
}

// UpsertNode adds or updates a Node.
func (x *Index) UpsertNode(n Node, now time.Time) {
	n.Addrs = addrs(n.Addrs)
	x.mu.Lock()
	defer x.mu.Unlock()
	old, existed := x.nodes[n.Name]
	for _, ip := range old {
		if !slices.Contains(n.Addrs, ip) {
			x.nodeAddrs.release(ip, n.Name, now)
		}
	}
	for _, ip := range n.Addrs {
		if !existed || !slices.Contains(old, ip) {
			x.nodeAddrs.claim(ip, n.Name, now)
		}
	}
	x.nodes[n.Name] = n.Addrs
}

// DeleteNode removes a Node; its addresses still name it for times before
// now, until DeletedGrace has passed.
func (x *Index) DeleteNode(name string, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old, ok := x.nodes[name]
	if !ok {
		return
	}
	for _, ip := range old {
		x.nodeAddrs.release(ip, name, now)
	}
	delete(x.nodes, name)
}

// UpsertOwner records an owner's controller (ReplicaSet -> Deployment,
// Job -> CronJob).
func (x *Index) UpsertOwner(o Owner) {
	k := ownerKey{o.Kind, o.Namespace, o.Name}
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.owners[k]
	if e == nil {
		e = &ownerEntry{}
		x.owners[k] = e
	}
	e.controller, e.known = o.Controller, true
}

// DeleteOwner forgets an owner once no pod in the index refers to it: a
// ReplicaSet is deleted after its pods, whose late records should still
// name the Deployment.
func (x *Index) DeleteOwner(kind, namespace, name string) {
	k := ownerKey{kind, namespace, name}
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.owners[k]
	if e == nil {
		return
	}
	e.known = false
	if e.refs <= 0 {
		delete(x.owners, k)
	}
}

// SetAPIServer sets the addresses the agent itself reaches the API server
// at (the client configuration's host, resolved).
func (x *Index) SetAPIServer(addrs []netip.AddrPort) {
	m := addrPorts(addrs)
	x.mu.Lock()
	defer x.mu.Unlock()
	x.apiServer = m
}

// SetAPIServerEndpoints sets the endpoints of Service default/kubernetes:
// where clients other than the agent (kubelets, pods past the ClusterIP's
// DNAT) reach the API server.
func (x *Index) SetAPIServerEndpoints(addrs []netip.AddrPort) {
	m := addrPorts(addrs)
	x.mu.Lock()
	defer x.mu.Unlock()
	x.apiEndpoints = m
}

func addrPorts(addrs []netip.AddrPort) map[netip.AddrPort]bool {
	m := make(map[netip.AddrPort]bool, len(addrs))
	for _, a := range addrs {
		m[netip.AddrPortFrom(a.Addr().Unmap(), a.Port())] = true
	}
	return m
}

// Expire drops deleted pods and address holders whose grace ended before
// now.
func (x *Index) Expire(now time.Time) {
	cutoff := now.Add(-x.cfg.DeletedGrace)
	x.mu.Lock()
	defer x.mu.Unlock()
	for len(x.deleted) > 0 && x.deleted[0].at.Before(cutoff) {
		t := x.deleted[0]
		x.deleted = x.deleted[1:]
		if e := x.pods[t.uid]; e != nil && e.deleted.Equal(t.at) {
			x.dropPod(t.uid, e)
		}
	}
	x.podIPs.expire(cutoff)
	x.clusterIPs.expire(cutoff)
	x.nodePorts.expire(cutoff)
	x.nodeAddrs.expire(cutoff)
}

// Stats returns what the index holds.
func (x *Index) Stats() Stats {
	x.mu.RLock()
	defer x.mu.RUnlock()
	s := Stats{Services: len(x.services), Nodes: len(x.nodes), Dropped: x.dropped}
	for _, e := range x.pods {
		if e.deleted.IsZero() {
			s.Pods++
			if !e.pod.HostNetwork {
				s.PodAddrs += len(e.pod.IPs)
			}
		} else {
			s.DeletedPods++
		}
	}
	for _, o := range x.owners {
		if o.known {
			s.Owners++
		}
	}
	return s
}

// Hints is what the agent knows of an endpoint beyond its address.
type Hints struct {
	// PodUID and ContainerID come from the socket's cgroup on the observing
	// side, "" otherwise.
	PodUID, ContainerID string
	// At is the connection's start; zero means now.
	At time.Time
	// Destination is set for the side the connection was opened to: only
	// there can an address be a Service's (a ClusterIP is never a source,
	// and a node's ephemeral port may equal a node port).
	Destination bool
}

// Claim says what became of a cgroup's claim that an endpoint is a pod's
// (Hints.PodUID).
type Claim int

const (
	// ClaimNone: the hints named no pod.
	ClaimNone Claim = iota
	// ClaimNamed: the pod is known and, if the cgroup named a container,
	// the pod's status lists it; the endpoint is named after the pod.
	ClaimNamed
	// ClaimUnknownPod: no pod has that UID (yet); named by address.
	ClaimUnknownPod
	// ClaimUnlistedContainer: the pod is known, but its status does not
	// list the cgroup's container (yet); named by address.
	ClaimUnlistedContainer
)

// Pending reports whether the claim may still be confirmed by a later
// watch event: the pod, or its container status, has not arrived.
func (c Claim) Pending() bool { return c == ClaimUnknownPod || c == ClaimUnlistedContainer }

// Resolve fills the Kubernetes fields of ep (and clears stale ones) as of
// h.At, and says what became of the cgroup's claim to a pod. See the
// package documentation for the order of the rules.
func (x *Index) Resolve(ep *flow.Endpoint, h Hints) Claim {
	at, podUID, containerID := h.At, h.PodUID, trimRuntime(h.ContainerID)
	if at.IsZero() {
		at = x.now()
	}
	ep.Kind, ep.Namespace, ep.Pod, ep.Container = "", "", "", ""
	ep.Workload, ep.Labels, ep.NodeName, ep.HostNetwork, ep.Service = nil, nil, "", false, nil
	ip := ep.IP.Unmap()

	x.mu.RLock()
	defer x.mu.RUnlock()

	// 1. The cgroup names the pod, even a host-network one, once the pod's
	// status confirms the container is the pod's.
	claim := ClaimNone
	if podUID != "" {
		claim = ClaimUnknownPod
		if e := x.pods[podUID]; e != nil {
			name, listed := e.pod.Containers[containerID]
			if containerID != "" && !listed {
				claim = ClaimUnlistedContainer
			} else {
				x.fillPod(ep, e.pod)
				ep.HostNetwork = e.pod.HostNetwork
				ep.Container = name
				return ClaimNamed
			}
		}
	}
	x.resolveAddr(ep, ip, at, h.Destination)
	return claim
}

// resolveAddr applies rules 2 to 6: what the address was at that time.
func (x *Index) resolveAddr(ep *flow.Endpoint, ip netip.Addr, at time.Time, destination bool) {
	// 2. The API server, by the agent's own view or the kubernetes Service.
	// In a pod the agent's own view is that Service's ClusterIP: name the
	// Service then too, as it is named for everyone else.
	var svc svcKey
	var isSvc bool
	if destination {
		svc, isSvc = x.clusterIPs.at(ip, at)
	}
	ap := netip.AddrPortFrom(ip, ep.Port)
	if x.apiServer[ap] || x.apiEndpoints[ap] || isSvc && svc == kubernetesService && x.servicePort(svc, ep.Port) {
		ep.Kind = flow.KindAPIServer
		if isSvc && svc == kubernetesService {
			ep.Service = &flow.ServiceRef{Namespace: svc.namespace, Name: svc.name}
		}
		return
	}

	// 3. A Service address: a ClusterIP, or a node port on a node.
	if isSvc {
		setService(ep, svc)
		return
	}
	node, isNode := x.nodeAddrs.at(ip, at)
	if isNode && destination {
		if svc, ok := x.nodePorts.at(ep.Port, at); ok {
			setService(ep, svc)
			ep.NodeName = node
			return
		}
	}

	// 4. A pod's own address at that time.
	if uid, ok := x.podIPs.at(ip, at); ok {
		if e := x.pods[uid]; e != nil {
			x.fillPod(ep, e.pod)
			return
		}
	}

	// 5. A node, or a host-network pod on it that no cgroup named.
	if isNode {
		ep.Kind = flow.KindNode
		ep.NodeName = node
		return
	}
	ep.Kind = flow.KindWorld
}

func setService(ep *flow.Endpoint, k svcKey) {
	ep.Kind = flow.KindService
	ep.Namespace = k.namespace
	ep.Service = &flow.ServiceRef{Namespace: k.namespace, Name: k.name}
}

func (x *Index) fillPod(ep *flow.Endpoint, p Pod) {
	ep.Kind = flow.KindPod
	ep.Namespace = p.Namespace
	ep.Pod = p.Name
	ep.Labels = maps.Clone(p.Labels)
	ep.NodeName = p.NodeName
	w := x.workload(p)
	ep.Workload = &w
}

// servicePort reports whether the live Service k exposes port.
func (x *Index) servicePort(k svcKey, port uint16) bool {
	for _, p := range x.services[k].Ports {
		if p.Port == port {
			return true
		}
	}
	return false
}

// workload follows the controller chain up from a pod: ReplicaSet to
// Deployment, Job to CronJob, as far as owners are known.
func (x *Index) workload(p Pod) flow.Workload {
	if p.Controller == nil {
		return flow.Workload{Kind: "Pod", Name: p.Name}
	}
	w := flow.Workload{Kind: p.Controller.Kind, Name: p.Controller.Name}
	for range maxOwnerDepth {
		o := x.owners[ownerKey{w.Kind, p.Namespace, w.Name}]
		if o == nil || o.controller == nil {
			break
		}
		w = flow.Workload{Kind: o.controller.Kind, Name: o.controller.Name}
	}
	return w
}

// addrs returns the valid addresses of in, unmapped and without duplicates,
// so that an IPv4 address matches whether it comes as 10.0.0.1 or
// ::ffff:10.0.0.1.
func addrs(in []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range in {
		a = a.Unmap()
		if a.IsValid() && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// containerIDs strips runtime prefixes from the keys of m.
func containerIDs(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for id, name := range m {
		out[trimRuntime(id)] = name
	}
	return out
}

// trimRuntime strips a runtime prefix ("containerd://", "cri-o://") from a
// container id, leaving the id the cgroup path carries.
func trimRuntime(id string) string {
	if _, after, ok := strings.Cut(id, "://"); ok {
		return after
	}
	return id
}
