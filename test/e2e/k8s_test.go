package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/test/e2e/cluster"
	"github.com/flowlens/flowlens/test/peer/result"
)

// These tests run a real etcd and kube-apiserver, simulated nodes and pods
// (network namespaces in kubelet-shaped cgroups, ClusterIPs DNAT-ed as
// kube-proxy does), and a flowlens that knows the cluster only through the
// API server, with the shipped RBAC and nothing more.
//
// Addresses: pods in 10.247.0.0/16 and ClusterIPs in 10.96.7.0/24, used by no
// other test, because every agent on the host sees every namespace. Records
// are selected by the side named through its cgroup (a pod of this test),
// never by address alone.

// kubeCluster is one test's cluster with its own flowlens.
type kubeCluster struct {
	cp       *cluster.ControlPlane
	net      *cluster.Network
	a, b     *cluster.Node
	flowlens api
	// kubeconfig has the shipped RBAC's service account, nothing more.
	kubeconfig string
}

// newKubeCluster starts the cluster and a flowlens with the given extra flags.
func newKubeCluster(t *testing.T, flags ...string) *kubeCluster {
	t.Helper()
	k := startCluster(t, false)
	// The harness nests kubelet's tree under a test directory, as a kubelet
	// started with --cgroup-root would.
	cmd, addr, err := startAgent(append([]string{"--kubeconfig", k.kubeconfig, "--kubelet-cgroup-root", k.net.KubeletCgroupRoot()}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("flowlens up (kubernetes) exited: %v", err)
		}
	})
	k.flowlens = api(addr)
	return k
}

// startCluster starts an API server and two nodes, node-a and node-b;
// separate gives each node its own kubelet cgroup root, so an agent can be
// scoped to one node's pods.
func startCluster(t *testing.T, separate bool) *kubeCluster {
	t.Helper()
	testutil.RequirePrivileged(t)
	cp := cluster.StartControlPlane(t)
	n := cluster.NewNetwork(t)
	if separate {
		n.SeparateNodeCgroups()
	}
	k := &kubeCluster{cp: cp, net: n,
		a: n.AddNode("node-a", netip.MustParsePrefix("10.247.1.0/24")),
		b: n.AddNode("node-b", netip.MustParsePrefix("10.247.2.0/24")),
	}
	cluster.CreateNodeObject(t, cp.Client, k.a)
	cluster.CreateNodeObject(t, cp.Client, k.b)

	// The agent gets only what deploy/rbac.yaml grants its service account.
	_, self, _, _ := runtime.Caller(0)
	rbac := filepath.Join(filepath.Dir(self), "..", "..", "deploy", "rbac.yaml")
	if out, err := cp.Kubectl("apply", "-f", rbac).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply %s: %v\n%s", rbac, err, out)
	}
	k.kubeconfig = cp.ServiceAccountKubeconfig(t, "flowlens", "flowlens")
	return k
}

// apiService is Deployment "api" with one replica per node, each serving
// on 8080, behind a round-robin ClusterIP Service "api" on port 80.
type apiService struct {
	pods    [2]*cluster.Pod
	servers [2]*testutil.Process
}

// runAPIService starts it in namespace ns; the second replica's cgroup
// follows opts (e.g. the systemd driver).
func (k *kubeCluster) runAPIService(t *testing.T, ns string, vip netip.Addr, opts cluster.PodOptions) apiService {
	t.Helper()
	c := k.cp.Client
	_, rs := cluster.CreateDeployment(t, c, ns, "api", map[string]string{"app": "api"})
	var a apiService
	a.pods[0] = k.a.RunPod(t, c, cluster.PodObject(ns, rs.Name+"-a1b2c", map[string]string{"app": "api"}, rs),
		netip.MustParseAddr("10.247.1.21"), cluster.PodOptions{})
	a.pods[1] = k.b.RunPod(t, c, cluster.PodObject(ns, rs.Name+"-d3e4f", map[string]string{"app": "api"}, rs),
		netip.MustParseAddr("10.247.2.22"), opts)
	k.net.RunService(t, c, cluster.ServiceSpec{Namespace: ns, Name: "api", ClusterIP: vip, Port: 80, TargetPort: 8080,
		Mode: cluster.RoundRobin, Backends: a.pods[:], Selector: map[string]string{"app": "api"}})
	for i, p := range a.pods {
		a.servers[i] = serve(t, p, "0.0.0.0:8080")
	}
	return a
}

