// Package cgroup finds the cgroup v2 hierarchy and names what a socket's
// cgroup belongs to. Sockets carry the cgroup of the process that created
// them, and accepted sockets inherit their listener's, so the cgroup is the
// one attribution that is right on both sides of a connection even in
// softirq context, where the current process means nothing.
//
// # From id to path
//
// The datapath reports a socket's cgroup v2 id (sk_cgrp_data.cgroup->kn->id).
// That id is the inode number of the cgroup's directory in the cgroup2
// filesystem, and also its kernfs file handle, which is how bpftool and
// systemd turn ids into paths; the tests check both on the real mount. The
// Resolver does the same: open_by_handle_at on the mount (ReadMount: never
// assume /sys/fs/cgroup, hybrid hosts put cgroup2 at
// /sys/fs/cgroup/unified), then the fd's path, three system calls for an id
// it has not seen, so a pod's first connection is named even if its cgroup
// was made a millisecond before. Where the kernel refuses handles (no
// CAP_DAC_READ_SEARCH) or the mount is not cgroup2, it walks the tree
// instead and indexes every directory by inode. Kernfs does not reuse ids,
// so an entry of a removed cgroup is stale but never wrong.
//
// The Resolver is bounded both ways, because ids come from the network's
// sockets, not from us: at most MaxEntries ids are cached (Evicted counts
// what gave way), and when walking, an unknown id starts a walk at most once
// per MinRescan. Until then every unknown id is answered "not found" at
// once, which is a negative cache that costs no memory, so a flood of
// unknown ids costs one walk per period.
//
// # From path to workload
//
// ParsePath reads a path by its directory names alone, which works the same
// on a cgroup v2 path and on the path part of a cgroup v1 line. <root> is
// kubelet's cgroup root (--cgroup-root; the hierarchy's root by default),
// which the caller passes:
//
//	kubelet, cgroupfs driver   <root>/kubepods[/besteffort|/burstable]/pod<uid>/<id>
//	                           (.../crio-<id> for CRI-O, .../crio-conmon-<id> is conmon)
//	kubelet, systemd driver    <root>/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/
//	                           cri-containerd-<id>.scope | crio-<id>.scope | docker-<id>.scope
//	                           (below a root slice every slice is prefixed: kubelet-kubepods-...)
//	containerd, runc without   <root>/kubepods-<qos>-pod<uid_>.slice:cri-containerd:<id>
//	its systemd driver         (<root> is then containerd's own cgroup)
//	docker                     /docker/<id>, <any>.slice/docker-<id>.scope
//	podman                     <any>.slice/libpod-<id>.scope[/container], /libpod_parent/libpod-<id>
//	containerd                 /<namespace>/<id>, <any>.slice/nerdctl-<id>.scope
//
// A pod is read only from that place: kubepods directly below the root,
// then the QoS level, then the pod. Creating cgroups there takes root, while
// a kubepods-shaped name anywhere else can be made by anyone with a
// delegated subtree (every systemd user has one; so has a pod running a
// nested runtime), and must not name a pod. Such paths still name their
// container. Below the pod, the innermost container wins.
//
// Guaranteed pods have no QoS level. The systemd driver writes a UID's
// dashes as '_', which ParsePath undoes. A container below kubelet's
// cgroupfs layout is a bare id whatever the runtime, so its Runtime is "cri".
// Static pods have a 32-hex hash for UID, which the API shows only as their
// mirror pod's kubernetes.io/config.hash annotation; their PodUID is "" and
// the container id is what names them.
package cgroup
