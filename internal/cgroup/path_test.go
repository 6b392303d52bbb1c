package cgroup

import (
	"regexp"
	"strings"
	"testing"
)

// Samples of ids as runtimes and the API server write them.
const (
	cid   = "4f797c539e6c745de61a93ca3ff892358ecbcaccd8414d5db545c38428142970"
	cid2  = "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d"
	uid   = "ac04f3f2-1f2c-11e9-b8e5-0273b3a2ad2e"
	uidSD = "ac04f3f2_1f2c_11e9_b8e5_0273b3a2ad2e" // as the systemd driver writes it
	// Another pod's UID, the one a spoofed path claims.
	otherUID = "0badc0de-0000-4000-8000-000000000001"
	// A static pod's UID: kubelet's hash of its manifest.
	staticUID = "5b8e8c2a0f3f3e1a0d1c8e4b1f7a2c3d"
	podmanPod = "e9e5d2a6c8b14c4e8b0f3a7d6c2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e"
)

var pathCases = []struct {
	name string
	root string // kubelet's --cgroup-root; "" is the hierarchy's root
	path string
	want Container // Path is filled in from path
}{
	// kubelet, cgroupfs driver: the runtime is not in the name.
	{"cgroupfs besteffort", "", "/kubepods/besteffort/pod" + uid + "/" + cid,
		Container{Runtime: "cri", ContainerID: cid, PodUID: uid, QOS: "besteffort"}},
	{"cgroupfs burstable", "", "/kubepods/burstable/pod" + uid + "/" + cid,
		Container{Runtime: "cri", ContainerID: cid, PodUID: uid, QOS: "burstable"}},
	{"cgroupfs guaranteed", "", "/kubepods/pod" + uid + "/" + cid,
		Container{Runtime: "cri", ContainerID: cid, PodUID: uid, QOS: "guaranteed"}},
	{"cgroupfs e2e harness prefix", "/fl1a2b-kubelet", "/fl1a2b-kubelet/kubepods/besteffort/pod" + uid + "/" + cid,
		Container{Runtime: "cri", ContainerID: cid, PodUID: uid, QOS: "besteffort"}},
	{"cgroupfs kind nested root", "/kubelet", "/kubelet/kubepods/burstable/pod" + uid + "/" + cid,
		Container{Runtime: "cri", ContainerID: cid, PodUID: uid, QOS: "burstable"}},
	{"cgroupfs k3d node container above kubelet", "/docker/" + cid2, "/docker/" + cid2 + "/kubepods/besteffort/pod" + uid + "/" + cid,
		Container{Runtime: "cri", ContainerID: cid, PodUID: uid, QOS: "besteffort"}},
	{"cgroupfs cri-o", "", "/kubepods/burstable/pod" + uid + "/crio-" + cid,
		Container{Runtime: "cri-o", ContainerID: cid, PodUID: uid, QOS: "burstable"}},
	{"cgroupfs cri-o conmon", "", "/kubepods/burstable/pod" + uid + "/crio-conmon-" + cid,
		Container{PodUID: uid, QOS: "burstable"}},
	{"cgroupfs pod level", "", "/kubepods/burstable/pod" + uid,
		Container{PodUID: uid, QOS: "burstable"}},
	{"cgroupfs pod level of k3d node", "/docker/" + cid2, "/docker/" + cid2 + "/kubepods/pod" + uid,
		Container{PodUID: uid, QOS: "guaranteed"}},
	{"cgroupfs qos level", "", "/kubepods/besteffort", Container{}},
	{"cgroupfs static pod", "", "/kubepods/burstable/pod" + staticUID + "/" + cid,
		Container{Runtime: "cri", ContainerID: cid, QOS: "burstable"}},

	// kubelet, systemd driver.
	{"systemd besteffort containerd", "",
		"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidSD + ".slice/cri-containerd-" + cid + ".scope",
		Container{Runtime: "containerd", ContainerID: cid, PodUID: uid, QOS: "besteffort"}},
	{"systemd burstable cri-o", "",
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidSD + ".slice/crio-" + cid + ".scope",
		Container{Runtime: "cri-o", ContainerID: cid, PodUID: uid, QOS: "burstable"}},
	{"systemd guaranteed cri-dockerd", "",
		"/kubepods.slice/kubepods-pod" + uidSD + ".slice/docker-" + cid + ".scope",
		Container{Runtime: "docker", ContainerID: cid, PodUID: uid, QOS: "guaranteed"}},
	{"systemd cri-o conmon", "",
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidSD + ".slice/crio-conmon-" + cid + ".scope",
		Container{PodUID: uid, QOS: "burstable"}},
	{"systemd pod level", "", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidSD + ".slice",
		Container{PodUID: uid, QOS: "besteffort"}},
	{"systemd qos level", "", "/kubepods.slice/kubepods-burstable.slice", Container{}},
	{"systemd kind nested", "/kubelet.slice",
		"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidSD + ".slice/cri-containerd-" + cid + ".scope",
		Container{Runtime: "containerd", ContainerID: cid, PodUID: uid, QOS: "besteffort"}},
	{"systemd e2e harness prefix", "/fl1a2b-kubelet",
		"/fl1a2b-kubelet/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidSD + ".slice/cri-containerd-" + cid + ".scope",
		Container{Runtime: "containerd", ContainerID: cid, PodUID: uid, QOS: "burstable"}},
	{"systemd static pod", "",
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + staticUID + ".slice/cri-containerd-" + cid + ".scope",
		Container{Runtime: "containerd", ContainerID: cid, QOS: "burstable"}},
	{"systemd runc init below the scope", "",
		"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidSD + ".slice/cri-containerd-" + cid + ".scope/init",
		Container{Runtime: "containerd", ContainerID: cid, PodUID: uid, QOS: "besteffort"}},
	{"systemd crun container below the scope", "",
		"/kubepods.slice/kubepods-pod" + uidSD + ".slice/crio-" + cid + ".scope/container",
		Container{Runtime: "cri-o", ContainerID: cid, PodUID: uid, QOS: "guaranteed"}},
	{"containerd without SystemdCgroup under a systemd kubelet", "/system.slice/containerd.service",
		"/system.slice/containerd.service/kubepods-burstable-pod" + uidSD + ".slice:cri-containerd:" + cid,
		Container{Runtime: "containerd", ContainerID: cid, PodUID: uid, QOS: "burstable"}},

	// Docker without Kubernetes.
	{"docker cgroupfs", "", "/docker/" + cid, Container{Runtime: "docker", ContainerID: cid}},
	{"docker systemd", "", "/system.slice/docker-" + cid + ".scope", Container{Runtime: "docker", ContainerID: cid}},
	{"docker rootless", "", "/user.slice/user-1000.slice/user@1000.service/user.slice/docker-" + cid + ".scope",
		Container{Runtime: "docker", ContainerID: cid}},
	{"docker in docker", "", "/docker/" + cid2 + "/docker/" + cid, Container{Runtime: "docker", ContainerID: cid}},
	{"docker in a pod", "", "/kubepods/besteffort/pod" + uid + "/" + cid2 + "/docker/" + cid,
		Container{Runtime: "docker", ContainerID: cid, PodUID: uid, QOS: "besteffort"}},

	// podman.
	{"podman rootful", "", "/machine.slice/libpod-" + cid + ".scope", Container{Runtime: "podman", ContainerID: cid}},
	{"podman rootless", "", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + cid + ".scope",
		Container{Runtime: "podman", ContainerID: cid}},
	{"podman container child", "", "/machine.slice/libpod-" + cid + ".scope/container", Container{Runtime: "podman", ContainerID: cid}},
	{"podman pod", "", "/machine.slice/machine-libpod_pod_" + podmanPod + ".slice/libpod-" + cid + ".scope",
		Container{Runtime: "podman", ContainerID: cid}},
	{"podman conmon", "", "/machine.slice/libpod-conmon-" + cid + ".scope", Container{}},
	{"podman cgroupfs", "", "/libpod_parent/libpod-" + cid, Container{Runtime: "podman", ContainerID: cid}},

	// containerd without Kubernetes.
	{"containerd namespace", "", "/default/" + cid, Container{Runtime: "containerd", ContainerID: cid}},
	{"nerdctl systemd", "", "/system.slice/nerdctl-" + cid + ".scope", Container{Runtime: "containerd", ContainerID: cid}},

	// No container.
	{"root", "", "/", Container{}},
	{"service", "", "/system.slice/sshd.service", Container{}},
	{"session", "", "/user.slice/user-1000.slice/session-3.scope", Container{}},
	{"containerd daemon", "", "/system.slice/containerd.service", Container{}},
	{"e2e harness node process", "", "/fl1a2b-kubelet/system/node-a", Container{}},
	{"uppercase id is not a runtime's", "", "/docker/" + strings.ToUpper(cid), Container{}},
	{"pod directory outside kubepods", "", "/pod" + uid + "/" + cid, Container{Runtime: "containerd", ContainerID: cid}},

	// Anchored: a kubepods-shaped name anywhere but directly below
	// kubelet's root names no pod, whoever could create it. The first is
	// what systemd lets any user create in their own delegated tree.
	{"user delegation claims a pod (systemd)", "",
		"/user.slice/user-1000.slice/user@1000.service/app.slice/kubepods-besteffort-pod" + uidSD + ".slice/cri-containerd-" + cid + ".scope",
		Container{Runtime: "containerd", ContainerID: cid}},
	{"user delegation claims a pod (cgroupfs)", "",
		"/user.slice/user-1000.slice/user@1000.service/kubepods/besteffort/pod" + uid + "/" + cid,
		Container{Runtime: "containerd", ContainerID: cid}},
	{"a pod's own subtree claims another pod", "",
		"/kubepods/besteffort/pod" + uid + "/" + cid2 + "/kubepods/burstable/pod" + otherUID + "/" + cid,
		Container{Runtime: "cri", ContainerID: cid, PodUID: uid, QOS: "besteffort"}},
	{"a pod's own subtree claims another pod (systemd)", "",
		"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidSD + ".slice/cri-containerd-" + cid2 + ".scope/" +
			"kubepods.slice/kubepods-pod" + strings.ReplaceAll(otherUID, "-", "_") + ".slice/cri-containerd-" + cid + ".scope",
		Container{Runtime: "containerd", ContainerID: cid, PodUID: uid, QOS: "besteffort"}},
	{"kubepods beside a non-default root", "/kubelet", "/kubepods/besteffort/pod" + uid + "/" + cid,
		Container{Runtime: "containerd", ContainerID: cid}},
	{"root is a name prefix, not a parent", "/kubelet", "/kubelet2/kubepods/besteffort/pod" + uid + "/" + cid,
		Container{Runtime: "containerd", ContainerID: cid}},
	{"pod level not directly below its QoS", "", "/kubepods/besteffort/extra/pod" + uid + "/" + cid,
		Container{Runtime: "cri", ContainerID: cid}},
	{"systemd pod slice directly below the root", "", "/kubepods-besteffort-pod" + uidSD + ".slice/cri-containerd-" + cid + ".scope",
		Container{Runtime: "containerd", ContainerID: cid}},
	{"systemd pod slice of another QoS parent", "",
		"/kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod" + uidSD + ".slice/cri-containerd-" + cid + ".scope",
		Container{Runtime: "containerd", ContainerID: cid}},
	{"runc collapsed path outside the root", "",
		"/system.slice/containerd.service/kubepods-burstable-pod" + uidSD + ".slice:cri-containerd:" + cid,
		Container{Runtime: "containerd", ContainerID: cid}},
}

