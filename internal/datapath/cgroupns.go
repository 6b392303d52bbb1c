package datapath

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// initCgroupNamespace is the inode of the initial cgroup namespace: fixed
// by the kernel (PROC_CGROUP_INIT_INO), whatever the host.
const initCgroupNamespace = "cgroup:[4026531835]"

// InInitCgroupNamespace reports whether this process sees the host's whole
// cgroup hierarchy. Inside a cgroup namespace (a pod, by default) the
// cgroup2 mount's root is the pod's own cgroup: programs attached there
// would see only the agent's own traffic.
func InInitCgroupNamespace() (bool, error) {
	ns, err := os.Readlink("/proc/self/ns/cgroup")
	if err != nil {
		return false, fmt.Errorf("read cgroup namespace: %w", err)
	}
	return ns == initCgroupNamespace, nil
}

// checkCgroup2 reports whether dir is a cgroup2 mount, so that a wrong
// --cgroup-root (a v1 or hybrid host's /sys/fs/cgroup) is named as such
// rather than as the kernel's "bad file descriptor" at attach.
func checkCgroup2(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("cgroup root %s: %w", dir, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("cgroup root %s is not a cgroup2 mount (filesystem magic %#x): on a hybrid host it is usually %s/unified", dir, st.Type, dir)
	}
	return nil
}
