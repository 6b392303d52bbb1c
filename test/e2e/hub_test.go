package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/hub"
	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/internal/topology"
	"github.com/flowlens/flowlens/test/e2e/browser"
	"github.com/flowlens/flowlens/test/e2e/cluster"
	"github.com/flowlens/flowlens/test/peer/result"
)

// These tests run the cluster as it is deployed: one `flowlens agent` per
// simulated node, each scoped (--watch-cgroup) to its node's pods on the
// shared kernel, streaming to one `flowlens hub` with a history on disk.

// hubProcess is a `flowlens hub` the test runs, restartable on its address
// and data directory.
type hubProcess struct {
	t    *testing.T
	addr string
	dir  string
	cmd  *exec.Cmd
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testutil.Must(t, err, "pick a free port")
	defer ln.Close()
	return ln.Addr().String()
}

// startHubProcess starts a hub with its history in a test directory.
func startHubProcess(t *testing.T) *hubProcess {
	t.Helper()
	h := &hubProcess{t: t, addr: freeLoopbackAddr(t), dir: t.TempDir()}
	h.start()
	t.Cleanup(func() {
		if h.cmd != nil {
			_ = h.cmd.Process.Signal(syscall.SIGTERM)
			if err := h.cmd.Wait(); err != nil {
				t.Errorf("flowlens hub exited: %v", err)
			}
		}
	})
	return h
}

func (h *hubProcess) start() {
	h.t.Helper()
	h.cmd = exec.Command(flowlensBin, "hub", "--listen", h.addr, "--data-dir", h.dir, "--checkpoint-interval", "1s")
	h.cmd.Stdout, h.cmd.Stderr = os.Stderr, os.Stderr
	testutil.Must(h.t, h.cmd.Start(), "start flowlens hub")
	waitReady(h.t, h.addr, "flowlens hub")
}

// kill stops the hub the hard way: no last checkpoint, no goodbye.
func (h *hubProcess) kill() {
	h.t.Helper()
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
	h.cmd = nil
}

func (h *hubProcess) api() api { return api(h.addr) }

func waitReady(t *testing.T, addr, what string) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /readyz: %s", what, resp.Status)
		}
		return nil
	})
}

// nodeAgent starts `flowlens agent` for one node, watching only that
// node's pods, and returns the address of its metrics.
func (k *kubeCluster) nodeAgent(t *testing.T, node *cluster.Node, hubAddr string, extra ...string) api {
	t.Helper()
	addr := freeLoopbackAddr(t)
	root := node.KubeletCgroupRoot()
	cmd := exec.Command(flowlensBin, append([]string{"agent", "--hub", hubAddr, "--node", node.Name,
		"--metrics-listen", addr, "--kubeconfig", k.kubeconfig, "--kubelet-cgroup-root", root, "--watch-cgroup", root,
		"--hub-backoff-max", "1s"}, extra...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	testutil.Must(t, cmd.Start(), "start flowlens agent")
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("flowlens agent %s exited: %v", node.Name, err)
		}
	})
	waitReady(t, addr, "flowlens agent "+node.Name)
	return api(addr)
}

// edges returns the graph's edges at level as "source -> destination":
// connections opened.
func (a api) edges(t *testing.T, level topology.Level, window string) map[string]uint64 {
	t.Helper()
	g, err := a.topology(q("level", string(level), "window", window))
	testutil.Must(t, err, "topology")
	out := map[string]uint64{}
	for _, e := range g.Edges {
		out[e.Source+" -> "+e.Destination] = e.ConnectionsOpened
	}
	return out
}

// settledEdges polls the topology until its edges at level are want.
func (a api) settledEdges(t *testing.T, level topology.Level, window string, want map[string]uint64) {
	t.Helper()
	start := time.Now()
	// Maps print sorted: equal prints are equal maps.
	got := settle(t, fmt.Sprintf("%s edges %v", level, want), 60*time.Second,
		func() string { return fmt.Sprint(a.edges(t, level, window)) },
		func(got string) bool { return got == fmt.Sprint(want) })
	if got != fmt.Sprint(want) {
		t.Fatalf("%s edges %v, want %v", level, got, want)
	}
	t.Logf("%s edges as expected %s after the traffic", level, time.Since(start).Round(10*time.Millisecond))
}

func (a api) agents(t *testing.T) []hub.AgentStatus {
	t.Helper()
	resp, err := http.Get("http://" + string(a) + "/api/v1/agents")
	testutil.Must(t, err, "get agents")
	defer resp.Body.Close()
	var body struct{ Agents []hub.AgentStatus }
	testutil.Must(t, json.NewDecoder(resp.Body).Decode(&body), "decode agents")
	return body.Agents
}