func TestParsePath(t *testing.T) {
	for _, tc := range pathCases {
		want := tc.want
		want.Path = tc.path
		if got := ParsePath(tc.path, tc.root); got != want {
			t.Errorf("%s: ParsePath(%q, %q)\n got %+v\nwant %+v", tc.name, tc.path, tc.root, got, want)
		}
	}
}

// TestParsePathCgroupV1 feeds the path part of every line of a cgroup v1
// /proc/<pid>/cgroup (a cgroupfs kubelet on a hybrid host).
func TestParsePathCgroupV1(t *testing.T) {
	proc := `12:pids:/kubepods/burstable/pod` + uid + `/` + cid + `
11:memory:/kubepods/burstable/pod` + uid + `/` + cid + `
4:cpu,cpuacct:/kubepods/burstable/pod` + uid + `/` + cid + `
1:name=systemd:/kubepods/burstable/pod` + uid + `/` + cid + `
0::/kubepods/burstable/pod` + uid + `/` + cid
	want := Container{Runtime: "cri", ContainerID: cid, PodUID: uid, QOS: "burstable"}
	for line := range strings.Lines(proc) {
		fields := strings.SplitN(strings.TrimSpace(line), ":", 3)
		want.Path = fields[2]
		if got := ParsePath(fields[2], ""); got != want {
			t.Errorf("%s: got %+v, want %+v", line, got, want)
		}
	}
}

