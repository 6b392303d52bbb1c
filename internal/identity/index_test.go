package identity

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func ips(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, ip(a))
	}
	return out
}

var (
	hexMain    = strings.Repeat("a1", 32)
	hexSidecar = strings.Repeat("b2", 32)
	hexAgent   = strings.Repeat("c3", 32)
)

// fixture is a small cluster: two nodes, a pod of every workload shape, a
// host-network pod, three Services and the API server.
func fixture(t *testing.T) *Index {
	t.Helper()
	x := New(Config{})
	x.UpsertNode(Node{Name: "node-a", Addrs: ips("172.30.0.11")}, t0)
	x.UpsertNode(Node{Name: "node-b", Addrs: ips("172.30.0.12", "fd00::12")}, t0)
	x.UpsertOwner(Owner{Kind: "ReplicaSet", Namespace: "shop", Name: "web-7d9f", Controller: &OwnerRef{"Deployment", "web"}})
	x.UpsertOwner(Owner{Kind: "Job", Namespace: "shop", Name: "nightly-2904", Controller: &OwnerRef{"CronJob", "nightly"}})
	x.UpsertOwner(Owner{Kind: "Job", Namespace: "shop", Name: "once"})
	pods := []Pod{
		{UID: "u-web", Namespace: "shop", Name: "web-7d9f-x1", IPs: ips("10.244.1.10"), NodeName: "node-a",
			Labels: map[string]string{"app": "web"}, Controller: &OwnerRef{"ReplicaSet", "web-7d9f"},
			Containers: map[string]string{"containerd://" + hexMain: "main", hexSidecar: "sidecar"}},
		{UID: "u-orphan", Namespace: "shop", Name: "orphan-5c-x2", IPs: ips("10.244.1.11"), NodeName: "node-a",
			Controller: &OwnerRef{"ReplicaSet", "orphan-5c"}},
		{UID: "u-db", Namespace: "shop", Name: "db-0", IPs: ips("10.244.2.20"), NodeName: "node-b",
			Controller: &OwnerRef{"StatefulSet", "db"}},
		{UID: "u-agent", Namespace: "kube-system", Name: "agent-q8", IPs: ips("172.30.0.11"), HostNetwork: true, NodeName: "node-a",
			Labels: map[string]string{"app": "agent"}, Controller: &OwnerRef{"DaemonSet", "agent"},
			Containers: map[string]string{"cri-o://" + hexAgent: "agent"}},
		{UID: "u-nightly", Namespace: "shop", Name: "nightly-2904-zz", IPs: ips("10.244.2.21"), NodeName: "node-b",
			Controller: &OwnerRef{"Job", "nightly-2904"}},
		{UID: "u-once", Namespace: "shop", Name: "once-yy", IPs: ips("10.244.2.22"), NodeName: "node-b",
			Controller: &OwnerRef{"Job", "once"}},
		{UID: "u-bare", Namespace: "default", Name: "debug", IPs: ips("10.244.2.23", "fd00:10:244::23"), NodeName: "node-b"},
	}
	for _, p := range pods {
		x.UpsertPod(p, t0)
	}
	x.UpsertService(Service{Namespace: "default", Name: "kubernetes", ClusterIPs: ips("10.96.0.1"),
		Ports: []ServicePort{{Port: 443, Protocol: "TCP"}}}, t0)
	x.UpsertService(Service{Namespace: "shop", Name: "web", ClusterIPs: ips("10.96.0.10"),
		Ports: []ServicePort{{Port: 80, Protocol: "TCP"}}}, t0)
	x.UpsertService(Service{Namespace: "shop", Name: "web-np", ClusterIPs: ips("10.96.0.11"),
		Ports: []ServicePort{{Port: 80, NodePort: 30080, Protocol: "TCP"}}}, t0)
	x.SetAPIServer([]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:6443")})
	x.SetAPIServerEndpoints([]netip.AddrPort{netip.MustParseAddrPort("172.30.0.11:6443")})
	return x
}

func wl(kind, name string) *flow.Workload { return &flow.Workload{Kind: kind, Name: name} }

func svc(ns, name string) *flow.ServiceRef { return &flow.ServiceRef{Namespace: ns, Name: name} }

// resolve resolves addr with the given cgroup identity at time when and
// returns the endpoint with its address cleared, to compare only what
// Resolve fills.
func resolve(x *Index, addr, uid, cid string, when time.Time) flow.Endpoint {
	ap := netip.MustParseAddrPort(addr)
	// Stale values from an earlier resolution must be cleared.
	ep := flow.Endpoint{IP: ap.Addr(), Port: ap.Port(), Kind: "stale", Namespace: "stale", Pod: "stale",
		Container: "stale", Workload: wl("Stale", "stale"), Labels: map[string]string{"stale": "1"},
		NodeName: "stale", HostNetwork: true, Service: svc("stale", "stale")}
	x.Resolve(&ep, Hints{PodUID: uid, ContainerID: cid, At: when, Destination: true})
	ep.IP, ep.Port = netip.Addr{}, 0
	return ep
}

func TestResolvePrecedence(t *testing.T) {
	x := fixture(t)
	webPod := flow.Endpoint{Kind: flow.KindPod, Namespace: "shop", Pod: "web-7d9f-x1", NodeName: "node-a",
		Labels: map[string]string{"app": "web"}, Workload: wl("Deployment", "web")}
	withContainer := func(ep flow.Endpoint, c string) flow.Endpoint { ep.Container = c; return ep }
	agentPod := flow.Endpoint{Kind: flow.KindPod, Namespace: "kube-system", Pod: "agent-q8", NodeName: "node-a",
		Labels: map[string]string{"app": "agent"}, Workload: wl("DaemonSet", "agent"), HostNetwork: true}
	nodeA := flow.Endpoint{Kind: flow.KindNode, NodeName: "node-a"}
	nodeB := flow.Endpoint{Kind: flow.KindNode, NodeName: "node-b"}

	tests := []struct {
		name     string
		addr     string
		uid, cid string
		want     flow.Endpoint
	}{
		// 1. cgroup
		{"uid names pod and container", "10.244.1.10:8080", "u-web", hexMain, withContainer(webPod, "main")},
		{"uid with runtime-prefixed container id", "10.244.1.10:8080", "u-web", "containerd://" + hexSidecar, withContainer(webPod, "sidecar")},
		{"uid with unknown container", "10.244.1.10:8080", "u-web", "ffff", webPod},
		{"uid wins over address", "8.8.8.8:53", "u-web", "", webPod},
		{"uid wins over api server", "127.0.0.1:6443", "u-web", "", webPod},
		{"host-network pod by uid", "172.30.0.11:9100", "u-agent", hexAgent, withContainer(agentPod, "agent")},
		{"unknown uid falls back to address", "10.244.1.10:8080", "u-unknown", hexMain, webPod},
		// 2. API server
		{"agent's api server address", "127.0.0.1:6443", "", "", flow.Endpoint{Kind: flow.KindAPIServer}},
		{"kubernetes endpoint beats node", "172.30.0.11:6443", "", "", flow.Endpoint{Kind: flow.KindAPIServer}},
		{"kubernetes ClusterIP", "10.96.0.1:443", "", "", flow.Endpoint{Kind: flow.KindAPIServer, Service: svc("default", "kubernetes")}},
		{"api server address on another port", "127.0.0.1:6444", "", "", flow.Endpoint{Kind: flow.KindWorld}},
		{"kubernetes ClusterIP on a port it does not expose", "10.96.0.1:80", "", "",
			flow.Endpoint{Kind: flow.KindService, Namespace: "default", Service: svc("default", "kubernetes")}},
		// 3. Service
		{"ClusterIP", "10.96.0.10:80", "", "", flow.Endpoint{Kind: flow.KindService, Namespace: "shop", Service: svc("shop", "web")}},
		{"ClusterIP on any port", "10.96.0.10:81", "", "", flow.Endpoint{Kind: flow.KindService, Namespace: "shop", Service: svc("shop", "web")}},
		{"NodePort on a node", "172.30.0.12:30080", "", "",
			flow.Endpoint{Kind: flow.KindService, Namespace: "shop", Service: svc("shop", "web-np"), NodeName: "node-b"}},
		{"NodePort on a node's second address", "[fd00::12]:30080", "", "",
			flow.Endpoint{Kind: flow.KindService, Namespace: "shop", Service: svc("shop", "web-np"), NodeName: "node-b"}},
		{"NodePort number on a pod is the pod", "10.244.1.10:30080", "", "", webPod},
		{"NodePort number outside the cluster", "8.8.8.8:30080", "", "", flow.Endpoint{Kind: flow.KindWorld}},
		// 4. pod by address, with every workload shape
		{"pod via ReplicaSet to Deployment", "10.244.1.10:8080", "", "", webPod},
		{"IPv4-mapped address", "[::ffff:10.244.1.10]:8080", "", "", webPod},
		{"ReplicaSet without known owner", "10.244.1.11:80", "", "", flow.Endpoint{Kind: flow.KindPod, Namespace: "shop",
			Pod: "orphan-5c-x2", NodeName: "node-a", Workload: wl("ReplicaSet", "orphan-5c")}},
		{"StatefulSet", "10.244.2.20:5432", "", "", flow.Endpoint{Kind: flow.KindPod, Namespace: "shop",
			Pod: "db-0", NodeName: "node-b", Workload: wl("StatefulSet", "db")}},
		{"Job to CronJob", "10.244.2.21:80", "", "", flow.Endpoint{Kind: flow.KindPod, Namespace: "shop",
			Pod: "nightly-2904-zz", NodeName: "node-b", Workload: wl("CronJob", "nightly")}},
		{"Job without CronJob", "10.244.2.22:80", "", "", flow.Endpoint{Kind: flow.KindPod, Namespace: "shop",
			Pod: "once-yy", NodeName: "node-b", Workload: wl("Job", "once")}},
		{"bare pod", "10.244.2.23:80", "", "", flow.Endpoint{Kind: flow.KindPod, Namespace: "default",
			Pod: "debug", NodeName: "node-b", Workload: wl("Pod", "debug")}},
		{"bare pod by IPv6", "[fd00:10:244::23]:80", "", "", flow.Endpoint{Kind: flow.KindPod, Namespace: "default",
			Pod: "debug", NodeName: "node-b", Workload: wl("Pod", "debug")}},
		// 5. node
		{"node address", "172.30.0.12:22", "", "", nodeB},
		{"host-network pod by address is its node", "172.30.0.11:9100", "", "", nodeA},
		// 6. world
		{"world", "8.8.8.8:53", "", "", flow.Endpoint{Kind: flow.KindWorld}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(x, tt.addr, tt.uid, tt.cid, at(time.Second))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Resolve(%s, uid %q, container %q)\n got %+v\nwant %+v", tt.addr, tt.uid, tt.cid, got, tt.want)
			}
		})
	}
}

