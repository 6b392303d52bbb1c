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

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// PodOptions are the knobs of a simulated pod. The zero value is a
// BestEffort pod under the cgroupfs driver with a random container id.
type PodOptions struct {
	CgroupDriver CgroupDriver
	QOS          QOSClass // default BestEffort
	// ContainerID is the 64-hex id of the pod's one container; random if empty.
	ContainerID string
	// ContainerName names the container in the Pod object (default "main").
	ContainerName string
	// CgroupPath, if set, is the container cgroup's path below the kubelet
	// root instead of the kubelet-shaped one: a cgroup a user with a
	// delegated subtree could make, for tests that check it claims no pod.
	CgroupPath string
}

// Pod is a simulated pod: a network namespace (or, for host-network pods, the
// node's) plus a kubelet-shaped cgroup for its container.
type Pod struct {
	Node        *Node
	Namespace   string
	Name        string
	UID         types.UID
	IP          netip.Addr
	HostNetwork bool
	// Netns, NetnsPath and NetnsInode describe the pod's network namespace
	// (the node's for host-network pods).
	Netns      string
	NetnsPath  string
	NetnsInode uint64
	// ContainerID is the container's id, as in the cgroup path and in the
	// Pod object's containerStatuses ("containerd://<id>").
	ContainerID   string
	ContainerName string
	// CgroupPath is the container cgroup as /proc/<pid>/cgroup shows it
	// ("0::<CgroupPath>"); CgroupDir is its directory in the cgroup2 mount.
	CgroupPath string
	CgroupDir  string
	Options    PodOptions
	// Object is the Pod API object, set when the pod was made with RunPod.
	Object *corev1.Pod

	index      int
	cgroupFile *os.File
	podCgroup  string // the pod<uid> level, removed with the pod
}

// AddPod creates a pod network namespace attached to the node bridge with
// address ip (from the node's pod CIDR) and its container cgroup. The pod
// holds ip as a /32 and reaches everything through the node's bridge address,
// so all its traffic, even to a pod on the same node, is routed (and so seen
// by iptables) in the node namespace.
func (node *Node) AddPod(namespace, name string, uid types.UID, ip netip.Addr, opts PodOptions) *Pod {
	node.net.t.Helper()
	p, err := node.addPod(namespace, name, uid, ip, false, opts)
	if err != nil {
		node.net.t.Fatalf("cluster: add pod %s/%s on %s: %v", namespace, name, node.Name, err)
	}
	return p
}

// AddHostNetworkPod creates a host-network pod: its processes share the
// node's network namespace and address but get their own pod cgroup.
func (node *Node) AddHostNetworkPod(namespace, name string, uid types.UID, opts PodOptions) *Pod {
	node.net.t.Helper()
	p, err := node.addPod(namespace, name, uid, node.IP, true, opts)
	if err != nil {
		node.net.t.Fatalf("cluster: add host-network pod %s/%s on %s: %v", namespace, name, node.Name, err)
	}
	return p
}