// Written apart from the parser's own checks, so the fuzzer tests them too.
var (
	containerIDRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	uuidRE        = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

func FuzzParsePath(f *testing.F) {
	for _, tc := range pathCases {
		f.Add(tc.path, tc.root)
	}
	f.Fuzz(func(t *testing.T, path, root string) {
		c := ParsePath(path, root)
		if c.PodUID != "" && !kubeletTop(path, root) {
			t.Errorf("pod %s from a path not below kubelet's root %q", c.PodUID, root)
		}
		if c.Path != path {
			t.Errorf("Path %q, want the input", c.Path)
		}
		if c.ContainerID != "" && !containerIDRE.MatchString(c.ContainerID) {
			t.Errorf("ContainerID %q is not 64 lowercase hex", c.ContainerID)
		}
		if c.PodUID != "" && !uuidRE.MatchString(c.PodUID) {
			t.Errorf("PodUID %q is not a canonical UUID", c.PodUID)
		}
		switch c.QOS {
		case "", QOSGuaranteed, QOSBurstable, QOSBestEffort:
		default:
			t.Errorf("QOS %q", c.QOS)
		}
		switch c.Runtime {
		case "", RuntimeContainerd, RuntimeCRIO, RuntimeDocker, RuntimePodman, RuntimeCRI:
		default:
			t.Errorf("Runtime %q", c.Runtime)
		}
		if (c.Runtime == "") != (c.ContainerID == "") {
			t.Errorf("Runtime %q with ContainerID %q", c.Runtime, c.ContainerID)
		}
	})
}

// kubeletTop reports whether path's first directory below root (a
// directory-wise prefix) is named like kubelet's kubepods level: the only
// place a pod may be read from.
func kubeletTop(path, root string) bool {
	segs := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	rootSegs := strings.FieldsFunc(root, func(r rune) bool { return r == '/' })
	if len(segs) <= len(rootSegs) {
		return false
	}
	for i, r := range rootSegs {
		if segs[i] != r {
			return false
		}
	}
	return strings.Contains(segs[len(rootSegs)], "kubepods")
}
