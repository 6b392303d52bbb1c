package cluster

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/flowlens/flowlens/internal/testutil"
)

var probeOnce struct {
	sync.Once
	path string
	dir  string
}

// probe builds testdata/probe once per test binary.
func probe(t *testing.T) string {
	t.Helper()
	probeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flowlens-probe-")
		if err != nil {
			t.Fatal(err)
		}
		probeOnce.dir = dir
		probeOnce.path = filepath.Join(dir, "probe")
		if out, err := exec.Command("go", "build", "-buildvcs=false", "-o", probeOnce.path, "./testdata/probe").CombinedOutput(); err != nil {
			t.Fatalf("build probe: %v\n%s", err, out)
		}
	})
	if _, err := os.Stat(probeOnce.path); err != nil {
		t.Fatalf("probe binary: %v", err)
	}
	return probeOnce.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if probeOnce.dir != "" {
		os.RemoveAll(probeOnce.dir)
	}
	os.Exit(code)
}

// server is a running `probe serve`.
type server struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startServer(t *testing.T, cmd *exec.Cmd) *server {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	s := &server{t: t, cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	if line, err := s.out.ReadString('\n'); err != nil || line != "listening\n" {
		t.Fatalf("%v: want listening, got %q, %v", cmd.Args, line, err)
	}
	return s
}

// stop ends the server and returns how many connections it accepted.
func (s *server) stop() int {
	s.t.Helper()
	s.stdin.Close()
	line, err := s.out.ReadString('\n')
	if err != nil {
		s.t.Fatalf("%v: read count: %v", s.cmd.Args, err)
	}
	var n int
	if _, err := fmt.Sscanf(line, "accepted %d", &n); err != nil {
		s.t.Fatalf("%v: parse %q: %v", s.cmd.Args, line, err)
	}
	if err := s.cmd.Wait(); err != nil {
		s.t.Fatalf("%v: %v", s.cmd.Args, err)
	}
	return n
}

// dial runs `probe dial` in cmd's namespace and returns the answer lines.
func dial(t *testing.T, cmd *exec.Cmd) []string {
	t.Helper()
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%v: %v: %s", cmd.Args, err, stderr)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func countLines(lines []string) map[string]int {
	counts := map[string]int{}
	for _, l := range lines {
		name, _, _ := strings.Cut(l, " ")
		counts[name]++
	}
	return counts
}

func uid(s string) types.UID { return types.UID(s) }

func twoNodes(t *testing.T) (*Network, *Node, *Node) {
	n := NewNetwork(t)
	a := n.AddNode("node-a", netip.MustParsePrefix("10.244.1.0/24"))
	b := n.AddNode("node-b", netip.MustParsePrefix("10.244.2.0/24"))
	return n, a, b
}

func TestPodToPodAcrossNodes(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := probe(t)
	_, a, b := twoNodes(t)
	client := a.AddPod("default", "client", uid("11111111-1111-1111-1111-111111111111"), netip.MustParseAddr("10.244.1.10"), PodOptions{})
	srv := b.AddPod("default", "server", uid("22222222-2222-2222-2222-222222222222"), netip.MustParseAddr("10.244.2.20"), PodOptions{})

	s := startServer(t, srv.Command(bin, "serve", "0.0.0.0:8080", "server"))
	lines := dial(t, client.Command(bin, "dial", "10.244.2.20:8080", "3"))
	if want := []string{"server 1", "server 2", "server 3"}; strings.Join(lines, ",") != strings.Join(want, ",") {
		t.Fatalf("answers = %q, want %q", lines, want)
	}
	if got := s.stop(); got != 3 {
		t.Fatalf("server accepted %d connections, want 3", got)
	}

	// Pods reach the other node's address too, but nothing outside the
	// network: no default route exists in any node.
	out, err := exec.Command("ip", "-n", a.Netns, "route", "show", "default").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("node %s has a default route %q (%v)", a.Name, out, err)
	}
	// A route lookup only: no packet is sent to an address outside.
	out, err = exec.Command("ip", "-n", a.Netns, "route", "get", "192.0.2.1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unreachable") {
		t.Fatalf("node %s routes 192.0.2.1: %s (%v)", a.Name, out, err)
	}
}

func TestClusterIPRoundRobin(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := probe(t)
	n, a, b := twoNodes(t)
	client := a.AddPod("default", "client", uid("11111111-0000-0000-0000-000000000001"), netip.MustParseAddr("10.244.1.10"), PodOptions{})
	// One backend on the client's node, one on the other: both the hairpin-
	// free local path and the cross-node path must un-DNAT replies.
	be1 := a.AddPod("default", "backend-1", uid("11111111-0000-0000-0000-000000000002"), netip.MustParseAddr("10.244.1.21"), PodOptions{})
	be2 := b.AddPod("default", "backend-2", uid("11111111-0000-0000-0000-000000000003"), netip.MustParseAddr("10.244.2.22"), PodOptions{})
	s1 := startServer(t, be1.Command(bin, "serve", ":8080", "backend-1"))
	s2 := startServer(t, be2.Command(bin, "serve", ":8080", "backend-2"))

	vip := netip.MustParseAddr("10.96.0.50")
	n.AddServiceDNAT(ServiceDNAT{ClusterIP: vip, Port: 80, Mode: RoundRobin, Backends: []netip.AddrPort{
		netip.AddrPortFrom(be1.IP, 8080), netip.AddrPortFrom(be2.IP, 8080),
	}})
	// A Service without endpoints refuses connections, as with kube-proxy.
	n.AddServiceDNAT(ServiceDNAT{ClusterIP: netip.MustParseAddr("10.96.0.51"), Port: 80})

	lines := dial(t, client.Command(bin, "dial", "10.96.0.50:80", "20"))
	if c := countLines(lines); c["backend-1"] != 10 || c["backend-2"] != 10 || len(lines) != 20 {
		t.Fatalf("answers per backend = %v, want 10 each", c)
	}
	// A host-network process on node-b goes through node-b's OUTPUT chain,
	// whose round-robin counter is its own.
	hostPod := b.AddHostNetworkPod("kube-system", "agent", uid("11111111-0000-0000-0000-000000000004"), PodOptions{})
	if c := countLines(dial(t, hostPod.Command(bin, "dial", "10.96.0.50:80", "4"))); c["backend-1"] != 2 || c["backend-2"] != 2 {
		t.Fatalf("host-network answers per backend = %v, want 2 each", c)
	}
	// A backend reaching its own Service (hairpin) is masqueraded so the
	// reply returns through the node.
	if c := countLines(dial(t, be1.Command(bin, "dial", "10.96.0.50:80", "2"))); c["backend-1"] != 1 || c["backend-2"] != 1 {
		t.Fatalf("hairpin answers per backend = %v, want 1 each", c)
	}

	if got1, got2 := s1.stop(), s2.stop(); got1 != 13 || got2 != 13 {
		t.Fatalf("servers accepted %d and %d connections, want 13 each", got1, got2)
	}

	out, err := client.Command(bin, "dial", "10.96.0.51:80", "1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "connection refused") {
		t.Fatalf("dial to a Service without endpoints: %v, %s; want connection refused", err, out)
	}
}

// procCgroup returns the cgroup v2 line ("0::<path>") of a process.
func procCgroup(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p
		}
	}
	t.Fatalf("no cgroup v2 line in /proc/%d/cgroup:\n%s", pid, data)
	return ""
}