// TestResolveClaim: a cgroup names a pod only when the index can vouch for
// it; otherwise the address names the endpoint and the claim says why.
func TestResolveClaim(t *testing.T) {
	x := fixture(t)
	for _, tc := range []struct {
		name, addr, uid, cid string
		want                 Claim
		pod                  string
	}{
		{"no claim", "10.244.1.10:80", "", "", ClaimNone, "web-7d9f-x1"},
		{"listed container", "8.8.8.8:53", "u-web", hexMain, ClaimNamed, "web-7d9f-x1"},
		{"pod's own cgroup, no container", "8.8.8.8:53", "u-web", "", ClaimNamed, "web-7d9f-x1"},
		// Another pod's container id under this pod's cgroup (a nested
		// runtime, or a lie), and a pod whose statuses have not arrived.
		{"container of another pod", "8.8.8.8:53", "u-web", hexAgent, ClaimUnlistedContainer, ""},
		{"statuses not known yet", "8.8.8.8:53", "u-orphan", hexMain, ClaimUnlistedContainer, ""},
		{"unlisted container named by address", "10.244.1.11:80", "u-orphan", hexMain, ClaimUnlistedContainer, "orphan-5c-x2"},
		{"unknown pod", "8.8.8.8:53", "u-unknown", hexMain, ClaimUnknownPod, ""},
	} {
		ap := netip.MustParseAddrPort(tc.addr)
		ep := flow.Endpoint{IP: ap.Addr(), Port: ap.Port()}
		got := x.Resolve(&ep, Hints{PodUID: tc.uid, ContainerID: tc.cid, At: at(time.Second)})
		if got != tc.want || ep.Pod != tc.pod || got.Pending() != (tc.want == ClaimUnknownPod || tc.want == ClaimUnlistedContainer) {
			t.Errorf("%s: claim %v (pending %v), pod %q; want %v, pod %q", tc.name, got, got.Pending(), ep.Pod, tc.want, tc.pod)
		}
	}
	// The host-network pod's container, listed with a runtime prefix, names
	// it rather than its node.
	ep := flow.Endpoint{IP: ip("172.30.0.11"), Port: 9100}
	if got := x.Resolve(&ep, Hints{PodUID: "u-agent", ContainerID: "cri-o://" + hexAgent, At: at(time.Second)}); got != ClaimNamed || ep.Pod != "agent-q8" || ep.Container != "agent" {
		t.Errorf("host-network pod: claim %v, %+v", got, ep)
	}
}

