package datapath

import (
	"fmt"
	"os"
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