// multiNode is a client pod on node-a calling Service backend/api, whose
// two replicas run one on each node, each node with its own agent.
type multiNode struct {
	k              *kubeCluster
	hub            *hubProcess
	agentA, agentB api
	client         *cluster.Pod
	api            apiService
	shop, backend  string
}

func startMultiNode(t *testing.T, agentFlags ...string) *multiNode {
	t.Helper()
	k := startCluster(t, true)
	c := k.cp.Client
	m := &multiNode{k: k, hub: startHubProcess(t)}
	m.shop = cluster.CreateNamespace(t, c, "shop")
	m.backend = cluster.CreateNamespace(t, c, "backend")
	_, clientRS := cluster.CreateDeployment(t, c, m.shop, "client", map[string]string{"app": "client"})
	m.client = k.a.RunPod(t, c, cluster.PodObject(m.shop, clientRS.Name+"-x7k2p", map[string]string{"app": "client"}, clientRS),
		netip.MustParseAddr("10.247.1.10"), cluster.PodOptions{})
	m.api = k.runAPIService(t, m.backend, netip.MustParseAddr("10.96.7.50"), cluster.PodOptions{})
	m.agentA = k.nodeAgent(t, k.a, m.hub.addr, agentFlags...)
	m.agentB = k.nodeAgent(t, k.b, m.hub.addr, agentFlags...)
	for _, a := range []api{m.agentA, m.agentB} {
		waitKnownAt(t, string(a), 3, 3, 2)
	}
	return m
}

// wantEdges are the topology's edges for n connections through the
// Service, perPod of them to each backend pod.
func (m *multiNode) wantEdges(perPod map[string]uint32) map[topology.Level]map[string]uint64 {
	client := "workload:" + m.shop + "/Deployment/client"
	n := uint64(0)
	pods := map[string]uint64{}
	for pod, c := range perPod {
		n += uint64(c)
		pods["pod:"+m.shop+"/"+m.client.Name+" -> pod:"+m.backend+"/"+pod] = uint64(c)
	}
	return map[topology.Level]map[string]uint64{
		topology.LevelService:  {client + " -> service:" + m.backend + "/api": n},
		topology.LevelWorkload: {client + " -> workload:" + m.backend + "/Deployment/api": n},
		topology.LevelPod:      pods,
	}
}

// A client on node-a calls a Service whose backends are one per node: the
// hub joins each client record with the server record the other node's
// agent sent, so the topology reads client → Service → backend with exact
// counts at every level, and the cross-node backend is named on the flows.
func TestHubJoinsAcrossNodes(t *testing.T) {
	m := startMultiNode(t)
	const n = 30
	connect(t, m.client, "10.96.7.50:80", n)
	perPod := m.api.stop(t)
	if perPod[m.api.pods[0].Name] == 0 || perPod[m.api.pods[1].Name] == 0 {
		t.Fatalf("round robin did not reach both backends: %v", perPod)
	}
	hubAPI := m.hub.api()
	for level, want := range m.wantEdges(perPod) {
		hubAPI.settledEdges(t, level, "1m", want)
	}

	// The client's records, from node-a's agent, name the backend on
	// node-b: the hub's join, not the agent's.
	crecs := hubAPI.flows(t, q("observer", "client", "from-pod", m.shop+"/"+m.client.Name, "to-service", m.backend+"/api"))
	if got := openedBy(crecs, dstPod); !maps.Equal(got, perPod) {
		t.Errorf("client records per backend %v, want %v", got, perPod)
	}
	for _, r := range crecs {
		if r.Node != "node-a" || (r.Destination.Pod == m.api.pods[1].Name && r.Destination.NodeName != "node-b") {
			t.Errorf("client record observed on %s, destination %+v", r.Node, r.Destination)
		}
	}
	agents := hubAPI.agents(t)
	if len(agents) != 2 || agents[0].ID != "node-a" || agents[1].ID != "node-b" || !agents[0].Connected || !agents[1].Connected {
		t.Fatalf("agents %+v, want node-a and node-b connected", agents)
	}
	// Each agent saw only its node: node-b's saw no client record.
	if srecs := hubAPI.flows(t, q("observer", "client", "node", "node-b")); len(srecs) != 0 {
		t.Errorf("node-b's agent sent %d client records; its node has no client", len(srecs))
	}
	for _, a := range agents {
		if a.DroppedRecords != 0 || a.ResentBatches != 0 {
			t.Errorf("agent %s: %+v, want nothing dropped or resent", a.ID, a)
		}
	}
	mapShowsTheBackendAcrossNodes(t, m, perPod)
	diffSinceTheServiceCalls(t, m, crecs)
}