func (node *Node) addPod(namespace, name string, uid types.UID, ip netip.Addr, hostNetwork bool, opts PodOptions) (*Pod, error) {
	n := node.net
	if uid == "" {
		return nil, errors.New("empty uid")
	}
	if opts.ContainerID == "" {
		opts.ContainerID = randomHex(32)
	}
	if opts.ContainerName == "" {
		opts.ContainerName = "main"
	}
	if opts.QOS == "" {
		opts.QOS = BestEffort
	}
	n.mu.Lock()
	if !hostNetwork {
		if !node.PodCIDR.Contains(ip) || ip == node.Gateway || ip == node.PodCIDR.Addr() {
			n.mu.Unlock()
			return nil, fmt.Errorf("ip %s is not a free pod address of %s", ip, node.PodCIDR)
		}
		for _, o := range n.pods {
			if !o.HostNetwork && o.IP == ip {
				n.mu.Unlock()
				return nil, fmt.Errorf("ip %s is taken by %s/%s", ip, o.Namespace, o.Name)
			}
		}
	}
	n.nextPod++
	p := &Pod{
		Node:          node,
		Namespace:     namespace,
		Name:          name,
		UID:           uid,
		IP:            ip,
		HostNetwork:   hostNetwork,
		ContainerID:   opts.ContainerID,
		ContainerName: opts.ContainerName,
		Options:       opts,
		index:         n.nextPod,
	}
	// Registered before it is complete, so that teardown removes a half-made pod.
	n.pods = append(n.pods, p)
	n.mu.Unlock()

	rel := opts.CgroupPath
	if rel == "" {
		rel = podCgroupPath(opts.CgroupDriver, opts.QOS, uid, opts.ContainerID)
	}
	rel = path.Join(node.kubeletRel, rel)
	p.CgroupDir = filepath.Join(n.cgroupRoot, rel)
	p.podCgroup = filepath.Dir(p.CgroupDir)
	p.CgroupPath = path.Join(n.cgroup.root, n.Prefix+"kubelet", rel)
	if err := os.MkdirAll(p.CgroupDir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	var err error
	if p.cgroupFile, err = os.Open(p.CgroupDir); err != nil {
		return nil, fmt.Errorf("open cgroup: %w", err)
	}

	if hostNetwork {
		p.Netns, p.NetnsPath, p.NetnsInode = node.Netns, node.NetnsPath, node.NetnsInode
		return p, nil
	}
	p.Netns = fmt.Sprintf("%spod%d-%s", n.Prefix, p.index, sanitize(namespace+"."+name))
	p.NetnsPath = filepath.Join(netnsDir, p.Netns)
	if err := addNetns(p.Netns); err != nil {
		return nil, err
	}
	if p.NetnsInode, err = netnsInode(p.NetnsPath); err != nil {
		return nil, err
	}
	host, eth := n.podVethHost(p.index), n.podVethPod()
	gw := node.Gateway.String()
	for _, s := range [][]string{
		{"-n", node.Netns, "link", "add", host, "type", "veth", "peer", "name", eth, "netns", p.Netns},
		{"-n", node.Netns, "link", "set", host, "master", n.bridgeName(), "up"},
		{"-n", p.Netns, "addr", "add", ip.String() + "/32", "dev", eth},
		{"-n", p.Netns, "link", "set", eth, "up"},
		{"-n", p.Netns, "route", "add", gw, "dev", eth, "scope", "link"},
		{"-n", p.Netns, "route", "add", "default", "via", gw, "dev", eth},
	} {
		if err := run("ip", s...); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Command returns a command that runs inside the pod: in its network
// namespace and in its container cgroup from the first instruction, so the
// sockets it opens carry that cgroup. The process is killed at teardown if
// still running.
func (p *Pod) Command(name string, args ...string) *exec.Cmd {
	return p.CommandContext(context.Background(), name, args...)
}

// CommandContext is Command with a context that kills the process.
func (p *Pod) CommandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	return netnsCommand(ctx, p.NetnsPath, p.cgroupFile, name, args...)
}

// Remove kills the pod's processes and deletes its namespace and cgroups
// before the end of the test (pod churn). Teardown does it otherwise.
func (p *Pod) Remove() {
	n := p.Node.net
	n.t.Helper()
	n.mu.Lock()
	for i, o := range n.pods {
		if o == p {
			n.pods = append(n.pods[:i], n.pods[i+1:]...)
			break
		}
	}
	n.mu.Unlock()
	if err := p.remove(); err != nil {
		n.t.Errorf("cluster: remove pod %s/%s: %v", p.Namespace, p.Name, err)
	}
}

func (p *Pod) remove() error {
	var errs []error
	if p.CgroupDir != "" {
		if err := killCgroup(p.podCgroup); err != nil {
			errs = append(errs, err)
		}
	}
	if p.cgroupFile != nil {
		p.cgroupFile.Close()
	}
	if !p.HostNetwork && p.Netns != "" {
		if err := deleteNetns(p.Netns); err != nil {
			errs = append(errs, err)
		}
	}
	if p.podCgroup != "" {
		if err := removeCgroupTree(p.podCgroup); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
