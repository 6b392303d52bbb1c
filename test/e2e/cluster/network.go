package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/flowlens/flowlens/internal/testutil"
)

// netnsDir is where `ip netns add` bind-mounts named namespaces.
const netnsDir = "/run/netns"

// Network is a set of simulated nodes connected by an underlay bridge, all in
// network namespaces this harness creates and removes. Nothing in it routes to
// the host. See the package documentation for the layout.
type Network struct {
	t testing.TB
	// Prefix starts the name of every netns, link and cgroup of this
	// network, e.g. "fl3a9c-". It is unique per Network.
	Prefix string
	// Underlay is the subnet of node addresses (default 172.30.0.0/24).
	Underlay netip.Prefix
	// ServiceCIDR is routed towards the node bridge in every node so that
	// host-network processes can connect to ClusterIPs (default 10.96.0.0/16,
	// the control plane's --service-cluster-ip-range).
	ServiceCIDR netip.Prefix

	underlayNS string
	cgroup     cgroup2
	cgroupRoot string // absolute dir of <prefix>kubelet
	separate   bool   // SeparateNodeCgroups

	mu       sync.Mutex
	nodes    []*Node
	pods     []*Pod
	services []ServiceDNAT
	nextPod  int
}

// Node is a simulated Kubernetes node: a network namespace with an uplink to
// the underlay and a bridge that its pods attach to.
type Node struct {
	net *Network
	// Name is the node name (also used for the Node object).
	Name string
	// IP is the node's address on the underlay (its InternalIP).
	IP netip.Addr
	// PodCIDR holds the IPs of this node's pods; its first address is the
	// bridge (gateway) address.
	PodCIDR netip.Prefix
	// Gateway is the bridge address, the pods' default route.
	Gateway netip.Addr
	// Netns is the netns name, NetnsPath its bind mount under /run/netns and
	// NetnsInode the namespace's inode number (as in /proc/<pid>/ns/net).
	Netns      string
	NetnsPath  string
	NetnsInode uint64

	index      int
	cgroupDir  string // node-level processes (Node.Command), outside kubepods
	kubeletRel string // the node's kubelet root below the network's ("" unless SeparateNodeCgroups)
	cgroupFile *os.File
	iptInit    bool
}

// Link names inside our namespaces. They carry the prefix too, so that any
// link of ours is recognisable wherever it ends up.
// KubeletCgroupRoot is the cgroup this network's kubelet-shaped trees live
// under, as /proc/<pid>/cgroup shows it: what a real kubelet's
// --cgroup-root would be, and what flowlens' --kubelet-cgroup-root must be
// to read pods from them.
func (n *Network) KubeletCgroupRoot() string { return path.Join(n.cgroup.root, n.Prefix+"kubelet") }

// SeparateNodeCgroups gives each node added after it its own kubelet root
// below KubeletCgroupRoot, as each node of a real cluster has its own
// cgroup tree: an agent scoped to Node.KubeletCgroupRoot then sees that
// node's pods only, though all nodes share this machine's kernel.
func (n *Network) SeparateNodeCgroups() { n.separate = true }

// KubeletCgroupRoot is the cgroup this node's pods live under, as
// /proc/<pid>/cgroup shows it.
func (node *Node) KubeletCgroupRoot() string {
	return path.Join(node.net.KubeletCgroupRoot(), node.kubeletRel)
}

func (n *Network) bridgeName() string        { return n.Prefix + "br" }
func (n *Network) underlayBridge() string    { return n.Prefix + "ul" }
func (n *Network) uplinkName() string        { return n.Prefix + "eth0" } // node side of the underlay veth
func (n *Network) underlayPort(i int) string { return fmt.Sprintf("%su%d", n.Prefix, i) }
func (n *Network) podVethHost(i int) string  { return fmt.Sprintf("%sv%d", n.Prefix, i) }
func (n *Network) podVethPod() string        { return n.Prefix + "eth0" }

// NewNetwork creates an empty underlay (a namespace holding one bridge).
// Everything is removed at t.Cleanup, or on SIGINT/SIGTERM.
func NewNetwork(t testing.TB) *Network {
	t.Helper()
	testutil.RequirePrivileged(t)
	sweepLeftovers(t)
	cg, err := cgroup2Mount()
	if err != nil {
		t.Fatalf("cluster: %v", err)
	}
	n := &Network{
		t:           t,
		Underlay:    netip.MustParsePrefix("172.30.0.0/24"),
		ServiceCIDR: netip.MustParsePrefix("10.96.0.0/16"),
		cgroup:      cg,
	}
	for {
		n.Prefix = "fl" + randomHex(2) + "-"
		used, _ := filepath.Glob(filepath.Join(netnsDir, n.Prefix+"*"))
		cgUsed, _ := filepath.Glob(filepath.Join(cg.dir, n.Prefix+"*"))
		if _, err := os.Stat(filepath.Join(stateDir, n.Prefix)); len(used) == 0 && len(cgUsed) == 0 && err != nil {
			break
		}
	}
	if err := writeState(n.Prefix); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	onTeardown(t, n.teardown)

	n.cgroupRoot = filepath.Join(cg.dir, n.Prefix+"kubelet")
	if err := os.Mkdir(n.cgroupRoot, 0o755); err != nil {
		t.Fatalf("cluster: create cgroup root: %v", err)
	}
	n.underlayNS = n.Prefix + "underlay"
	if err := n.setupUnderlay(); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	return n
}