// stop stops both servers and returns the connections each accepted, by pod name.
func (a apiService) stop(t *testing.T) map[string]uint32 {
	t.Helper()
	m := map[string]uint32{}
	for i, s := range a.servers {
		m[a.pods[i].Name] = uint32(stopServer(t, s).Connections)
	}
	return m
}

// waitKnown waits until the agent's identity index holds exactly these
// live pods, pod addresses and Services (default/kubernetes included), as
// its metrics show an operator: names are given when records are flushed,
// and a watch that lags behind the test on a loaded machine would name
// nothing. Each test has its own API server and agent, so counts are exact.
func (k *kubeCluster) waitKnown(t *testing.T, pods, podAddrs, services int) {
	t.Helper()
	waitKnownAt(t, string(k.flowlens), pods, podAddrs, services)
}

// waitKnownAt waits for the flowlens whose metrics are at addr.
func waitKnownAt(t *testing.T, addr string, pods, podAddrs, services int) {
	t.Helper()
	want := map[string]float64{"pod": float64(pods), "pod_address": float64(podAddrs), "service": float64(services)}
	testutil.Eventually(t, 30*time.Second, func() error {
		m := api(addr).metrics(t)
		for kind, n := range want {
			if got := m[`flowlens_identity_objects{kind="`+kind+`"}`]; got != n {
				return fmt.Errorf("flowlens knows %v %s objects, want %v", got, kind, n)
			}
		}
		return nil
	})
}

// metrics scrapes the agent's /metrics.
func (k *kubeCluster) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	return k.flowlens.metrics(t)
}

// serve runs `peer tcp-serve` in a pod and waits until it listens.
func serve(t *testing.T, p *cluster.Pod, listen string) *testutil.Process {
	t.Helper()
	s := testutil.Start(t, p.Command(peerBin, "tcp-serve", "-listen", listen, "-reply", "100", "-duration", "5m"))
	var ready struct{ Ready bool }
	s.ReadJSON(t, &ready)
	if !ready.Ready {
		t.Fatalf("server in %s/%s did not become ready", p.Namespace, p.Name)
	}
	return s
}

// connect makes exactly n connections from a pod and returns what it did.
func connect(t *testing.T, p *cluster.Pod, addr string, n int) result.Connect {
	t.Helper()
	var res result.Connect
	testutil.Output(t, p.Command(peerBin, "tcp-connect", "-addr", addr, "-count", strconv.Itoa(n), "-bytes", "1000", "-duration", "2m"), &res)
	if res.OK != int64(n) {
		t.Fatalf("%s/%s -> %s: %+v, want %d connections", p.Namespace, p.Name, addr, res, n)
	}
	return res
}

func stopServer(t *testing.T, s *testutil.Process) result.Serve {
	t.Helper()
	var res result.Serve
	s.Stop(t, &res)
	return res
}

// openedBy sums connections_opened per destination pod name.
func openedBy(recs []flow.Record, key func(*flow.Record) string) map[string]uint32 {
	m := map[string]uint32{}
	for i := range recs {
		m[key(&recs[i])] += recs[i].Opened
	}
	return m
}

func dstPod(r *flow.Record) string { return r.Destination.Pod }
func srcPod(r *flow.Record) string { return r.Source.Pod }