func TestResolveCopiesLabels(t *testing.T) {
	x := fixture(t)
	ep := resolve(x, "10.244.1.10:80", "", "", at(time.Second))
	ep.Labels["app"] = "changed"
	if got := resolve(x, "10.244.1.10:80", "", "", at(time.Second)).Labels["app"]; got != "web" {
		t.Fatalf("a caller's change to Labels reached the index: app=%q", got)
	}
}

func TestResolveZeroTimeMeansNow(t *testing.T) {
	x := New(Config{})
	x.UpsertPod(Pod{UID: "a", Namespace: "ns", Name: "a", IPs: ips("10.244.1.10")}, at(0))
	x.DeletePod("a", at(10*time.Second))
	x.UpsertPod(Pod{UID: "b", Namespace: "ns", Name: "b", IPs: ips("10.244.1.10")}, at(11*time.Second))
	for _, tt := range []struct {
		now  time.Duration
		want string
	}{{5 * time.Second, "a"}, {12 * time.Second, "b"}} {
		x.now = func() time.Time { return at(tt.now) }
		if got := resolve(x, "10.244.1.10:80", "", "", time.Time{}).Pod; got != tt.want {
			t.Errorf("now=%v: pod %q, want %q", tt.now, got, tt.want)
		}
	}
}

