package cgroup

import (
	"encoding/binary"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/internal/testutil"
)

// cgroup2 returns the real cgroup2 mount, or skips: these tests make and
// remove cgroups, which takes root.
func cgroup2(t *testing.T) string {
	t.Helper()
	testutil.RequirePrivileged(t) // creates cgroups under the cgroup2 mount
	m, err := ReadMount()
	if err != nil {
		t.Skipf("no cgroup2 hierarchy: %v", err)
	}
	return m.Dir
}

// cgroupID is the kernel's id of the cgroup at dir, the way bpftool and
// systemd read it: a cgroup's file handle is its 8-byte id.
func cgroupID(t *testing.T, dir string) uint64 {
	t.Helper()
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err != nil {
		t.Fatalf("name_to_handle_at %s: %v", dir, err)
	}
	if b := h.Bytes(); len(b) == 8 {
		return binary.NativeEndian.Uint64(b)
	}
	t.Fatalf("file handle of %s: %d bytes, want 8", dir, h.Size())
	return 0
}

// TestCgroupIDIsInode checks the fact the Resolver rests on: a cgroup's id
// is its directory's inode number.
func TestCgroupIDIsInode(t *testing.T) {
	mount := cgroup2(t)
	rel := uniqueTop() + "/idcheck"
	mkdirs(t, mount, rel)
	for _, dir := range []string{mount, filepath.Dir(filepath.Join(mount, rel)), filepath.Join(mount, rel)} {
		if id, ino := cgroupID(t, dir), inode(t, dir); id != ino {
			t.Errorf("%s: cgroup id %d, inode %d", dir, id, ino)
		}
	}
}

// TestResolverCgroup2 runs the Resolver on a kubelet-shaped tree under the
// real cgroup2 mount, looking up the kernel's cgroup ids: each is opened by
// file handle, with no walk, and a cgroup made a moment ago is found at once.
func TestResolverCgroup2(t *testing.T) {
	mount := cgroup2(t)
	k := newKubeletTree(t, mount)
	r := NewResolver(ResolverConfig{Mount: mount, KubeletRoot: k.top, MaxEntries: 2})
	k.checkLookups(t, r, mount, cgroupID)
	if got, ok := r.Lookup(cgroupID(t, mount)); !ok || got.Path != "/" {
		t.Errorf("Lookup(root) = %+v, %v", got, ok)
	}
	if s := r.Stats(); s.Handles != 4 || s.Rescans != 0 || s.Entries != 2 || s.Evicted != 2 || s.ScanErr != nil {
		t.Errorf("stats %+v: want 4 ids by handle, no walk, 2 cached and 2 evicted", s)
	}

	// Made right after a lookup: a rate-limited walk would miss it.
	fresh := k.top + "/kubepods/besteffort/pod" + uid + "/" + cid2
	mkdirs(t, mount, fresh)
	if got, ok := r.Lookup(cgroupID(t, filepath.Join(mount, fresh))); !ok || got.ContainerID != cid2 {
		t.Errorf("fresh cgroup: %+v, %v", got, ok)
	}

	for i := range uint64(1000) {
		if _, ok := r.Lookup(unknownID + i); ok {
			t.Fatalf("unknown id %d found", unknownID+i)
		}
	}
	if s := r.Stats(); s.Misses != 1000 || s.Rescans != 0 || s.Entries > 2 {
		t.Errorf("stats %+v: want 1000 misses answered by the kernel, no walk, at most 2 cached", s)
	}
}