func q(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

func opened(n int) func(totals) bool {
	return func(s totals) bool { return s.opened >= uint32(n) && s.closed >= uint32(n) }
}

// Test 1: a client Deployment calls a Service in front of a two-replica
// Deployment on two nodes, and a third Deployment by pod IP. Every record is
// named: source deploy/client, destination svc/api and the backend each
// connection landed on, with exact counts per backend on both sides.
func TestKubernetesServiceBackends(t *testing.T) {
	k := newKubeCluster(t)
	c := k.cp.Client
	shop := cluster.CreateNamespace(t, c, "shop")
	backend := cluster.CreateNamespace(t, c, "backend")
	_, clientRS := cluster.CreateDeployment(t, c, shop, "client", map[string]string{"app": "client"})
	_, dbRS := cluster.CreateDeployment(t, c, backend, "db", map[string]string{"app": "db"})
	client := k.a.RunPod(t, c, cluster.PodObject(shop, clientRS.Name+"-x7k2p", map[string]string{"app": "client"}, clientRS),
		netip.MustParseAddr("10.247.1.10"), cluster.PodOptions{})
	db := k.b.RunPod(t, c, cluster.PodObject(backend, dbRS.Name+"-g5h6i", map[string]string{"app": "db"}, dbRS),
		netip.MustParseAddr("10.247.2.30"), cluster.PodOptions{})
	sdb := serve(t, db, "0.0.0.0:5432")
	// The second replica runs under kubelet's systemd driver.
	vip := netip.MustParseAddr("10.96.7.50")
	api := k.runAPIService(t, backend, vip, cluster.PodOptions{CgroupDriver: cluster.Systemd})
	api1, api2 := api.pods[0], api.pods[1]
	k.waitKnown(t, 4, 4, 2)

	const viaService, direct = 20, 5
	connect(t, client, "10.96.7.50:80", viaService)
	connect(t, client, "10.247.2.30:5432", direct)
	want, rdb := api.stop(t), stopServer(t, sdb)
	if want[api1.Name]+want[api2.Name] != viaService || want[api1.Name] == 0 || want[api2.Name] == 0 || rdb.Connections != direct {
		t.Fatalf("traffic itself was not as planned: backends %v, db %d", want, rdb.Connections)
	}

	// Client side: the socket knows only the ClusterIP; the backend comes
	// from the join with the server side.
	crecs := k.flowlens.settled(t, q("observer", "client", "from-pod", shop+"/"+client.Name, "to-service", backend+"/api"), opened(viaService))
	if got := openedBy(crecs, dstPod); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("client side: connections per backend %v, want %v", got, want)
	}
	nodeOf := map[string]string{api1.Name: "node-a", api2.Name: "node-b"}
	for _, r := range crecs {
		s, d := r.Source, r.Destination
		if s.Kind != flow.KindPod || s.Namespace != shop || s.Workload == nil || *s.Workload != (flow.Workload{Kind: "Deployment", Name: "client"}) ||
			s.Labels["app"] != "client" || s.Container != "main" || s.ContainerID != client.ContainerID || s.NodeName != "node-a" {
			t.Errorf("client record source %+v", s)
		}
		if d.IP != vip || d.Port != 80 || d.Service == nil || *d.Service != (flow.ServiceRef{Namespace: backend, Name: "api"}) ||
			d.Kind != flow.KindPod || d.Workload == nil || d.Workload.Name != "api" || d.NodeName != nodeOf[d.Pod] {
			t.Errorf("client record destination %+v", d)
		}
	}

	// Server side: each backend names itself through its cgroup, and the
	// client by its pod IP.
	for _, be := range []*cluster.Pod{api1, api2} {
		srecs := k.flowlens.settled(t, q("observer", "server", "to-pod", backend+"/"+be.Name), opened(int(want[be.Name])))
		if got := openedBy(srecs, srcPod); fmt.Sprint(got) != fmt.Sprint(map[string]uint32{client.Name: want[be.Name]}) {
			t.Errorf("server side of %s: connections per client %v, want %d from %s", be.Name, got, want[be.Name], client.Name)
		}
		for _, r := range srecs {
			if d := r.Destination; d.ContainerID != be.ContainerID || d.Workload == nil || d.Workload.Name != "api" || d.Port != 8080 {
				t.Errorf("server record destination %+v", d)
			}
			if s := r.Source; s.Workload == nil || s.Workload.Name != "client" || s.Namespace != shop {
				t.Errorf("server record source %+v", s)
			}
		}
	}

	// By pod IP, with no Service in between.
	drecs := k.flowlens.settled(t, q("observer", "client", "from-pod", shop+"/"+client.Name, "to-workload", backend+"/deploy/db"), opened(direct))
	if s := sum(drecs); s.opened != direct || s.bytesToDst != direct*1000 {
		t.Errorf("client -> db: %+v, want %d connections of 1000 bytes", s, direct)
	}
	for _, r := range drecs {
		if r.Destination.Service != nil || r.Destination.Pod != db.Name {
			t.Errorf("client -> db destination %+v", r.Destination)
		}
	}

	// What an operator reads.
	out, err := exec.Command(flowlensBin, "observe", "--server", string(k.flowlens), "--last", "1",
		"--from-pod", shop+"/"+client.Name, "--to-pod", backend+"/"+api1.Name, "--to-service", "api").CombinedOutput()
	if err != nil {
		t.Fatalf("flowlens observe: %v\n%s", err, out)
	}
	line := string(out)
	for _, want := range []string{
		"[client] " + shop + "/" + client.Name + ":", "(deploy/client peer ",
		"-> " + backend + "/api:80 (svc/api → pod " + api1.Name + ")", " tcp ",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("observe printed %q, want it to contain %q", line, want)
		}
	}
}