// TestIPReuse is the case the time-awareness exists for: pod A holds
// 10.244.1.10 and is deleted at 10s, pod B gets the address at 10.4s, and
// records are resolved later by their connection's start.
func TestIPReuse(t *testing.T) {
	const grace = 2 * time.Minute
	x := New(Config{DeletedGrace: grace})
	a := Pod{UID: "uid-a", Namespace: "ns", Name: "a", IPs: ips("10.244.1.10"), NodeName: "node-a"}
	b := Pod{UID: "uid-b", Namespace: "ns", Name: "b", IPs: ips("10.244.1.10"), NodeName: "node-a"}
	x.UpsertPod(a, at(0))
	x.DeletePod("uid-a", at(10*time.Second))

	// Between A's deletion and B's arrival, nobody is known to hold it.
	if got := resolve(x, "10.244.1.10:80", "", "", at(10200*time.Millisecond)).Kind; got != flow.KindWorld {
		t.Errorf("before B is known, at=10.2s: kind %q, want world", got)
	}

	x.UpsertPod(b, at(10400*time.Millisecond))
	for _, tt := range []struct {
		at   time.Duration
		want string
	}{
		{0, "a"},
		{9 * time.Second, "a"},
		{9999 * time.Millisecond, "a"},
		{10 * time.Second, "b"}, // [from, to): A's interval ends at its deletion
		{10200 * time.Millisecond, "b"},
		{10400 * time.Millisecond, "b"},
		{11 * time.Second, "b"},
		{time.Hour, "b"},
	} {
		if got := resolve(x, "10.244.1.10:80", "", "", at(tt.at)).Pod; got != tt.want {
			t.Errorf("at=%v: pod %q, want %q", tt.at, got, tt.want)
		}
	}

	// A, deleted, still resolves by its cgroup's uid until its grace ends.
	byUID := func() string { return resolve(x, "192.0.2.1:80", "uid-a", "", at(11*time.Second)).Pod }
	x.Expire(at(10*time.Second + grace))
	if got := byUID(); got != "a" {
		t.Errorf("by uid at the end of grace: pod %q, want a", got)
	}
	if got := resolve(x, "10.244.1.10:80", "", "", at(9*time.Second)).Pod; got != "a" {
		t.Errorf("by address at the end of grace, at=9s: pod %q, want a", got)
	}
	if s := x.Stats(); s.Pods != 1 || s.DeletedPods != 1 {
		t.Errorf("stats at the end of grace: %+v", s)
	}
	x.Expire(at(10*time.Second + grace + time.Millisecond))
	if got := byUID(); got != "" {
		t.Errorf("by uid past grace: pod %q, want none", got)
	}
	// Past grace A's interval is gone too: the address has one holder left.
	if got := resolve(x, "10.244.1.10:80", "", "", at(9*time.Second)).Pod; got != "b" {
		t.Errorf("by address past grace, at=9s: pod %q, want b", got)
	}
	if s := x.Stats(); s.Pods != 1 || s.DeletedPods != 0 || s.Dropped != 0 {
		t.Errorf("stats past grace: %+v", s)
	}
}