// mapShowsTheBackendAcrossNodes: the hub's web UI, in Chromium, draws the
// client's edges to each backend pod, the one on the other node included,
// with their exact counts, and asks nothing of any host but the hub.
func mapShowsTheBackendAcrossNodes(t *testing.T, m *multiNode, perPod map[string]uint32) {
	t.Helper()
	b := browser.Start(t)
	b.Open(t, "http://"+m.hub.addr+"/?level=pod&window=1m")
	client := "pod:" + m.shop + "/" + m.client.Name
	for _, p := range m.api.pods {
		backend := "pod:" + m.backend + "/" + p.Name
		cond := fmt.Sprintf(`document.querySelector('#model li[data-kind="edge"][data-source=%q][data-target=%q][data-opened="%d"]')`,
			client, backend, perPod[p.Name])
		b.WaitFor(t, "the map's edge to "+p.Name+" on "+p.Node.Name, cond, readModelEdges, 30*time.Second)
	}
	if f := b.Foreign(m.hub.addr); len(f) > 0 {
		t.Errorf("the page asked hosts other than the hub: %v", f)
	}
	if p := b.Problems(); len(p) > 0 {
		t.Errorf("page problems: %v", p)
	}
}

// diffSinceTheServiceCalls: after the calls through the Service (crecs),
// the client calls a database pod by its IP instead. Comparing 20 s windows
// ending now and ending at the last Service call, the diff names exactly
// the edge that appeared (to the database) and the one that vanished (to
// the Service), and their nodes.
func diffSinceTheServiceCalls(t *testing.T, m *multiNode, crecs []flow.Record) {
	t.Helper()
	c := m.k.cp.Client
	_, dbRS := cluster.CreateDeployment(t, c, m.backend, "db", map[string]string{"app": "db"})
	db := m.k.b.RunPod(t, c, cluster.PodObject(m.backend, dbRS.Name+"-g5h6i", map[string]string{"app": "db"}, dbRS),
		netip.MustParseAddr("10.247.2.30"), cluster.PodOptions{})
	sdb := serve(t, db, "0.0.0.0:5432")
	for _, a := range []api{m.agentA, m.agentB} {
		waitKnownAt(t, string(a), 4, 4, 2)
	}
	var last time.Time
	for _, r := range crecs {
		if r.Time.After(last) {
			last = r.Time
		}
	}
	// Past the two buckets (10 s each) of a 20 s window holding the last
	// Service call, so the window ending now cannot hold it.
	const res = int64(10 * time.Second)
	clear := time.Unix(0, ((last.UnixNano()-1)/res+2)*res)
	time.Sleep(time.Until(clear))
	const direct = 5
	connect(t, m.client, "10.247.2.30:5432", direct)
	if got := stopServer(t, sdb).Connections; got != direct {
		t.Fatalf("db accepted %d connections, want %d", got, direct)
	}
	client := "workload:" + m.shop + "/Deployment/client"
	dbNode := "workload:" + m.backend + "/Deployment/db"
	hubAPI := m.hub.api()
	hubAPI.settledEdges(t, topology.LevelService, "20s", map[string]uint64{client + " -> " + dbNode: direct})

	resp, err := http.Get("http://" + m.hub.addr + "/api/v1/topology?" + q("level", "service", "window", "20s",
		"since", last.Format(time.RFC3339Nano)))
	testutil.Must(t, err, "get the diff")
	defer resp.Body.Close()
	var d topology.Diff
	testutil.Must(t, json.NewDecoder(resp.Body).Decode(&d), "decode the diff")
	ids := func(edges []topology.Edge) (out []string) {
		for _, e := range edges {
			out = append(out, e.Source+" -> "+e.Destination)
		}
		return out
	}
	nodes := func(ns []topology.Node) (out []string) {
		for _, n := range ns {
			out = append(out, n.ID)
		}
		return out
	}
	want := fmt.Sprint([]string{client + " -> " + dbNode}, []string{client + " -> service:" + m.backend + "/api"},
		[]string{dbNode}, []string{"service:" + m.backend + "/api"})
	if got := fmt.Sprint(ids(d.Edges.Appeared), ids(d.Edges.Vanished), nodes(d.Nodes.Appeared), nodes(d.Nodes.Vanished)); got != want || len(d.Edges.Changed) != 0 {
		t.Errorf("diff: appeared, vanished edges and nodes %s, changed %d; want %s and none changed", got, len(d.Edges.Changed), want)
	}
}

