package k8smeta

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/identity"
	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/test/e2e/cluster"
)

const probe = 500 * time.Millisecond

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a real etcd and kube-apiserver through the e2e harness (test/e2e/cluster); CI runs it as root")
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// startWatcher starts a watcher on kubeconfig, stopped at cleanup.
func startWatcher(t *testing.T, kubeconfig string) (*Watcher, *identity.Index) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	idx := identity.New(identity.Config{})
	w, err := Start(ctx, Config{Kubeconfig: kubeconfig, ProbeInterval: probe}, idx, testLogger(t))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return w, idx
}

func waitForSync(t *testing.T, w *Watcher, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	if err := w.WaitForSync(ctx); err != nil {
		t.Fatalf("WaitForSync: %v (status %+v)", err, w.Status())
	}
	t.Logf("synced in %v", time.Since(start).Round(time.Millisecond))
}

// runPod creates a pod on node and writes the status a kubelet would:
// Running, with ip as its address and a container id per container.
func runPod(t *testing.T, c kubernetes.Interface, pod *corev1.Pod, node string, ip netip.Addr, hostNetwork bool, containerID string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	pod.Spec.NodeName, pod.Spec.HostNetwork = node, hostNetwork
	created, err := c.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.PodIP = ip.String()
	created.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	created.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: created.Spec.Containers[0].Name, Image: created.Spec.Containers[0].Image, ImageID: created.Spec.Containers[0].Image,
		ContainerID: "containerd://" + containerID, Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
	}}
	updated, err := c.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("pod %s/%s status: %v", pod.Namespace, pod.Name, err)
	}
	return updated
}

func createNode(t *testing.T, c kubernetes.Interface, name string, ip netip.Addr) {
	t.Helper()
	ctx := context.Background()
	n, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip.String()}, {Type: corev1.NodeHostName, Address: name}}
	if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("node %s status: %v", name, err)
	}
}

// resolve resolves addr as the agent would for a record that started at
// when, returning only what Resolve fills.
// awaited is nil when ok, else an error saying what is still awaited.
func awaited(ok bool, what string) error {
	if ok {
		return nil
	}
	return errors.New("not yet: " + what)
}

func resolve(idx *identity.Index, addr, uid, cid string, when time.Time) flow.Endpoint {
	ap := netip.MustParseAddrPort(addr)
	ep := flow.Endpoint{IP: ap.Addr(), Port: ap.Port()}
	idx.Resolve(&ep, identity.Hints{PodUID: uid, ContainerID: cid, At: when, Destination: true})
	ep.IP, ep.Port = netip.Addr{}, 0
	return ep
}

func hex64(b byte) string { return strings.Repeat(fmt.Sprintf("%02x", b), 32) }

