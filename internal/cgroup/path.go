package cgroup

import "strings"

// Container is what a cgroup path says about the workload inside it.
type Container struct {
	Path        string // cgroup v2 path below the mount, e.g. "/kubepods.slice/.../cri-containerd-<id>.scope"
	Runtime     string // "containerd", "cri-o", "docker", "podman", "cri" (see ParsePath), or "" when not a container
	ContainerID string // 64 lowercase hex, or ""
	PodUID      string // canonical UUID with dashes, or ""
	QOS         string // "guaranteed", "burstable", "besteffort", or ""
}

// Runtime names. RuntimeCRI is a container that kubelet's cgroupfs driver
// placed as a bare id below its pod: containerd, CRI-O (older ones) and
// cri-dockerd all do that, so the name cannot tell them apart, yet it is
// certainly a container, and Runtime must not be "" when ContainerID is set.
const (
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimeDocker     = "docker"
	RuntimePodman     = "podman"
	RuntimeCRI        = "cri"
)

// Kubernetes QoS classes as kubelet spells them in cgroup names.
const (
	QOSGuaranteed = "guaranteed"
	QOSBurstable  = "burstable"
	QOSBestEffort = "besteffort"
)

// unitPrefixes are the names runtimes give a container's own cgroup, with
// ".scope" under systemd and without under cgroupfs. Conmon's cgroups
// ("crio-conmon-<id>", "libpod-conmon-<id>") do not match: what follows the
// prefix must be the bare id, and conmon is a monitor, not the workload.
var unitPrefixes = []struct{ prefix, runtime string }{
	{"cri-containerd-", RuntimeContainerd},
	{"crio-", RuntimeCRIO},
	{"docker-", RuntimeDocker},
	{"libpod-", RuntimePodman},
	{"nerdctl-", RuntimeContainerd},
}

// ParsePath reads a cgroup path (a v2 path, or the path part of a cgroup v1
// line of /proc/<pid>/cgroup) and never touches the filesystem.
//
// The path is read top-down. The innermost container wins, because nested
// runtimes (kind or k3d nodes, docker-in-docker) put the workload deepest;
// directories below a container (runc's "init", crun's "container") do not
// clear it, since processes there still run in that container. Entering a
// kubelet hierarchy ("kubepods", "kubepods.slice") or a pod starts afresh:
// a container above kubelet is its node, not the pod's workload.
func ParsePath(path string) Container {
	p := parser{c: Container{Path: path}}
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" {
			continue
		}
		// runc run without its systemd driver but handed a systemd-style
		// cgroupsPath ("slice:prefix:name", containerd without
		// SystemdCgroup=true under a systemd kubelet) makes it one directory.
		if slice, prefix, name, ok := splitRuncSystemd(seg); ok {
			if slice != "" {
				p.segment(slice)
			}
			p.segment(prefix + "-" + name + ".scope")
			continue
		}
		p.segment(seg)
	}
	return p.c
}

// cgroupfs steps of kubelet's layout: kubepods[/<qos>]/pod<uid>.
const (
	stepNone = iota
	stepKubepods
	stepQOS
)

type parser struct {
	c      Container
	step   int    // where we are in kubelet's cgroupfs layout
	qos    string // QoS directory seen at stepQOS
	inKube bool   // below a kubelet hierarchy: a bare id is a CRI container
	prev   string // parent directory name
}

func (p *parser) segment(seg string) {
	p.read(seg)
	p.prev = seg
}

func (p *parser) read(seg string) {
	if seg == "kubepods" {
		p.enterKube()
		p.step = stepKubepods
		return
	}
	step := p.step
	p.step = stepNone
	if name, ok := strings.CutSuffix(seg, ".slice"); ok && p.kubeSlice(name) {
		return
	}
	switch step {
	case stepKubepods:
		if seg == QOSBestEffort || seg == QOSBurstable {
			p.qos, p.step = seg, stepQOS
			return
		}
		if p.cgroupfsPod(seg, QOSGuaranteed) {
			return
		}
	case stepQOS:
		if p.cgroupfsPod(seg, p.qos) {
			return
		}
	}
	if id, runtime := p.container(seg); id != "" {
		p.c.ContainerID, p.c.Runtime = id, runtime
	}
}

