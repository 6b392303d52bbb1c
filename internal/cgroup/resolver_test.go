package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// unknownID is far above any inode number a test tree gets.
const unknownID = 1 << 62

// mkdirs creates each directory of rel below base, parents first, and
// removes them in t.Cleanup, deepest first (cleanups run last-in first-out),
// also when the test fails: a cgroup can only be removed with rmdir once it
// has no children.
func mkdirs(t *testing.T, base string, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		dir := base
		for name := range strings.SplitSeq(rel, "/") {
			dir = filepath.Join(dir, name)
			if err := os.Mkdir(dir, 0o755); errors.Is(err, fs.ErrExist) {
				continue
			} else if err != nil {
				t.Fatalf("mkdir: %v", err)
			}
			made := dir
			t.Cleanup(func() {
				if err := os.Remove(made); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			})
		}
	}
}

func inode(t *testing.T, dir string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatalf("stat: %v", err)
	}
	return st.Ino
}

func uniqueTop() string { return fmt.Sprintf("flcg%08x-kubelet", rand.Uint32()) }

// kubeletTree makes a kubelet-shaped tree below a fresh top directory, with
// one container of each driver and a plain host cgroup, in a temporary
// directory or under the real cgroup2 mount.
type kubeletTree struct{ top, cgroupfs, systemd, host string }

func newKubeletTree(t *testing.T, mount string) kubeletTree {
	top := uniqueTop()
	k := kubeletTree{top: top,
		cgroupfs: top + "/kubepods/besteffort/pod" + uid + "/" + cid,
		systemd:  top + "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidSD + ".slice/cri-containerd-" + cid2 + ".scope",
		host:     top + "/system/node-a",
	}
	mkdirs(t, mount, k.cgroupfs, k.systemd, k.host)
	return k
}

// checkLookups looks up the tree's three cgroups by id and checks what r
// names them.
func (k kubeletTree) checkLookups(t *testing.T, r *Resolver, mount string, id func(*testing.T, string) uint64) {
	t.Helper()
	for _, tc := range []struct {
		rel  string
		want Container
	}{
		{k.cgroupfs, Container{Runtime: "cri", ContainerID: cid, PodUID: uid, QOS: "besteffort"}},
		{k.systemd, Container{Runtime: "containerd", ContainerID: cid2, PodUID: uid, QOS: "burstable"}},
		{k.host, Container{}},
	} {
		tc.want.Path = "/" + tc.rel
		if got, ok := r.Lookup(id(t, filepath.Join(mount, tc.rel))); !ok || got != tc.want {
			t.Errorf("Lookup(%s) = %+v, %v; want %+v", tc.rel, got, ok, tc.want)
		}
	}
}

// TestResolver walks a tree of plain directories (no cgroup2 mount, so no
// file handles), where cgroup ids are inodes.
func TestResolver(t *testing.T) {
	mount := t.TempDir()
	id := inode
	k := newKubeletTree(t, mount)
	cgroupfs, host := k.cgroupfs, k.host

	t.Run("lookup", func(t *testing.T) {
		r := NewResolver(ResolverConfig{Mount: mount, KubeletRoot: k.top})
		k.checkLookups(t, r, mount, id)
		if got, _ := r.Lookup(id(t, filepath.Join(mount, cgroupfs))); got.ContainerID != cid {
			t.Errorf("ContainerID = %q, want %q", got.ContainerID, cid)
		}
		if s := r.Stats(); s.Rescans != 1 || s.Hits != 4 || s.Misses != 0 || s.ScanErr != nil {
			t.Errorf("stats %+v: want 1 walk answering all 4 lookups", s)
		}
	})

	t.Run("bound", func(t *testing.T) {
		const limit = 2
		r := NewResolver(ResolverConfig{Mount: mount, MaxEntries: limit})
		want := Container{Path: "/" + host}
		if got, ok := r.Lookup(id(t, filepath.Join(mount, host))); !ok || got != want {
			t.Errorf("Lookup = %+v, %v: the id looked up was not kept", got, ok)
		}
		if s := r.Stats(); s.Entries > limit || s.Evicted == 0 || s.Rescans != 1 {
			t.Errorf("stats %+v: want at most %d entries, some evicted, 1 walk", s, limit)
		}
	})

	t.Run("burst of unknown ids", func(t *testing.T) {
		r := NewResolver(ResolverConfig{Mount: mount})
		for i := range uint64(1000) {
			if _, ok := r.Lookup(unknownID + i); ok {
				t.Fatalf("unknown id %d found", unknownID+i)
			}
		}
		// The period may end during the burst once; no more.
		if s := r.Stats(); s.Rescans < 1 || s.Rescans > 2 || s.Misses != 1000 {
			t.Errorf("stats %+v: want 1-2 walks for 1000 misses", s)
		}
	})
}