func (n *Network) setupUnderlay() error {
	ns := n.underlayNS
	if err := addNetns(ns); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "add", n.underlayBridge(), "type", "bridge"},
		{"link", "set", n.underlayBridge(), "up"},
	} {
		if err := run("ip", append([]string{"-n", ns}, args...)...); err != nil {
			return fmt.Errorf("underlay: %w", err)
		}
	}
	return nil
}

// addNetns creates a named netns with IPv6 off (it would add router
// solicitations and DAD packets to every capture) and ICMP redirects off.
func addNetns(name string) error {
	if err := run("ip", "netns", "add", name); err != nil {
		return fmt.Errorf("add netns %s: %w", name, err)
	}
	if err := run("ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	if err := inNetns(filepath.Join(netnsDir, name), "sysctl", "-q", "-w",
		"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
		"net.ipv4.conf.all.accept_redirects=0", "net.ipv4.conf.default.accept_redirects=0",
		"net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0",
	); err != nil {
		return fmt.Errorf("netns %s sysctls: %w", name, err)
	}
	return nil
}

// deleteNetns removes a named netns if it exists. The namespace itself (and
// its links and iptables rules) goes away when no process holds it any more.
func deleteNetns(name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err != nil {
		return nil
	}
	return run("ip", "netns", "delete", name)
}

func netnsInode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat netns %s: %w", path, err)
	}
	return st.Ino, nil
}

// AddNode creates a node namespace, connects it to the underlay, gives it a
// bridge holding podCIDR's first address, and adds routes between its pod
// CIDR and every other node's. Services added earlier are installed in it.
func (n *Network) AddNode(name string, podCIDR netip.Prefix) *Node {
	n.t.Helper()
	node, err := n.addNode(name, podCIDR)
	if err != nil {
		n.t.Fatalf("cluster: add node %s: %v", name, err)
	}
	return node
}

func (n *Network) addNode(name string, podCIDR netip.Prefix) (*Node, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	podCIDR = podCIDR.Masked()
	if !podCIDR.Addr().Is4() || podCIDR.Bits() > 30 {
		return nil, fmt.Errorf("pod CIDR %s: want an IPv4 prefix of /30 or wider", podCIDR)
	}
	for _, o := range n.nodes {
		if o.Name == name {
			return nil, fmt.Errorf("node exists")
		}
		if o.PodCIDR.Overlaps(podCIDR) {
			return nil, fmt.Errorf("pod CIDR %s overlaps node %s's %s", podCIDR, o.Name, o.PodCIDR)
		}
	}
	index := len(n.nodes) + 1
	ip := n.Underlay.Addr()
	for range 10 + index { // nodes are .11, .12, ...
		ip = ip.Next()
	}
	if !n.Underlay.Contains(ip) {
		return nil, fmt.Errorf("underlay %s is full", n.Underlay)
	}
	node := &Node{
		net:     n,
		Name:    name,
		IP:      ip,
		PodCIDR: podCIDR,
		Gateway: podCIDR.Addr().Next(),
		Netns:   n.Prefix + "node-" + sanitize(name),
		index:   index,
	}
	if n.separate {
		node.kubeletRel = "node-" + sanitize(name)
	}
	node.NetnsPath = filepath.Join(netnsDir, node.Netns)
	if err := addNetns(node.Netns); err != nil {
		return nil, err
	}
	// Registered before it is complete, so that teardown removes a half-made node.
	n.nodes = append(n.nodes, node)
	var err error
	if node.NetnsInode, err = netnsInode(node.NetnsPath); err != nil {
		return nil, err
	}
	// Routing between pods happens in the node namespace; bridged traffic is
	// kept out of iptables (br_netfilter, where built in) so that every path
	// is the routed one whatever the kernel has.
	if err := inNetns(node.NetnsPath, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
		return nil, err
	}
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil {
		if err := inNetns(node.NetnsPath, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0"); err != nil {
			return nil, err
		}
	}

	ul, up, br := n.underlayPort(index), n.uplinkName(), n.bridgeName()
	steps := [][]string{
		// The veth is created with both ends already in our namespaces: no
		// link of ours ever appears in the host namespace.
		{"-n", n.underlayNS, "link", "add", ul, "type", "veth", "peer", "name", up, "netns", node.Netns},
		{"-n", n.underlayNS, "link", "set", ul, "master", n.underlayBridge(), "up"},
		{"-n", node.Netns, "addr", "add", fmt.Sprintf("%s/%d", ip, n.Underlay.Bits()), "dev", up},
		{"-n", node.Netns, "link", "set", up, "up"},
		{"-n", node.Netns, "link", "add", br, "type", "bridge"},
		{"-n", node.Netns, "addr", "add", fmt.Sprintf("%s/%d", node.Gateway, podCIDR.Bits()), "dev", br},
		{"-n", node.Netns, "link", "set", br, "up"},
		// A host-network process resolves a ClusterIP's route before the nat
		// OUTPUT chain rewrites it; without a route connect() would fail
		// with ENETUNREACH, as there is no default route.
		{"-n", node.Netns, "route", "add", n.ServiceCIDR.String(), "dev", br},
	}
	for _, o := range n.nodes[:len(n.nodes)-1] {
		steps = append(steps,
			[]string{"-n", node.Netns, "route", "add", o.PodCIDR.String(), "via", o.IP.String()},
			[]string{"-n", o.Netns, "route", "add", podCIDR.String(), "via", ip.String()},
		)
	}
	for _, s := range steps {
		if err := run("ip", s...); err != nil {
			return nil, err
		}
	}

	node.cgroupDir = filepath.Join(n.cgroupRoot, "system", sanitize(name))
	if err := os.MkdirAll(node.cgroupDir, 0o755); err != nil {
		return nil, fmt.Errorf("node cgroup: %w", err)
	}
	if node.cgroupFile, err = os.Open(node.cgroupDir); err != nil {
		return nil, fmt.Errorf("node cgroup: %w", err)
	}
	for _, s := range n.services {
		if err := node.installService(s); err != nil {
			return nil, err
		}
	}
	return node, nil
}

// Nodes returns the nodes in the order they were added.
func (n *Network) Nodes() []*Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Node(nil), n.nodes...)
}

// Command returns a command that runs in the node's network namespace, as a
// host-network system process of that node would (not in a pod cgroup; in a
// per-node cgroup of the harness, so that teardown can stop it).
func (node *Node) Command(name string, args ...string) *exec.Cmd {
	return node.CommandContext(context.Background(), name, args...)
}

// CommandContext is Command with a context that kills the process.
func (node *Node) CommandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	return netnsCommand(ctx, node.NetnsPath, node.cgroupFile, name, args...)
}

// netnsCommand builds `nsenter --net=<ns> -- name args...` started directly
// in cgroup cg (clone3 with CLONE_INTO_CGROUP). nsenter setns()es and then
// exec()s the program under the same pid, so the program runs in both the
// netns and the cgroup from its first instruction. nsenter rather than
// `ip netns exec`: the latter also remounts /sys in a new mount namespace,
// which hides /sys/fs/cgroup and /sys/fs/bpf from the program.
func netnsCommand(ctx context.Context, nsPath string, cg *os.File, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + nsPath, "--", name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		UseCgroupFD: true,
		CgroupFD:    int(cg.Fd()),
		// Dies with the test process even if teardown never runs.
		Pdeathsig: syscall.SIGKILL,
	}
	return cmd
}

// teardown kills the processes in our cgroups, deletes the namespaces (which
// takes their links and iptables rules with them) and removes the cgroups.
func (n *Network) teardown() {
	var errs []error
	if n.cgroupRoot != "" {
		if err := killCgroup(n.cgroupRoot); err != nil {
			errs = append(errs, err)
		}
	}
	n.mu.Lock()
	pods, nodes := n.pods, n.nodes
	n.pods, n.nodes = nil, nil
	n.mu.Unlock()
	for _, p := range pods {
		if err := p.remove(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, node := range nodes {
		if node.cgroupFile != nil {
			node.cgroupFile.Close()
		}
		if err := deleteNetns(node.Netns); err != nil {
			errs = append(errs, err)
		}
	}
	if n.underlayNS != "" {
		if err := deleteNetns(n.underlayNS); err != nil {
			errs = append(errs, err)
		}
	}
	if n.cgroupRoot != "" {
		if err := removeCgroupTree(n.cgroupRoot); err != nil {
			errs = append(errs, err)
		}
	}
	// Catch anything named with our prefix that bookkeeping missed (e.g. a
	// netns added just before a failure).
	removeNetnsWithPrefix(n.Prefix)
	removeState(n.Prefix)
	if err := errors.Join(errs...); err != nil {
		n.t.Errorf("cluster: teardown %s: %v", n.Prefix, err)
	}
}

// sanitize makes a Kubernetes name safe for a netns or cgroup name.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > 40 {
		out = out[:40]
	}
	return out
}