func TestAddressLeavesPodByStatus(t *testing.T) {
	x := New(Config{})
	p := Pod{UID: "u", Namespace: "ns", Name: "job-x", IPs: ips("10.244.1.10")}
	x.UpsertPod(p, at(0))
	// An update that keeps the address keeps the interval open.
	p.Labels = map[string]string{"v": "2"}
	x.UpsertPod(p, at(5*time.Second))
	// Finished: the watcher passes no address.
	p.IPs = nil
	x.UpsertPod(p, at(20*time.Second))
	for _, tt := range []struct {
		at   time.Duration
		want flow.Kind
	}{{19 * time.Second, flow.KindPod}, {21 * time.Second, flow.KindWorld}} {
		if got := resolve(x, "10.244.1.10:80", "", "", at(tt.at)).Kind; got != tt.want {
			t.Errorf("at=%v: kind %q, want %q", tt.at, got, tt.want)
		}
	}
	// The pod itself still lives and resolves by uid.
	if got := resolve(x, "10.0.0.1:80", "u", "", at(21*time.Second)).Pod; got != "job-x" {
		t.Errorf("by uid: pod %q", got)
	}
}

// TestLaggingRelease: the new holder's claim arrives before the old
// holder's deletion, and the old holder's status still lists the address.
func TestLaggingRelease(t *testing.T) {
	x := New(Config{})
	a := Pod{UID: "uid-a", Namespace: "ns", Name: "a", IPs: ips("10.244.1.10")}
	x.UpsertPod(a, at(0))
	x.UpsertPod(Pod{UID: "uid-b", Namespace: "ns", Name: "b", IPs: ips("10.244.1.10")}, at(5*time.Second))
	a.Labels = map[string]string{"terminating": "yes"}
	x.UpsertPod(a, at(6*time.Second)) // stale status: must not take the address back
	x.DeletePod("uid-a", at(7*time.Second))
	for _, tt := range []struct {
		at   time.Duration
		want string
	}{{4 * time.Second, "a"}, {5 * time.Second, "b"}, {6 * time.Second, "b"}, {8 * time.Second, "b"}} {
		if got := resolve(x, "10.244.1.10:80", "", "", at(tt.at)).Pod; got != tt.want {
			t.Errorf("at=%v: pod %q, want %q", tt.at, got, tt.want)
		}
	}
}