// TestResolverPrefersWorkloads checks what a full walk keeps: the id looked
// up, then pods and containers, then plain cgroups.
func TestResolverPrefersWorkloads(t *testing.T) {
	mount := t.TempDir()
	pod := "kubepods/pod" + uid
	rels := []string{"a/b/c/d/e", pod + "/" + cid, pod + "/" + cid2, "z/y/x"}
	mkdirs(t, mount, rels...)
	ids := map[string]uint64{"/" + pod: inode(t, filepath.Join(mount, pod))}
	for _, rel := range rels {
		ids["/"+rel] = inode(t, filepath.Join(mount, rel))
	}

	// 13 cgroups (with the top) for 3 entries: the pod and its 2 containers win.
	r := NewResolver(ResolverConfig{Mount: mount, MaxEntries: 3, MinRescan: time.Hour})
	for _, p := range []string{"/" + pod, "/" + pod + "/" + cid, "/" + pod + "/" + cid2} {
		if c, ok := r.Lookup(ids[p]); !ok || c.Path != p {
			t.Errorf("Lookup(%s) = %+v, %v", p, c, ok)
		}
	}
	if s := r.Stats(); s.Entries != 3 || s.Evicted != 10 || s.Rescans != 1 {
		t.Errorf("stats %+v: want 3 entries, 10 evicted, 1 walk", s)
	}

	// The id looked up is kept even when workloads fill every place.
	r = NewResolver(ResolverConfig{Mount: mount, MaxEntries: 2, MinRescan: time.Hour})
	if c, ok := r.Lookup(ids["/z/y/x"]); !ok || c != (Container{Path: "/z/y/x"}) {
		t.Errorf("Lookup(/z/y/x) = %+v, %v", c, ok)
	}
	if s := r.Stats(); s.Entries != 2 || s.Evicted != 11 {
		t.Errorf("stats %+v: want 2 entries, 11 evicted", s)
	}
}

// TestResolverNewCgroup checks that a cgroup made after a walk is found once
// the next walk is allowed, and not before.
func TestResolverNewCgroup(t *testing.T) {
	mount := t.TempDir()
	r := NewResolver(ResolverConfig{Mount: mount, MinRescan: 50 * time.Millisecond})
	if _, ok := r.Lookup(unknownID); ok {
		t.Fatal("unknown id found")
	}
	rel := "system.slice/docker-" + cid + ".scope"
	mkdirs(t, mount, rel)
	id := inode(t, filepath.Join(mount, rel))
	if _, ok := r.Lookup(id); ok {
		t.Fatal("found within the rescan period")
	}
	time.Sleep(60 * time.Millisecond)
	want := Container{Path: "/" + rel, Runtime: "docker", ContainerID: cid}
	if got, ok := r.Lookup(id); !ok || got != want {
		t.Fatalf("Lookup = %+v, %v; want %+v", got, ok, want)
	}
	if s := r.Stats(); s.Rescans != 2 {
		t.Errorf("stats %+v: want 2 walks", s)
	}
}

func TestResolverConcurrent(t *testing.T) {
	mount := t.TempDir()
	rel := "kubepods/pod" + uid + "/" + cid
	mkdirs(t, mount, rel)
	id := inode(t, filepath.Join(mount, rel))
	r := NewResolver(ResolverConfig{Mount: mount, MinRescan: time.Millisecond})
	var wg sync.WaitGroup
	for g := range uint64(8) {
		wg.Go(func() {
			for i := range uint64(200) {
				r.Lookup(unknownID + g*1000 + i)
				// A lookup racing the first walk may miss; once a second
				// walk has started, the first one's entries answer.
				walks := r.Stats().Rescans
				if got, _ := r.Lookup(id); got.ContainerID != cid && walks > 1 {
					t.Errorf("ContainerID = %q after a walk", got.ContainerID)
					return
				}
			}
		})
	}
	wg.Wait()
	if s := r.Stats(); s.Hits+s.Misses != 8*200*2 {
		t.Errorf("stats %+v: lookups miscounted", s)
	}
}

func TestResolverBadMount(t *testing.T) {
	r := NewResolver(ResolverConfig{Mount: filepath.Join(t.TempDir(), "absent")})
	if _, ok := r.Lookup(1); ok {
		t.Fatal("found in a missing mount")
	}
	if s := r.Stats(); !errors.Is(s.ScanErr, fs.ErrNotExist) || s.Entries != 0 || s.Misses != 1 {
		t.Errorf("stats %+v: want the walk's error", s)
	}
}