// Test 2: a pod is deleted and a pod of another workload gets its IP a
// moment later. Connections before and after are each attributed to the
// pod that held the address when they began, on both sides.
//
// The case this exists for is a record of the old pod named after the new
// pod holds its address: only the connection's start can tell them apart.
// Short connections are usually flushed (and so named) late like that with
// a 3 s interval, but not always; one connection is made certain to be: it
// is opened to the old pod, its client is stopped, the old pod is deleted
// and the new one known, and only then is the client killed, so the record
// of its close is named after both.
func TestKubernetesPodIPReuse(t *testing.T) {
	k := newKubeCluster(t, "--interval", "3s")
	c := k.cp.Client
	ns := cluster.CreateNamespace(t, c, "churn")
	_, oldRS := cluster.CreateDeployment(t, c, ns, "old", map[string]string{"app": "old"})
	newSet := cluster.CreateStatefulSet(t, c, ns, "new", map[string]string{"app": "new"})
	client := k.a.RunPod(t, c, cluster.PodObject(ns, "client", map[string]string{"app": "client"}, nil),
		netip.MustParseAddr("10.247.1.10"), cluster.PodOptions{})
	ip := netip.MustParseAddr("10.247.2.40")
	addr := netip.AddrPortFrom(ip, 8080).String()

	oldPod := k.b.RunPod(t, c, cluster.PodObject(ns, oldRS.Name+"-q1w2e", map[string]string{"app": "old"}, oldRS), ip, cluster.PodOptions{})
	k.waitKnown(t, 2, 2, 1)

	// The connection that outlives its pod, on a port of its own.
	serve(t, oldPod, "0.0.0.0:8081") // killed with the pod
	stream := client.Command(peerBin, "tcp-stream", "-addr", netip.AddrPortFrom(ip, 8081).String(),
		"-duration", "2m", "-chunk", "100", "-pause", "100ms")
	if err := stream.Start(); err != nil {
		t.Fatalf("start tcp-stream: %v", err)
	}
	t.Cleanup(func() {
		_ = stream.Process.Kill()
		_ = stream.Wait()
	})
	streamQuery := q("observer", "client", "from-pod", ns+"/client", "to-ip", ip.String(), "to-port", "8081")
	testutil.Eventually(t, 20*time.Second, func() error {
		if s := sum(k.flowlens.flows(t, streamQuery)); s.opened != 1 {
			return fmt.Errorf("the stream's connection is not in the API yet: %+v", s)
		}
		return nil
	})
	// Stopped, it neither writes nor closes: the old server reads all it
	// sent, and its death only half-closes the connection.
	if err := stream.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("stop tcp-stream: %v", err)
	}

	s := serve(t, oldPod, "0.0.0.0:8080")
	const before, after = 7, 4
	connect(t, client, addr, before)
	if r := stopServer(t, s); r.Connections != before {
		t.Fatalf("old pod accepted %d connections, want %d", r.Connections, before)
	}
	if err := c.CoreV1().Pods(ns).Delete(context.Background(), oldPod.Name, *metav1.NewDeleteOptions(0)); err != nil {
		t.Fatalf("delete pod: %v", err)
	}
	oldPod.Remove()
	newPod := k.b.RunPod(t, c, cluster.PodObject(ns, "new-0", map[string]string{"app": "new"}, newSet), ip, cluster.PodOptions{})
	k.waitKnown(t, 2, 2, 1) // the old pod's deletion and the new pod's address
	newKnown := time.Now()
	s = serve(t, newPod, "0.0.0.0:8080")
	connect(t, client, addr, after)
	if r := stopServer(t, s); r.Connections != after {
		t.Fatalf("new pod accepted %d connections, want %d", r.Connections, after)
	}
	// Now the stream's socket closes; the new pod, which has no such
	// connection, answers its FIN with a reset.
	if err := stream.Process.Kill(); err != nil {
		t.Fatalf("kill tcp-stream: %v", err)
	}

	crecs := k.flowlens.settled(t, q("observer", "client", "from-pod", ns+"/client", "to-ip", ip.String()), opened(before+after+1))
	want := fmt.Sprint(map[string]uint32{oldPod.Name: before + 1, "new-0": after})
	if got := openedBy(crecs, dstPod); fmt.Sprint(got) != want {
		t.Errorf("client side: connections per destination pod %v, want %s", got, want)
	}
	for _, r := range crecs {
		w := map[string]flow.Workload{oldPod.Name: {Kind: "Deployment", Name: "old"}, "new-0": {Kind: "StatefulSet", Name: "new"}}[r.Destination.Pod]
		if r.Destination.Workload == nil || *r.Destination.Workload != w {
			t.Errorf("destination %s has workload %+v, want %+v", r.Destination.Pod, r.Destination.Workload, w)
		}
		if r.Source.Workload == nil || *r.Source.Workload != (flow.Workload{Kind: "Pod", Name: "client"}) {
			t.Errorf("bare pod source workload %+v", r.Source.Workload)
		}
	}
	// The stream's connection: opened to the old pod, closed (and named)
	// after the new pod held the address, and named after the old pod.
	var streamOpened, closedLate uint32
	for _, r := range k.flowlens.flows(t, streamQuery) {
		if r.Destination.Pod != oldPod.Name {
			t.Errorf("the stream's record at %s is named %q, want the old pod %s", r.Time.Format(time.RFC3339Nano), r.Destination.Pod, oldPod.Name)
		}
		streamOpened += r.Opened
		if r.Time.After(newKnown) {
			closedLate += r.Closed
		}
	}
	if streamOpened != 1 || closedLate != 1 {
		t.Errorf("the stream's connection: opened %d, closed after the new pod was known %d; want 1 and 1", streamOpened, closedLate)
	}
	for pod, n := range map[string]int{oldPod.Name: before + 1, "new-0": after} {
		srecs := k.flowlens.settled(t, q("observer", "server", "to-pod", ns+"/"+pod), opened(n))
		if s := sum(srecs); s.opened != uint32(n) {
			t.Errorf("server side of %s: %d connections, want %d", pod, s.opened, n)
		}
	}
}