func TestHistoryBound(t *testing.T) {
	x := New(Config{})
	const n = 20
	for i := range n {
		uid := fmt.Sprintf("u%d", i)
		x.UpsertPod(Pod{UID: uid, Namespace: "ns", Name: fmt.Sprintf("p%d", i), IPs: ips("10.244.1.10")}, at(time.Duration(i)*time.Second))
		x.DeletePod(uid, at(time.Duration(i)*time.Second+900*time.Millisecond))
	}
	if got := len(x.podIPs[ip("10.244.1.10")]); got != maxHolders {
		t.Fatalf("history holds %d holders, want %d", got, maxHolders)
	}
	first := n - maxHolders
	for _, tt := range []struct {
		at   time.Duration
		want string
	}{
		{0, fmt.Sprintf("p%d", first)}, // older holders are forgotten: the oldest kept answers
		{time.Duration(first)*time.Second + 500*time.Millisecond, fmt.Sprintf("p%d", first)},
		{time.Duration(first)*time.Second + 950*time.Millisecond, fmt.Sprintf("p%d", first+1)},
		{(n - 1) * time.Second, fmt.Sprintf("p%d", n-1)},
		{n * time.Second, ""},
	} {
		if got := resolve(x, "10.244.1.10:80", "", "", at(tt.at)).Pod; got != tt.want {
			t.Errorf("at=%v: pod %q, want %q", tt.at, got, tt.want)
		}
	}
	// All are deleted pods within grace; none are lost from the pod table.
	if s := x.Stats(); s.DeletedPods != n {
		t.Errorf("stats: %+v", s)
	}
}

func TestMaxPods(t *testing.T) {
	x := New(Config{MaxPods: 3})
	add := func(uid string, d time.Duration) {
		x.UpsertPod(Pod{UID: uid, Namespace: "ns", Name: uid, IPs: ips("10.244.9." + uid[1:])}, at(d))
	}
	add("p1", 0)
	add("p2", 0)
	x.DeletePod("p1", at(time.Second))
	x.DeletePod("p2", at(2*time.Second))
	add("p3", 3*time.Second)
	add("p4", 4*time.Second) // full: p1, the oldest deleted, goes
	if s := x.Stats(); s != (Stats{Pods: 2, PodAddrs: 2, DeletedPods: 1, Dropped: 1}) {
		t.Errorf("after p4: %+v", s)
	}
	if got := resolve(x, "10.244.9.1:80", "p1", "", at(500*time.Millisecond)).Kind; got != flow.KindWorld {
		t.Errorf("dropped p1 still resolves: kind %q", got)
	}
	if got := resolve(x, "10.244.9.2:80", "p2", "", at(500*time.Millisecond)).Pod; got != "p2" {
		t.Errorf("p2 within grace: pod %q", got)
	}
	add("p5", 5*time.Second) // p2 goes
	add("p6", 6*time.Second) // nothing deleted left: live pods are never dropped
	if s := x.Stats(); s != (Stats{Pods: 4, PodAddrs: 4, DeletedPods: 0, Dropped: 2}) {
		t.Errorf("after p6: %+v", s)
	}
	if got := len(x.podIPs); got != 4 {
		t.Errorf("dropped pods left %d addresses in history, want 4", got)
	}
}

