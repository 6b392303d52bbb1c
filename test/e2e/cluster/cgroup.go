package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/flowlens/flowlens/internal/cgroup"
)

// CgroupDriver selects how kubelet would have named a pod's cgroups.
type CgroupDriver int

const (
	// CgroupFS is kubelet's cgroupfs driver:
	// kubepods/besteffort/pod<uid>/<container id>.
	CgroupFS CgroupDriver = iota
	// Systemd is kubelet's systemd driver with containerd:
	// kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice/cri-containerd-<id>.scope.
	Systemd
)

// QOSClass is the pod's QoS class, which picks the middle level of the path.
type QOSClass string

const (
	BestEffort QOSClass = "besteffort"
	Burstable  QOSClass = "burstable"
	Guaranteed QOSClass = "guaranteed" // no QoS level in the path
)

// cgroup2 is where the cgroup v2 hierarchy is mounted (dir) and which
// cgroup path that mount shows at its top (root, as /proc/<pid>/cgroup would
// print it).
type cgroup2 struct {
	dir  string
	root string
}

// cgroup2Mount finds the cgroup v2 mount and the cgroup it shows at its top.
func cgroup2Mount() (cgroup2, error) {
	m, err := cgroup.ReadMount()
	return cgroup2{dir: m.Dir, root: m.Root}, err
}

// podCgroupPath is the kubelet-shaped path of one container's cgroup,
// relative to the kubelet root (kubepods lives under it).
func podCgroupPath(driver CgroupDriver, qos QOSClass, uid types.UID, containerID string) string {
	if qos == "" {
		qos = BestEffort
	}
	switch driver {
	case Systemd:
		// systemd escapes "-" in unit names, so kubelet writes the uid with "_".
		u := strings.ReplaceAll(string(uid), "-", "_")
		if qos == Guaranteed {
			return path.Join("kubepods.slice", "kubepods-pod"+u+".slice", "cri-containerd-"+containerID+".scope")
		}
		q := "kubepods-" + string(qos)
		return path.Join("kubepods.slice", q+".slice", q+"-pod"+u+".slice", "cri-containerd-"+containerID+".scope")
	default:
		if qos == Guaranteed {
			return path.Join("kubepods", "pod"+string(uid), containerID)
		}
		return path.Join("kubepods", string(qos), "pod"+string(uid), containerID)
	}
}

// killCgroup kills every process in dir and its descendants (cgroup.kill,
// Linux 5.14+) and waits until the cgroup is empty. The harness only calls it
// on cgroups it created, which hold only processes it started.
func killCgroup(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("kill cgroup %s: %w", dir, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil || strings.Contains(string(data), "populated 0") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still populated after kill", dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// removeCgroupTree removes dir and every cgroup below it, deepest first. It
// fails (leaving the rest) if a cgroup still holds a process.
func removeCgroupTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("walk cgroup %s: %w", dir, err)
	}
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
		}
	}
	return errors.Join(errs...)
}
