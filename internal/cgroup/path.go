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
// kubeletRoot is the cgroup kubelet keeps its pods under (its
// --cgroup-root; "" or "/" for the hierarchy's root, the default of both
// drivers). A pod is read from the path only where kubelet would have put
// it: kubepods directly below that root, then the QoS level, then the pod.
// Anywhere else a kubepods-shaped name is only a name: a user with a
// delegated subtree (systemd user services, a nested runtime, a pod with
// cgroup write access) can create any of them, and must not claim a pod by
// doing so.
//
// The path is read top-down. The innermost container wins, because nested
// runtimes (docker-in-docker, a runtime inside a pod) put the workload
// deepest; directories below a container (runc's "init", crun's
// "container") do not clear it, since processes there still run in that
// container. Containers above kubelet's root are its node, not the pod's
// workload, and are not read.
func ParsePath(path, kubeletRoot string) Container {
	p := parser{c: Container{Path: path}}
	rest, anchored := belowRoot(path, kubeletRoot)
	if anchored {
		p.step = stepRoot
	}
	for seg := range strings.SplitSeq(rest, "/") {
		if seg == "" {
			continue
		}
		// runc run without its systemd driver but handed a systemd-style
		// cgroupsPath ("slice:prefix:name", containerd without
		// SystemdCgroup=true under a systemd kubelet) makes it one
		// directory, where kubelet's whole slice path is the slice name.
		if slice, prefix, name, ok := splitRuncSystemd(seg); ok {
			if slice != "" {
				p.segment(slice, true)
			}
			p.segment(prefix+"-"+name+".scope", false)
			continue
		}
		p.segment(seg, false)
	}
	return p.c
}

// belowRoot returns what of path lies below root, and whether path is
// below it (or is it) at all. Either is read as a list of directory names.
func belowRoot(path, root string) (string, bool) {
	root = strings.Trim(root, "/")
	if root == "" {
		return path, true
	}
	rel := strings.TrimLeft(path, "/")
	if rest, ok := strings.CutPrefix(rel, root); ok && (rest == "" || rest[0] == '/') {
		return rest, true
	}
	return path, false
}

// Steps of kubelet's layout below its root. cgroupfs:
// kubepods[/<qos>]/pod<uid>; systemd: <kube>.slice[/<kube>-<qos>.slice]/
// <kube>[-<qos>]-pod<uid_>.slice, where <kube> is "kubepods", prefixed by
// the root's own slice name under a nested kubelet ("kubelet-kubepods").
const (
	stepNone     = iota // not at a place where kubelet's layout continues
	stepRoot            // directly below kubelet's root
	stepKubepods        // cgroupfs: below kubepods
	stepQOS             // cgroupfs: below kubepods/<qos>
	stepSlice           // systemd: below <kube>.slice
	stepSliceQOS        // systemd: below <kube>-<qos>.slice
)

type parser struct {
	c      Container
	step   int    // where we are in kubelet's layout
	qos    string // QoS level seen at stepQOS or stepSliceQOS
	kube   string // systemd: the kubepods slice's name without ".slice"
	inKube bool   // below kubelet's root hierarchy: a bare id is a CRI container
	prev   string // parent directory name
}

func (p *parser) segment(seg string, collapsed bool) {
	p.read(seg, collapsed)
	p.prev = seg
}

func (p *parser) read(seg string, collapsed bool) {
	step := p.step
	p.step = stepNone
	if p.kubelet(step, seg, collapsed) {
		return
	}
	if id, runtime := p.container(seg); id != "" {
		p.c.ContainerID, p.c.Runtime = id, runtime
	}
}

// kubelet reads seg as the next level of kubelet's layout, if it is one
// where the previous level left step.
func (p *parser) kubelet(step int, seg string, collapsed bool) bool {
	slice, isSlice := strings.CutSuffix(seg, ".slice")
	switch step {
	case stepRoot:
		switch {
		case seg == "kubepods":
			p.inKube, p.step = true, stepKubepods
			return true
		case isSlice && kubepodsSlice(slice):
			p.inKube, p.kube, p.step = true, slice, stepSlice
			return true
		case isSlice && collapsed:
			// The pod slice's name spells its parents:
			// [<root>-]kubepods[-<qos>]-pod<uid_>.
			i := strings.LastIndex(slice, "kubepods-")
			if i < 0 || !kubepodsSlice(slice[:i+len("kubepods")]) {
				return false
			}
			p.inKube = true
			rest, qos := slice[i+len("kubepods-"):], QOSGuaranteed
			for _, q := range []string{QOSBestEffort, QOSBurstable} {
				if r, ok := strings.CutPrefix(rest, q+"-"); ok {
					rest, qos = r, q
				}
			}
			return p.pod(rest, qos, true)
		}
	case stepKubepods:
		if seg == QOSBestEffort || seg == QOSBurstable {
			p.qos, p.step = seg, stepQOS
			return true
		}
		return p.pod(seg, QOSGuaranteed, false)
	case stepQOS:
		return p.pod(seg, p.qos, false)
	case stepSlice:
		rest, ok := strings.CutPrefix(slice, p.kube+"-")
		if !isSlice || !ok {
			return false
		}
		if rest == QOSBestEffort || rest == QOSBurstable {
			p.qos, p.step = rest, stepSliceQOS
			return true
		}
		return p.pod(rest, QOSGuaranteed, true)
	case stepSliceQOS:
		rest, ok := strings.CutPrefix(slice, p.kube+"-"+p.qos+"-")
		return isSlice && ok && p.pod(rest, p.qos, true)
	}
	return false
}

// kubepodsSlice reports whether a slice name (without ".slice") is
// kubelet's top slice: "kubepods", or, below a nested kubelet's root slice,
// "<root>-kubepods" (systemd names every slice after its parents).
func kubepodsSlice(name string) bool {
	pre, ok := strings.CutSuffix(name, "kubepods")
	return ok && (pre == "" || strings.HasSuffix(pre, "-"))
}

// pod reads a pod level's name, "pod<uid>"; the systemd driver writes the
// UID's dashes as '_', since systemd reserves '-' for nesting.
func (p *parser) pod(name, qos string, systemd bool) bool {
	raw, ok := strings.CutPrefix(name, "pod")
	if !ok {
		return false
	}
	if systemd {
		raw = strings.ReplaceAll(raw, "_", "-")
	}
	uid, ok := podUID(raw)
	if ok {
		p.c.PodUID, p.c.QOS = uid, qos
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