func TestPodCommandCgroupAndNetns(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := probe(t)
	n := NewNetwork(t)
	node := n.AddNode("node-a", netip.MustParsePrefix("10.244.1.0/24"))
	const podUID = "6b2f1c3e-9a8d-4e1f-b2c3-d4e5f6a7b8c9"
	cid := strings.Repeat("ab", 32)
	cases := []struct {
		name string
		pod  func() *Pod
		want string // cgroup path below <prefix>kubelet
	}{
		{"cgroupfs", func() *Pod {
			return node.AddPod("default", "fs", podUID, netip.MustParseAddr("10.244.1.5"), PodOptions{ContainerID: cid})
		}, "/kubepods/besteffort/pod" + podUID + "/" + cid},
		{"systemd", func() *Pod {
			return node.AddPod("default", "sd", "0aa0aa0a-1111-2222-3333-444455556666", netip.MustParseAddr("10.244.1.6"),
				PodOptions{CgroupDriver: Systemd, QOS: Burstable, ContainerID: cid})
		}, "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0aa0aa0a_1111_2222_3333_444455556666.slice/cri-containerd-" + cid + ".scope"},
		{"guaranteed", func() *Pod {
			return node.AddPod("default", "gu", "7c7c7c7c-1111-2222-3333-444455556666", netip.MustParseAddr("10.244.1.7"),
				PodOptions{QOS: Guaranteed, ContainerID: cid})
		}, "/kubepods/pod7c7c7c7c-1111-2222-3333-444455556666/" + cid},
		{"host-network", func() *Pod {
			return node.AddHostNetworkPod("kube-system", "hn", "8d8d8d8d-1111-2222-3333-444455556666", PodOptions{ContainerID: cid})
		}, "/kubepods/besteffort/pod8d8d8d8d-1111-2222-3333-444455556666/" + cid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.pod()
			if want := "/" + n.Prefix + "kubelet" + tc.want; p.CgroupPath != want {
				t.Fatalf("CgroupPath = %s, want %s", p.CgroupPath, want)
			}
			cmd := p.Command(bin, "wait")
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); cmd.Wait() }()
			// Read only after the program printed: nsenter has exec'd it
			// by then, so /proc shows the program, not nsenter.
			if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
				t.Fatalf("want ready, got %q %v", line, err)
			}
			pid := cmd.Process.Pid
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe != bin {
				t.Fatalf("pid %d runs %s, want %s", pid, exe, bin)
			}
			if got := procCgroup(t, pid); got != p.CgroupPath {
				t.Fatalf("/proc/%d/cgroup = %s, want %s", pid, got, p.CgroupPath)
			}
			ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("net:[%d]", p.NetnsInode); ns != want {
				t.Fatalf("/proc/%d/ns/net = %s, want %s", pid, ns, want)
			}
			if p.HostNetwork && p.NetnsInode != node.NetnsInode {
				t.Fatalf("host-network pod netns %d, node netns %d", p.NetnsInode, node.NetnsInode)
			}
			self, _ := os.Readlink("/proc/self/ns/net")
			if ns == self {
				t.Fatalf("pod process shares the test's netns %s", ns)
			}
		})
	}
}

// TestTeardownLeavesNothing builds a network in a subtest, leaves a process
// running in a pod, and checks that after the subtest's cleanup nothing with
// the prefix remains: no netns, no link in the host, no cgroup, no process.
func TestTeardownLeavesNothing(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := probe(t)
	var prefix string
	var cmd *exec.Cmd
	waited := make(chan error, 1)
	t.Run("build", func(t *testing.T) {
		n, a, b := twoNodes(t)
		prefix = n.Prefix
		p := a.AddPod("default", "left-running", uid("99999999-0000-0000-0000-000000000001"), netip.MustParseAddr("10.244.1.9"), PodOptions{CgroupDriver: Systemd})
		b.AddHostNetworkPod("default", "hn", uid("99999999-0000-0000-0000-000000000002"), PodOptions{})
		n.AddServiceDNAT(ServiceDNAT{ClusterIP: netip.MustParseAddr("10.96.0.9"), Port: 80, Backends: []netip.AddrPort{netip.MustParseAddrPort("10.244.1.9:80")}})
		cmd = p.Command(bin, "wait")
		stdin, _ := cmd.StdinPipe() // never closed: teardown must kill it
		_ = stdin
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { waited <- cmd.Wait() }()
		if m, _ := filepath.Glob(filepath.Join(netnsDir, prefix+"*")); len(m) != 4 {
			t.Fatalf("netns with prefix %s: %v, want 4 (underlay, 2 nodes, 1 pod)", prefix, m)
		}
	})
	if prefix == "" {
		t.Fatal("build failed")
	}
	select {
	case err := <-waited:
		t.Logf("pod process ended at teardown: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("pod process %d still running after teardown", cmd.Process.Pid)
	}
	if m, _ := filepath.Glob(filepath.Join(netnsDir, prefix+"*")); len(m) != 0 {
		t.Errorf("netns left: %v", m)
	}
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), prefix) {
		t.Errorf("host links with prefix %s:\n%s", prefix, out)
	}
	cg, err := cgroup2Mount()
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(cg.dir, prefix+"*")); len(m) != 0 {
		t.Errorf("cgroups left: %v", m)
	}
	if _, err := os.Stat(filepath.Join(stateDir, prefix)); err == nil {
		t.Errorf("state file %s left", prefix)
	}
}