// Test 3: a host-network pod shares its node's address, so only its cgroup
// tells it from the node; the API server is recognised as such.
func TestKubernetesHostNetworkAndAPIServer(t *testing.T) {
	k := newKubeCluster(t)
	c := k.cp.Client
	ns := cluster.CreateNamespace(t, c, "infra")
	ds := cluster.CreateDaemonSet(t, c, ns, "node-agent", map[string]string{"app": "node-agent"})
	hostPod := k.a.RunHostNetworkPod(t, c, cluster.PodObject(ns, "node-agent-z9y8x", map[string]string{"app": "node-agent"}, ds), cluster.PodOptions{})
	app := k.b.RunPod(t, c, cluster.PodObject(ns, "app", map[string]string{"app": "app"}, nil), netip.MustParseAddr("10.247.2.10"), cluster.PodOptions{})
	k.waitKnown(t, 2, 1, 1) // the host-network pod has no address of its own

	// A pod calls the host-network pod at its node's address...
	s := serve(t, hostPod, netip.AddrPortFrom(k.a.IP, 9100).String())
	const toHost, fromHost = 6, 3
	connect(t, app, netip.AddrPortFrom(k.a.IP, 9100).String(), toHost)
	stopServer(t, s)
	// ...and the host-network pod calls a pod.
	s = serve(t, app, "0.0.0.0:8080")
	connect(t, hostPod, "10.247.2.10:8080", fromHost)
	stopServer(t, s)

	isHostPod := func(e flow.Endpoint) bool {
		return e.Kind == flow.KindPod && e.Pod == hostPod.Name && e.HostNetwork && e.NodeName == "node-a" &&
			e.IP == k.a.IP && e.Workload != nil && *e.Workload == (flow.Workload{Kind: "DaemonSet", Name: "node-agent"})
	}
	srecs := k.flowlens.settled(t, q("observer", "server", "to-pod", ns+"/"+hostPod.Name), opened(toHost))
	crecs := k.flowlens.settled(t, q("observer", "client", "from-pod", ns+"/app", "to-ip", k.a.IP.String()), opened(toHost))
	for side, recs := range map[string][]flow.Record{"server": srecs, "client": crecs} {
		if s := sum(recs); s.opened != toHost {
			t.Errorf("%s side: %d connections to the host-network pod, want %d", side, s.opened, toHost)
		}
		for _, r := range recs {
			if !isHostPod(r.Destination) || r.Source.Pod != "app" {
				t.Errorf("%s side: %+v -> %+v, want app -> host-network pod %s", side, r.Source, r.Destination, hostPod.Name)
			}
		}
	}
	hrecs := k.flowlens.settled(t, q("observer", "client", "from-pod", ns+"/"+hostPod.Name, "to-pod", ns+"/app"), opened(fromHost))
	if s := sum(hrecs); s.opened != fromHost {
		t.Errorf("host-network pod as client: %d connections, want %d", s.opened, fromHost)
	}
	for _, r := range hrecs {
		if !isHostPod(r.Source) {
			t.Errorf("host-network client source %+v", r.Source)
		}
	}

	// A pod the API server does not know (a static pod, a stray container):
	// its records wait for metadata that never comes, then go out named by
	// address alone, with nothing lost while they waited.
	ghost := k.b.AddPod(ns, "ghost", types.UID("0badc0de-0000-4000-8000-000000000001"), netip.MustParseAddr("10.247.2.50"), cluster.PodOptions{})
	s = serve(t, app, "0.0.0.0:8080")
	const fromGhost = 4
	connect(t, ghost, "10.247.2.10:8080", fromGhost)
	stopServer(t, s)
	grecs := k.flowlens.settled(t, q("observer", "client", "from-ip", "10.247.2.50", "to-pod", ns+"/app"), opened(fromGhost))
	if s := sum(grecs); s.opened != fromGhost || s.bytesToDst != fromGhost*1000 {
		t.Errorf("unknown pod's connections: %+v, want %d of 1000 bytes", s, fromGhost)
	}
	for _, r := range grecs {
		if r.Source.Pod != "" || r.Source.Kind != flow.KindWorld || r.Source.ContainerID != ghost.ContainerID {
			t.Errorf("unknown pod's source %+v: want its container, no pod name", r.Source)
		}
	}
	// Only the unknown pod's records can have waited (every other pod here
	// is known first), and each is counted before it reaches the API.
	if got := k.metrics(t)[`flowlens_names_early_records_total{result="gave_up"}`]; got != float64(len(grecs)) {
		t.Errorf("early records given up: %v, want the %d records of the unknown pod", got, len(grecs))
	}

	// A process on the host (where this API server listens) connects to
	// the API server exactly n times.
	u, err := url.Parse(k.cp.URL)
	if err != nil {
		t.Fatal(err)
	}
	const toAPI = 3
	cmd := exec.Command(peerBin, "tcp-connect", "-addr", u.Host, "-count", strconv.Itoa(toAPI), "-duration", "1m")
	var res result.Connect
	testutil.Output(t, cmd, &res)
	if res.OK != toAPI {
		t.Fatalf("connections to the API server: %+v", res)
	}
	arecs := k.flowlens.settled(t, q("from-pid", strconv.Itoa(cmd.Process.Pid), "to-kind", "apiserver", "observer", "client"), opened(toAPI))
	if s := sum(arecs); s.opened != toAPI {
		t.Errorf("%d connections to the API server counted, want %d", s.opened, toAPI)
	}
	for _, r := range arecs {
		if got := netip.AddrPortFrom(r.Destination.IP, r.Destination.Port).String(); got != u.Host || r.Destination.Kind != flow.KindAPIServer {
			t.Errorf("API server record destination %+v, want %s", r.Destination, u.Host)
		}
	}
}