func TestExpireServicesAndNodes(t *testing.T) {
	const grace = time.Minute
	x := New(Config{DeletedGrace: grace})
	x.UpsertNode(Node{Name: "n1", Addrs: ips("172.30.0.11")}, at(0))
	x.UpsertService(Service{Namespace: "ns", Name: "s", ClusterIPs: ips("10.96.0.10"),
		Ports: []ServicePort{{Port: 80, NodePort: 30080}}}, at(0))
	// The node port moves.
	x.UpsertService(Service{Namespace: "ns", Name: "s", ClusterIPs: ips("10.96.0.10"),
		Ports: []ServicePort{{Port: 80, NodePort: 30081}}}, at(5*time.Second))
	kind := func(addr string, d time.Duration) flow.Kind { return resolve(x, addr, "", "", at(d)).Kind }
	for _, tt := range []struct {
		addr string
		at   time.Duration
		want flow.Kind
	}{
		{"172.30.0.11:30080", 4 * time.Second, flow.KindService},
		{"172.30.0.11:30080", 6 * time.Second, flow.KindNode},
		{"172.30.0.11:30081", 6 * time.Second, flow.KindService},
	} {
		if got := kind(tt.addr, tt.at); got != tt.want {
			t.Errorf("%s at=%v: kind %q, want %q", tt.addr, tt.at, got, tt.want)
		}
	}

	x.DeleteService("ns", "s", at(10*time.Second))
	x.DeleteNode("n1", at(10*time.Second))
	if s := x.Stats(); s.Services != 0 || s.Nodes != 0 {
		t.Errorf("stats after deletes: %+v", s)
	}
	// Records of connections started before the deletions still name them
	// until grace ends; later ones never do.
	check := func(when string, want map[string]flow.Kind) {
		t.Helper()
		for addr, w := range want {
			if got := kind(addr, 9*time.Second); got != w {
				t.Errorf("%s: %s at=9s: kind %q, want %q", when, addr, got, w)
			}
			if got := kind(addr, 11*time.Second); got != flow.KindWorld {
				t.Errorf("%s: %s at=11s: kind %q, want world", when, addr, got)
			}
		}
	}
	x.Expire(at(10*time.Second + grace))
	check("within grace", map[string]flow.Kind{"10.96.0.10:80": flow.KindService, "172.30.0.11:22": flow.KindNode, "172.30.0.11:30081": flow.KindService})
	x.Expire(at(10*time.Second + grace + time.Nanosecond))
	check("past grace", map[string]flow.Kind{"10.96.0.10:80": flow.KindWorld, "172.30.0.11:22": flow.KindWorld, "172.30.0.11:30081": flow.KindWorld})
	if len(x.clusterIPs)+len(x.nodePorts)+len(x.nodeAddrs) != 0 {
		t.Errorf("histories not empty past grace: %v %v %v", x.clusterIPs, x.nodePorts, x.nodeAddrs)
	}
}

func TestOwnerOutlivesDeletionWhileReferenced(t *testing.T) {
	const grace = time.Minute
	x := New(Config{DeletedGrace: grace})
	x.UpsertOwner(Owner{Kind: "ReplicaSet", Namespace: "ns", Name: "web-1", Controller: &OwnerRef{"Deployment", "web"}})
	x.UpsertPod(Pod{UID: "u", Namespace: "ns", Name: "web-1-a", IPs: ips("10.244.1.10"), Controller: &OwnerRef{"ReplicaSet", "web-1"}}, at(0))
	x.DeletePod("u", at(time.Second))
	x.DeleteOwner("ReplicaSet", "ns", "web-1") // a rollout cleans up the old ReplicaSet after its pods
	if got := resolve(x, "10.244.1.10:80", "", "", at(0)).Workload; !reflect.DeepEqual(got, wl("Deployment", "web")) {
		t.Errorf("workload after the ReplicaSet's deletion: %+v", got)
	}
	if s := x.Stats(); s.Owners != 0 {
		t.Errorf("a deleted owner is still counted: %+v", s)
	}
	x.Expire(at(time.Second + grace + time.Nanosecond))
	if len(x.owners) != 0 {
		t.Errorf("owner kept after its last pod expired: %v", x.owners)
	}

	// An owner only referenced, never fed, goes with its pod too.
	x.UpsertPod(Pod{UID: "v", Namespace: "ns", Name: "v", Controller: &OwnerRef{"ReplicaSet", "gone"}}, at(2*time.Minute))
	x.DeletePod("v", at(2*time.Minute))
	x.Expire(at(4 * time.Minute))
	if len(x.owners) != 0 {
		t.Errorf("unfed owner kept: %v", x.owners)
	}
}