// The hub SIGKILLed in the middle of the traffic and started again on its
// data: every connection is on the topology exactly once.
func TestHubKilledMidTrafficCountsExactly(t *testing.T) {
	m := startMultiNode(t)
	const n = 300 // 6 s at 50/s: the kill and the restart fall inside
	load := testutil.Start(t, m.client.Command(peerBin, "tcp-connect", "-addr", "10.96.7.50:80", "-count", strconv.Itoa(n),
		"-rate", "50", "-bytes", "1000", "-duration", "2m"))
	// Killed once the first connections are through it and checkpointed
	// (every second here), while others are in flight.
	hubAPI := m.hub.api()
	testutil.Eventually(t, 30*time.Second, func() error {
		if v := hubAPI.edges(t, topology.LevelService, "1m")["workload:"+m.shop+"/Deployment/client -> service:"+m.backend+"/api"]; v == 0 {
			return errors.New("no connection on the hub's topology yet")
		}
		if hubAPI.metrics(t)[`flowlens_hub_checkpoints_total{outcome="written"}`] == 0 {
			return errors.New("no checkpoint yet")
		}
		return nil
	})
	m.hub.kill()
	time.Sleep(2 * time.Second) // agents find it gone and keep their batches
	m.hub.start()
	var res result.Connect
	load.ReadJSON(t, &res) // at its end
	if err := load.Cmd.Wait(); err != nil {
		t.Fatalf("load: %v", err)
	}
	if res.OK != n {
		t.Fatalf("load: %+v, want %d connections", res, n)
	}
	perPod := m.api.stop(t)
	for level, want := range m.wantEdges(perPod) {
		hubAPI.settledEdges(t, level, "5m", want)
	}
	resent := uint64(0)
	for _, a := range hubAPI.agents(t) {
		resent += a.ResentBatches
		if a.DroppedRecords != 0 {
			t.Errorf("agent %s dropped %d records", a.ID, a.DroppedRecords)
		}
	}
	t.Logf("batches resent after the restart and recognised: %d", resent)
}

// The hub away for 10 s while connections go on: the agents' backlogs are
// replayed and the totals are exact.
func TestHubOutageReplaysBacklogs(t *testing.T) {
	m := startMultiNode(t)
	m.hub.kill()
	const n = 40
	connect(t, m.client, "10.96.7.50:80", n)
	time.Sleep(10 * time.Second) // the outage, with the agents' intervals passing
	m.hub.start()
	perPod := m.api.stop(t)
	for level, want := range m.wantEdges(perPod) {
		m.hub.api().settledEdges(t, level, "5m", want)
	}
	for _, a := range m.hub.api().agents(t) {
		if a.DroppedRecords != 0 {
			t.Errorf("agent %s dropped %d records; its backlog holds 100,000", a.ID, a.DroppedRecords)
		}
	}
}

// An agent whose backlog is too small for the outage drops the oldest
// records and says exactly how many: with what the hub received, they make
// up every record it had.
func TestHubOutageBacklogTooSmall(t *testing.T) {
	// A backlog of 2 records, batches of 1, on both agents: node-a's 40
	// client records of the outage cannot all wait.
	m := startMultiNode(t, "--hub-backlog", "2", "--hub-max-batch", "1")
	m.hub.kill()
	const n = 40
	connect(t, m.client, "10.96.7.50:80", n)
	time.Sleep(5 * time.Second)
	m.hub.start()
	type account struct {
		given, dropped, backlog float64 // the agent's own count
		hub                     hub.AgentStatus
	}
	read := func() account {
		met := m.agentA.metrics(t)
		acc := account{given: met["flowlens_agent_hub_records_total"], dropped: met[`flowlens_agent_lost_total{reason="backlog_full",stage="hub"}`],
			backlog: met["flowlens_agent_hub_backlog_records"]}
		for _, s := range m.hub.api().agents(t) {
			if s.ID == "node-a" {
				acc.hub = s
			}
		}
		return acc
	}
	acc := settle(t, "node-a's agent accounts for every record", 30*time.Second, read, func(a account) bool {
		return a.backlog == 0 && a.dropped > 0 && float64(a.hub.Records)+a.dropped == a.given && float64(a.hub.DroppedRecords) == a.dropped
	})
	if acc.dropped == 0 || float64(acc.hub.Records)+acc.dropped != acc.given || float64(acc.hub.DroppedRecords) != acc.dropped {
		t.Errorf("node-a's agent gave %v records to the stream and dropped %v; the hub received %d and was told of %d dropped",
			acc.given, acc.dropped, acc.hub.Records, acc.hub.DroppedRecords)
	}
	t.Logf("node-a's agent: %v records, %v dropped in the outage, %d received", acc.given, acc.dropped, acc.hub.Records)
}