// Test 4: the API server goes away for 10 s while a client keeps calling a
// Service. Every connection is still counted and named from the last known
// state; /readyz says the metadata is stale until the API server is back.
func TestKubernetesAPIServerOutage(t *testing.T) {
	k := newKubeCluster(t)
	c := k.cp.Client
	ns := cluster.CreateNamespace(t, c, "outage")
	_, clientRS := cluster.CreateDeployment(t, c, ns, "client", map[string]string{"app": "client"})
	client := k.a.RunPod(t, c, cluster.PodObject(ns, clientRS.Name+"-c1c1c", map[string]string{"app": "client"}, clientRS),
		netip.MustParseAddr("10.247.1.10"), cluster.PodOptions{})
	api := k.runAPIService(t, ns, netip.MustParseAddr("10.96.7.60"), cluster.PodOptions{})

	// The agent must know the state before it can keep it: one connection,
	// named end to end, shows the watch delivered the pods and the Service.
	connect(t, client, "10.96.7.60:80", 1)
	k.flowlens.settled(t, q("observer", "client", "from-pod", ns+"/"+client.Name, "to-service", ns+"/api", "to-pod", ns+"/api"), opened(1))

	// 64 connections over ~16 s, around a 10 s outage.
	const n = 64
	load := client.Command(peerBin, "tcp-connect", "-addr", "10.96.7.60:80", "-count", strconv.Itoa(n), "-rate", "4", "-bytes", "1000", "-duration", "1m")
	done := make(chan error, 1)
	var loadOut strings.Builder
	load.Stdout = &loadOut
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- load.Wait() }()
	t.Cleanup(func() { _ = load.Process.Kill() })

	time.Sleep(2 * time.Second)
	down := time.Now()
	if err := k.cp.Stop(); err != nil {
		t.Fatalf("stop API server: %v", err)
	}
	testutil.Eventually(t, 8*time.Second, func() error {
		code, body := readyz(k.flowlens)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "stale") {
			return fmt.Errorf("/readyz %d %q while the API server is down, want 503 stale", code, body)
		}
		return nil
	})
	time.Sleep(10*time.Second - time.Since(down))
	t.Logf("API server down for %v", time.Since(down).Round(time.Millisecond))
	if err := k.cp.Start(); err != nil {
		t.Fatalf("restart API server: %v", err)
	}
	testutil.Eventually(t, 60*time.Second, func() error {
		if code, body := readyz(k.flowlens); code != http.StatusOK {
			return fmt.Errorf("/readyz %d %q after the API server returned", code, body)
		}
		return nil
	})
	if err := <-done; err != nil {
		t.Fatalf("load: %v", err)
	}
	want := api.stop(t)
	if total := want[api.pods[0].Name] + want[api.pods[1].Name]; total != n+1 {
		t.Fatalf("backends accepted %v, want %d in all", want, n+1)
	}

	crecs := k.flowlens.settled(t, q("observer", "client", "from-pod", ns+"/"+client.Name, "to-service", ns+"/api"), opened(n+1))
	if got := openedBy(crecs, dstPod); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("connections per backend across the outage %v, want %v", got, want)
	}
	for _, r := range crecs {
		if r.Source.Workload == nil || r.Source.Workload.Name != "client" {
			t.Errorf("source named %+v across the outage", r.Source)
		}
	}
}