func TestOwnerCycleTerminates(t *testing.T) {
	x := New(Config{})
	x.UpsertOwner(Owner{Kind: "A", Namespace: "ns", Name: "a", Controller: &OwnerRef{"B", "b"}})
	x.UpsertOwner(Owner{Kind: "B", Namespace: "ns", Name: "b", Controller: &OwnerRef{"A", "a"}})
	x.UpsertPod(Pod{UID: "u", Namespace: "ns", Name: "p", IPs: ips("10.244.1.10"), Controller: &OwnerRef{"A", "a"}}, at(0))
	if got := resolve(x, "10.244.1.10:80", "", "", at(0)).Workload; got == nil {
		t.Fatal("no workload")
	}
}

func TestStats(t *testing.T) {
	x := fixture(t)
	x.DeletePod("u-db", at(time.Second))
	want := Stats{Pods: 6, PodAddrs: 6, DeletedPods: 1, Services: 3, Nodes: 2, Owners: 3} // u-bare has two addresses, u-agent none of its own
	if got := x.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

// TestConcurrentUse is for the race detector: writers and readers at once.
func TestConcurrentUse(t *testing.T) {
	x := fixture(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				d := time.Duration(i) * time.Millisecond
				uid := fmt.Sprintf("w%d-%d", w, i)
				x.UpsertPod(Pod{UID: uid, Namespace: "ns", Name: uid, IPs: ips(fmt.Sprintf("10.250.%d.%d", w, i%250))}, at(d))
				x.DeletePod(uid, at(d+time.Millisecond))
				x.Expire(at(d))
			}
		})
		wg.Go(func() {
			for i := range 500 {
				resolve(x, fmt.Sprintf("10.250.%d.%d:80", w, i%250), "", "", at(time.Duration(i)*time.Millisecond))
				x.Stats()
			}
		})
	}
	wg.Wait()
}

// Service rules apply to destinations only: a node's ephemeral source port
// may equal a node port, and a ClusterIP is never a source.
func TestServiceRulesOnlyForDestinations(t *testing.T) {
	x := fixture(t)
	for _, tc := range []struct {
		addr string
		dst  bool
		want flow.Kind
	}{
		{"172.30.0.12:30080", true, flow.KindService},
		{"172.30.0.12:30080", false, flow.KindNode},
		{"10.96.0.10:80", true, flow.KindService},
		{"10.96.0.10:80", false, flow.KindWorld},
	} {
		ap := netip.MustParseAddrPort(tc.addr)
		ep := flow.Endpoint{IP: ap.Addr(), Port: ap.Port()}
		x.Resolve(&ep, Hints{At: t0, Destination: tc.dst})
		if ep.Kind != tc.want || (tc.want != flow.KindService) != (ep.Service == nil) {
			t.Errorf("%s as destination=%v: kind %q service %+v, want %q", tc.addr, tc.dst, ep.Kind, ep.Service, tc.want)
		}
	}
}

// In a pod the agent reaches the API server at the kubernetes Service's
// ClusterIP: that is the API server, and the Service is named as it is for
// everyone else.
func TestInClusterAPIServerKeepsItsService(t *testing.T) {
	x := fixture(t)
	x.SetAPIServer([]netip.AddrPort{netip.MustParseAddrPort("10.96.0.1:443")})
	ep := flow.Endpoint{IP: netip.MustParseAddr("10.96.0.1"), Port: 443}
	x.Resolve(&ep, Hints{At: t0, Destination: true})
	if ep.Kind != flow.KindAPIServer || ep.Service == nil || *ep.Service != (flow.ServiceRef{Namespace: "default", Name: "kubernetes"}) {
		t.Errorf("in-cluster API server: %+v", ep)
	}
}