// TestWatcher runs the watcher against a real API server: every kind of
// name it resolves, then the API server going away (stale, cache still
// answering) and coming back (fresh, new objects arrive).
func TestWatcher(t *testing.T) {
	requireRoot(t)
	cp := cluster.StartControlPlane(t)
	c := cp.Client
	ctx := context.Background()

	ns := cluster.CreateNamespace(t, c, "k8smeta")
	_, rs := cluster.CreateDeployment(t, c, ns, "web", map[string]string{"app": "web"})
	_, job := cluster.CreateCronJob(t, c, ns, "nightly", map[string]string{"app": "nightly"})
	ds := cluster.CreateDaemonSet(t, c, ns, "agent", map[string]string{"app": "agent"})
	createNode(t, c, "node-a", netip.MustParseAddr("172.30.0.11"))

	web := runPod(t, c, cluster.PodObject(ns, "web-x1", nil, rs), "node-a", netip.MustParseAddr("10.244.1.10"), false, hex64(1))
	nightly := runPod(t, c, cluster.PodObject(ns, "nightly-x1", nil, job), "node-a", netip.MustParseAddr("10.244.1.11"), false, hex64(2))
	agent := runPod(t, c, cluster.PodObject(ns, "agent-x1", nil, ds), "node-a", netip.MustParseAddr("172.30.0.11"), true, hex64(3))
	cluster.CreateService(t, c, ns, "web", netip.MustParseAddr("10.96.0.10"), map[string]string{"app": "web"},
		corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP})
	np := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-np"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	}
	np, err := c.CoreV1().Services(ns).Create(ctx, np, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create NodePort service: %v", err)
	}
	// The harness runs no endpoint reconciler; write what it would have.
	port, yes := int32(6443), true
	proto, portName := corev1.ProtocolTCP, "https"
	_, err = c.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "kubernetes", Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"172.30.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create kubernetes endpointslice: %v", err)
	}
	kubeSvc, err := c.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the API server should create Service default/kubernetes: %v", err)
	}
	u, err := url.Parse(cp.URL)
	if err != nil {
		t.Fatal(err)
	}

	w, idx := startWatcher(t, cp.Kubeconfig)
	waitForSync(t, w, 30*time.Second)

	now := time.Now()
	webLabels := maps.Clone(web.Labels)
	webPod := flow.Endpoint{Kind: flow.KindPod, Namespace: ns, Pod: "web-x1", NodeName: "node-a",
		Labels: webLabels, Workload: &flow.Workload{Kind: "Deployment", Name: "web"}}
	webMain := webPod
	webMain.Container = "main"
	svcRef := func(ns, name string) *flow.ServiceRef { return &flow.ServiceRef{Namespace: ns, Name: name} }
	cases := []struct {
		name     string
		addr     string
		uid, cid string
		want     flow.Endpoint
	}{
		{"pod by address, Deployment via ReplicaSet", "10.244.1.10:8080", "", "", webPod},
		{"pod and container by cgroup", "10.244.1.10:8080", string(web.UID), hex64(1), webMain},
		{"Job pod names its CronJob", "10.244.1.11:80", "", "", flow.Endpoint{Kind: flow.KindPod, Namespace: ns, Pod: "nightly-x1",
			NodeName: "node-a", Labels: nightly.Labels, Workload: &flow.Workload{Kind: "CronJob", Name: "nightly"}}},
		{"host-network pod by cgroup", "172.30.0.11:9100", string(agent.UID), hex64(3), flow.Endpoint{Kind: flow.KindPod, Namespace: ns,
			Pod: "agent-x1", Container: "main", NodeName: "node-a", HostNetwork: true, Labels: agent.Labels,
			Workload: &flow.Workload{Kind: "DaemonSet", Name: "agent"}}},
		{"host-network pod by address is its node", "172.30.0.11:9100", "", "", flow.Endpoint{Kind: flow.KindNode, NodeName: "node-a"}},
		{"ClusterIP", "10.96.0.10:80", "", "", flow.Endpoint{Kind: flow.KindService, Namespace: ns, Service: svcRef(ns, "web")}},
		{"NodePort", "172.30.0.11:30080", "", "", flow.Endpoint{Kind: flow.KindService, Namespace: ns, Service: svcRef(ns, "web-np"), NodeName: "node-a"}},
		{"NodePort Service's ClusterIP", np.Spec.ClusterIP + ":80", "", "", flow.Endpoint{Kind: flow.KindService, Namespace: ns, Service: svcRef(ns, "web-np")}},
		{"API server as the agent reaches it", u.Host, "", "", flow.Endpoint{Kind: flow.KindAPIServer}},
		{"API server by kubernetes ClusterIP", kubeSvc.Spec.ClusterIP + ":443", "", "", flow.Endpoint{Kind: flow.KindAPIServer, Service: svcRef("default", "kubernetes")}},
		{"API server by kubernetes endpoint", "172.30.0.5:6443", "", "", flow.Endpoint{Kind: flow.KindAPIServer}},
		{"world", "8.8.8.8:53", "", "", flow.Endpoint{Kind: flow.KindWorld}},
	}
	check := func(when string) {
		t.Helper()
		for _, tt := range cases {
			if got := resolve(idx, tt.addr, tt.uid, tt.cid, now); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s: %s: Resolve(%s)\n got %+v\nwant %+v", when, tt.name, tt.addr, got, tt.want)
			}
		}
	}
	check("synced")
	st := w.Status()
	if !st.Synced || st.Stale || st.Events == 0 {
		t.Errorf("status after sync: %+v", st)
	}
	is := idx.Stats()
	// The namespace holds 3 pods; ReplicaSet and Job are the owners.
	if is.Pods != 3 || is.Nodes != 1 || is.Owners != 2 || is.Services != 3 {
		t.Errorf("index after sync: %+v", is)
	}

	// The API server goes away: stale (it fails /readyz at once, then
	// drains), and the cache keeps answering.
	staleAt := make(chan time.Time, 1)
	go func() {
		for !w.Status().Stale {
			time.Sleep(5 * time.Millisecond)
		}
		staleAt <- time.Now()
	}()
	stopping := time.Now()
	if err := cp.Stop(); err != nil {
		t.Fatalf("stop API server: %v", err)
	}
	t.Logf("API server exited %v after SIGTERM", time.Since(stopping).Round(time.Millisecond))
	// How long it took is logged, not asserted: this machine is shared.
	var staleSeen time.Time
	select {
	case staleSeen = <-staleAt:
		t.Logf("stale %v after SIGTERM (probe every %v)", staleSeen.Sub(stopping).Round(time.Millisecond), probe)
	case <-time.After(30 * time.Second):
		t.Fatal("not stale 30 s after the API server exited")
	}
	// StaleSince is the last answer, which came before staleness was seen.
	st = w.Status()
	if st.StaleSince.IsZero() || st.StaleSince.After(staleSeen) {
		t.Errorf("StaleSince %v, stale seen at %v", st.StaleSince, staleSeen)
	}
	check("stale")

	// It comes back: fresh again, and objects created since arrive.
	if err := cp.Start(); err != nil {
		t.Fatalf("restart API server: %v", err)
	}
	restarted := time.Now()
	testutil.Eventually(t, 30*time.Second, func() error { return awaited(!w.Status().Stale, "fresh after the API server restarted") })
	took := time.Since(restarted)
	t.Logf("fresh %v after the API server was ready", took.Round(time.Millisecond))
	if st := w.Status(); !st.StaleSince.IsZero() {
		t.Errorf("StaleSince set while fresh: %+v", st)
	}
	created := time.Now()
	web2 := runPod(t, c, cluster.PodObject(ns, "web-x2", nil, rs), "node-a", netip.MustParseAddr("10.244.1.12"), false, hex64(4))
	testutil.Eventually(t, 60*time.Second, func() error {
		return awaited(resolve(idx, "10.244.1.12:8080", "", "", time.Now()).Pod == "web-x2", "pod created after the restart resolves")
	})
	took = time.Since(created)
	t.Logf("pod created after restart resolved after %v (reflector backoff)", took.Round(time.Millisecond))
	want := flow.Endpoint{Kind: flow.KindPod, Namespace: ns, Pod: "web-x2", Container: "main", NodeName: "node-a",
		Labels: web2.Labels, Workload: &flow.Workload{Kind: "Deployment", Name: "web"}}
	if got := resolve(idx, "10.244.1.12:8080", string(web2.UID), hex64(4), created); !reflect.DeepEqual(got, want) {
		t.Errorf("pod created after restart\n got %+v\nwant %+v", got, want)
	}

	// A deletion through the real watch: connections that started before
	// it still name the pod, later ones do not.
	zero := int64(0)
	if err := c.CoreV1().Pods(ns).Delete(ctx, "web-x1", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatalf("delete pod: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() error { return awaited(idx.Stats().DeletedPods == 1, "deletion seen") })
	if got := resolve(idx, "10.244.1.10:8080", "", "", now); !reflect.DeepEqual(got, webPod) {
		t.Errorf("deleted pod, connection started before\n got %+v\nwant %+v", got, webPod)
	}
	if got := resolve(idx, "10.244.1.10:8080", "", "", time.Now()).Kind; got != flow.KindWorld {
		t.Errorf("deleted pod's address now: kind %q, want world", got)
	}
	if got := resolve(idx, "10.244.1.10:8080", string(web.UID), hex64(1), time.Now()); !reflect.DeepEqual(got, webMain) {
		t.Errorf("deleted pod by cgroup within grace\n got %+v\nwant %+v", got, webMain)
	}
}

// TestWatcherRBAC runs the watcher as the service account of
// deploy/rbac.yaml: refused before the file is applied (counted as watch
// errors, never synced), then synced with exactly those permissions, which
// are read-only.
func TestWatcherRBAC(t *testing.T) {
	requireRoot(t)
	cp := cluster.StartControlPlane(t)
	ns := cluster.CreateNamespace(t, cp.Client, "rbac")
	createNode(t, cp.Client, "node-a", netip.MustParseAddr("172.30.0.11"))
	runPod(t, cp.Client, cluster.PodObject(ns, "bare", nil, nil), "node-a", netip.MustParseAddr("10.244.1.10"), false, hex64(1))

	kubeconfig := cp.UserKubeconfig(t, "system:serviceaccount:flowlens:flowlens")
	w, idx := startWatcher(t, kubeconfig)
	testutil.Eventually(t, 10*time.Second, func() error {
		return awaited(w.Status().WatchErrors > 0, "forbidden lists counted as watch errors")
	})
	// Not synced, but not stale: /readyz answers any authenticated identity.
	if st := w.Status(); st.Synced || st.Stale {
		t.Errorf("status before RBAC: %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), probe)
	if err := w.WaitForSync(ctx); err == nil {
		t.Error("WaitForSync succeeded without permissions")
	}
	cancel()

	if out, err := cp.Kubectl("apply", "-f", "../../deploy/rbac.yaml").CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply deploy/rbac.yaml: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "pods", "-A"}, "yes"},
		{[]string{"watch", "pods", "-A"}, "yes"},
		{[]string{"list", "services", "-A"}, "yes"},
		{[]string{"watch", "nodes"}, "yes"},
		{[]string{"watch", "replicasets.apps", "-A"}, "yes"},
		{[]string{"watch", "jobs.batch", "-A"}, "yes"},
		{[]string{"watch", "endpointslices.discovery.k8s.io", "-n", "default"}, "yes"},
		{[]string{"list", "endpointslices.discovery.k8s.io", "-n", "kube-system"}, "no"},
		{[]string{"get", "pods", "-n", "default"}, "no"},
		{[]string{"create", "pods", "-n", "default"}, "no"},
		{[]string{"delete", "pods", "-n", "default"}, "no"},
		{[]string{"get", "secrets", "-n", "default"}, "no"},
		{[]string{"list", "secrets", "-A"}, "no"},
		{[]string{"list", "configmaps", "-A"}, "no"},
	} {
		// can-i exits 1 for "no"; the answer is on stdout either way.
		out, _ := cp.Kubectl(append([]string{"--kubeconfig", kubeconfig, "auth", "can-i"}, tt.args...)...).Output()
		if got := strings.TrimSpace(string(out)); got != tt.want {
			t.Errorf("can-i %s: %q, want %q", strings.Join(tt.args, " "), got, tt.want)
		}
	}

	// The informers retry on their own and sync once allowed.
	waitForSync(t, w, 60*time.Second)
	errs := w.Status().WatchErrors
	time.Sleep(3 * probe)
	if st := w.Status(); !st.Synced || st.Stale || st.WatchErrors != errs {
		t.Errorf("status as the service account after RBAC: %+v (watch errors were %d)", st, errs)
	}
	want := flow.Endpoint{Kind: flow.KindPod, Namespace: ns, Pod: "bare", NodeName: "node-a", Workload: &flow.Workload{Kind: "Pod", Name: "bare"}}
	if got := resolve(idx, "10.244.1.10:80", "", "", time.Now()); !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %+v\nwant %+v", got, want)
	}
	if got := resolve(idx, "172.30.0.11:22", "", "", time.Now()).Kind; got != flow.KindNode {
		t.Errorf("node: kind %q", got)
	}
}