func readyz(a api) (int, string) {
	resp, err := http.Get("http://" + string(a) + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Test 5: a cgroup named like another pod's, anywhere but where kubelet
// puts pods (here a systemd user's delegated tree, which any user can
// create), claims nothing: the impostor's connections are named by its own
// address, and never after the pod whose UID and container id it copied.
func TestKubernetesCgroupCannotClaimAPod(t *testing.T) {
	k := newKubeCluster(t)
	c := k.cp.Client
	ns := cluster.CreateNamespace(t, c, "spoof")
	victim := k.a.RunPod(t, c, cluster.PodObject(ns, "victim", map[string]string{"app": "victim"}, nil),
		netip.MustParseAddr("10.247.1.10"), cluster.PodOptions{})
	app := k.b.RunPod(t, c, cluster.PodObject(ns, "app", map[string]string{"app": "app"}, nil),
		netip.MustParseAddr("10.247.2.10"), cluster.PodOptions{})
	k.waitKnown(t, 2, 2, 1)
	uid := strings.ReplaceAll(string(victim.UID), "-", "_")
	impostor := k.a.AddPod(ns, "impostor", victim.UID, netip.MustParseAddr("10.247.1.66"), cluster.PodOptions{
		ContainerID: victim.ContainerID,
		CgroupPath: "user.slice/user-1000.slice/user@1000.service/app.slice/kubepods-besteffort-pod" + uid +
			".slice/cri-containerd-" + victim.ContainerID + ".scope",
	})

	s := serve(t, app, "0.0.0.0:8080")
	const n = 5
	connect(t, impostor, "10.247.2.10:8080", n)
	stopServer(t, s)
	recs := k.flowlens.settled(t, q("observer", "client", "from-ip", "10.247.1.66", "to-pod", ns+"/app"), opened(n))
	if s := sum(recs); s.opened != n {
		t.Errorf("impostor's connections: %d, want %d", s.opened, n)
	}
	for _, r := range recs {
		if src := r.Source; src.Kind != flow.KindWorld || src.Pod != "" || src.Namespace != "" || src.ContainerID != victim.ContainerID {
			t.Errorf("impostor's source %+v: want named by address (world), with the container id its cgroup shows", src)
		}
	}
	// Nothing waited for a pod: the path names none.
	if got := k.metrics(t)[`flowlens_names_early_records_total{result="gave_up"}`]; got != 0 {
		t.Errorf("early records given up: %v, want 0", got)
	}
}