func (p *parser) enterKube() {
	p.c = Container{Path: p.c.Path}
	p.inKube = true
}

func (p *parser) enterPod(uid, qos string) {
	p.enterKube()
	p.c.PodUID, p.c.QOS = uid, qos
}

func (p *parser) cgroupfsPod(seg, qos string) bool {
	raw, ok := strings.CutPrefix(seg, "pod")
	if !ok {
		return false
	}
	uid, ok := podUID(raw)
	if ok {
		p.enterPod(uid, qos)
	}
	return ok
}

// kubeSlice reads the systemd driver's slices. Their names spell the whole
// path ("kubepods-burstable-pod<uid>.slice"), so the pod slice alone says the
// QoS, and nested kubelets (kind: "kubelet-kubepods-...") only add a prefix.
func (p *parser) kubeSlice(name string) bool {
	i := strings.LastIndex(name, "kubepods")
	if i < 0 || i > 0 && name[i-1] != '-' {
		return false
	}
	rest := name[i+len("kubepods"):]
	switch rest {
	case "":
		p.enterKube()
		return true
	case "-" + QOSBestEffort, "-" + QOSBurstable:
		return true
	}
	qos := QOSGuaranteed
	for _, q := range []string{QOSBestEffort, QOSBurstable} {
		if r, ok := strings.CutPrefix(rest, "-"+q); ok {
			qos, rest = q, r
			break
		}
	}
	raw, ok := strings.CutPrefix(rest, "-pod")
	if !ok {
		return false
	}
	// systemd reserves '-' for nesting, so kubelet writes the UID's dashes
	// as '_'.
	uid, ok := podUID(strings.ReplaceAll(raw, "_", "-"))
	if ok {
		p.enterPod(uid, qos)
	}
	return ok
}

func (p *parser) container(seg string) (id, runtime string) {
	name := strings.TrimSuffix(seg, ".scope")
	for _, u := range unitPrefixes {
		if rest, ok := strings.CutPrefix(name, u.prefix); ok && isContainerID(rest) {
			return rest, u.runtime
		}
	}
	if !isContainerID(seg) {
		return "", ""
	}
	switch {
	case p.prev == "docker":
		return seg, RuntimeDocker
	case p.inKube:
		return seg, RuntimeCRI
	default:
		// containerd's own layout is /<namespace>/<id> ("/default/<id>" for
		// ctr and nerdctl). Docker with --cgroup-parent (ECS, CI runners)
		// looks the same and is reported as containerd, which runs it anyway.
		return seg, RuntimeContainerd
	}
}

// podUID accepts a pod directory's UID: an API pod's UUID, or the 32-hex
// hash kubelet gives static pods. A static pod is still a pod boundary, but
// its UID is reported as "": the API only knows its mirror pod, whose own UID
// differs (the hash is its kubernetes.io/config.hash annotation).
func podUID(s string) (uid string, ok bool) {
	if isUUID(s) {
		return s, true
	}
	return "", len(s) == 32 && isLowerHex(s)
}

// splitRuncSystemd splits runc's systemd cgroupsPath "slice:prefix:name".
func splitRuncSystemd(seg string) (slice, prefix, name string, ok bool) {
	slice, rest, ok := strings.Cut(seg, ":")
	if !ok {
		return "", "", "", false
	}
	prefix, name, ok = strings.Cut(rest, ":")
	if !ok || strings.Contains(name, ":") {
		return "", "", "", false
	}
	return slice, prefix, name, true
}

func isContainerID(s string) bool { return len(s) == 64 && isLowerHex(s) }

// isUUID reports a canonical lowercase 8-4-4-4-12 UUID.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isLowerHexByte(s[i]) {
				return false
			}
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isLowerHexByte(s[i]) {
			return false
		}
	}
	return true
}

func isLowerHexByte(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }
