package cgroup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// fileidKernfs is the file handle type of kernfs (FILEID_KERNFS): its 8
// bytes are the node id, which for a cgroup is the cgroup id sockets carry.
const fileidKernfs = 0xfe

// errHandlesRefused means the kernel will not open cgroups by handle here
// (no CAP_DAC_READ_SEARCH, or no support), so ids must be found by walking.
var errHandlesRefused = errors.New("cgroups cannot be opened by file handle")

// handleOpener turns cgroup ids into paths the way bpftool and systemd do:
// open_by_handle_at on the cgroup2 mount, then read the path of the fd.
type handleOpener struct {
	mount   string
	mountFD int
}

// openHandles returns an opener for a cgroup2 mount, or nil when mount is
// not one (tests walk plain directories) or cannot be opened.
func openHandles(mount string) *handleOpener {
	var st unix.Statfs_t
	if mount == "" || unix.Statfs(mount, &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil
	}
	fd, err := unix.Open(mount, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	// The fd lives as long as the process: a Resolver is made once.
	return &handleOpener{mount: filepath.Clean(mount), mountFD: fd}
}

// path returns the cgroup's path below the mount ("/a/b"; "/" for the root).
func (h *handleOpener) path(id uint64) (string, error) {
	b := make([]byte, 8)
	binary.NativeEndian.PutUint64(b, id)
	fd, err := unix.OpenByHandleAt(h.mountFD, unix.NewFileHandle(fileidKernfs, b), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
		return "", fmt.Errorf("%w: %w", errHandlesRefused, err)
	case err != nil:
		return "", fmt.Errorf("open cgroup %d: %w", id, err)
	}
	defer unix.Close(fd)
	abs, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", fmt.Errorf("path of cgroup %d: %w", id, err)
	}
	rel, ok := strings.CutPrefix(abs, h.mount)
	if !ok || rel != "" && rel[0] != '/' {
		return "", fmt.Errorf("cgroup %d at %s, outside %s", id, abs, h.mount)
	}
	if rel == "" {
		rel = "/"
	}
	return rel, nil
}
