package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ResolverConfig bounds a Resolver.
type ResolverConfig struct {
	Mount      string        // cgroup2 mount dir (ReadMount); required
	MaxEntries int           // most ids cached; default 16384
	MinRescan  time.Duration // at most one tree walk per this period; default 1s
	// KubeletRoot is the cgroup kubelet keeps its pods under, below Mount
	// (ParsePath); "" is Mount's own root.
	KubeletRoot string
}

// ResolverStats counts what a Resolver did since it was made.
type ResolverStats struct {
	Entries int    // ids cached now
	Hits    uint64 // lookups answered
	Misses  uint64 // lookups of ids not found, or not looked for while walks were rate limited
	Rescans uint64 // tree walks
	Evicted uint64 // cgroups found but not cached, or dropped, for want of room
	Handles uint64 // ids resolved by file handle, without a walk
	ScanErr error  // the first problem of the last walk, nil if it had none
}

// Resolver maps cgroup ids to Containers by reading the cgroup2 hierarchy.
// It is safe for concurrent use. Its memory is bounded by MaxEntries and its
// work by MinRescan, whatever ids it is asked about.
type Resolver struct {
	cfg ResolverConfig
	// handles opens cgroups by id on a cgroup2 mount; nil elsewhere, or
	// once the kernel refused it, and then the Resolver walks.
	handles *handleOpener

	mu       sync.Mutex
	byID     map[uint64]Container
	lastWalk time.Time // start of the last walk; zero before the first
	walking  bool
	stats    ResolverStats
}

// NewResolver returns a Resolver that walks cfg.Mount on demand.
func NewResolver(cfg ResolverConfig) *Resolver {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 16384
	}
	if cfg.MinRescan <= 0 {
		cfg.MinRescan = time.Second
	}
	return &Resolver{cfg: cfg, byID: make(map[uint64]Container), handles: openHandles(cfg.Mount)}
}

// Lookup returns the Container of the cgroup with this id, and whether the
// cgroup was found. On a cgroup2 mount an id it has not seen is opened by
// file handle, which costs three system calls and finds a cgroup made a
// moment ago. Elsewhere, or if the kernel refuses handles, an id it has not
// seen makes it walk the tree again, at
// most once per MinRescan: until the next walk is allowed every unknown id is
// answered "not found" at once, so a flood of ids of short-lived or foreign
// cgroups costs one walk per period, and no memory. Lookups during a walk
// are answered from the previous one instead of waiting.
func (r *Resolver) Lookup(id uint64) (Container, bool) {
	r.mu.Lock()
	if c, ok := r.byID[id]; ok {
		r.stats.Hits++
		r.mu.Unlock()
		return c, true
	}
	if h := r.handles; h != nil {
		r.mu.Unlock()
		path, err := h.path(id)
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case err == nil:
			c := ParsePath(path, r.cfg.KubeletRoot)
			r.stats.Handles++
			r.stats.Hits++
			r.insert(id, c)
			return c, true
		case errors.Is(err, errHandlesRefused):
			r.handles = nil
			r.stats.ScanErr = err
		default: // the cgroup is gone, or was never below this mount
			r.stats.Misses++
			return Container{}, false
		}
		return r.lookupByWalk(id)
	}
	defer r.mu.Unlock()
	return r.lookupByWalk(id)
}

// insert caches one id, making room at random if the cache is full.
func (r *Resolver) insert(id uint64, c Container) {
	if len(r.byID) >= r.cfg.MaxEntries {
		for other := range r.byID {
			delete(r.byID, other)
			r.stats.Evicted++
			break
		}
	}
	r.byID[id] = c
}

// lookupByWalk is Lookup without file handles; r.mu is held.
func (r *Resolver) lookupByWalk(id uint64) (Container, bool) {
	if r.walking || !r.lastWalk.IsZero() && time.Since(r.lastWalk) < r.cfg.MinRescan {
		r.stats.Misses++
		return Container{}, false
	}
	r.walking, r.lastWalk = true, time.Now()
	r.stats.Rescans++
	r.mu.Unlock()

	byID, evicted, err := walk(r.cfg.Mount, r.cfg.KubeletRoot, r.cfg.MaxEntries, id)

	r.mu.Lock()
	r.walking = false
	if byID != nil {
		r.byID = byID
	}
	r.stats.Evicted += evicted
	r.stats.ScanErr = err
	c, ok := r.byID[id]
	if ok {
		r.stats.Hits++
	} else {
		r.stats.Misses++
	}
	return c, ok
}

// Stats returns the Resolver's counters.
func (r *Resolver) Stats() ResolverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Entries = len(r.byID)
	return s
}

// walk maps the id of every cgroup below mount to its parsed path. A cgroup
// v2 id is the inode number of its directory in the cgroup2 filesystem
// (kernfs uses the node id as inode on 64-bit hosts), so a directory walk
// finds it without reading any cgroup file.
//
// When there are more than limit cgroups, the id being looked up is kept
// first, then containers and pods, then the plain cgroups of host services:
// naming workloads is the point, and since walks go in the same order every
// time, a late cgroup that lost its place once would lose it every time.
// A nil map means the walk failed as a whole; errors below the top only skip
// that subtree, because cgroups come and go while walking.
func walk(mount, kubeletRoot string, limit int, want uint64) (map[uint64]Container, uint64, error) {
	root := filepath.Clean(mount)
	t := table{byID: make(map[uint64]Container), limit: limit}
	var (
		wanted      Container
		foundWanted bool
		first       error // first subtree skipped for an error
	)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			return nil
		}
		var info fs.FileInfo
		if err == nil {
			info, err = d.Info()
		}
		if err != nil {
			if path == root {
				return err
			}
			if first == nil && !errors.Is(err, fs.ErrNotExist) {
				first = fmt.Errorf("walk cgroup %s: %w", path, err)
			}
			return filepath.SkipDir
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no inode in %T", path, info.Sys())
		}
		c := ParsePath("/"+strings.TrimLeft(strings.TrimPrefix(path, root), "/"), kubeletRoot)
		if st.Ino == want {
			wanted, foundWanted = c, true
		} else {
			t.add(st.Ino, c)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("walk cgroups at %s: %w", mount, err)
	}
	if foundWanted {
		t.force(want, wanted)
	}
	return t.byID, t.evicted, first
}

// table is a walk's bounded result.
type table struct {
	byID    map[uint64]Container
	limit   int
	spare   []uint64 // cached ids of plain cgroups, the first to give way
	evicted uint64
}

func (t *table) add(id uint64, c Container) {
	workload := c.ContainerID != "" || c.PodUID != ""
	switch {
	case len(t.byID) < t.limit:
		t.byID[id] = c
		if !workload {
			t.spare = append(t.spare, id)
		}
	case workload && len(t.spare) > 0:
		t.evictSpare()
		t.byID[id] = c
	default:
		t.evicted++
	}
}

// force caches id even when full, in place of a plain cgroup if there is
// one, else of any.
func (t *table) force(id uint64, c Container) {
	if len(t.byID) >= t.limit {
		if len(t.spare) > 0 {
			t.evictSpare()
		} else {
			for other := range t.byID {
				delete(t.byID, other)
				t.evicted++
				break
			}
		}
	}
	t.byID[id] = c
}

func (t *table) evictSpare() {
	delete(t.byID, t.spare[len(t.spare)-1])
	t.spare = t.spare[:len(t.spare)-1]
	t.evicted++
}
