package cgroup

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ParseProcCgroup reads the text of /proc/<pid>/cgroup and returns the
// Container its most telling line names. On a cgroup v2 host that is the
// one "0::" line; on a v1 or hybrid host kubelet and the runtimes place the
// process in every v1 hierarchy while its v2 cgroup (the one sockets carry)
// says nothing, so the first line naming a pod, else a container, wins.
// kubeletRoot is as for ParsePath: kubelet applies its --cgroup-root to
// every hierarchy alike.
func ParseProcCgroup(text, kubeletRoot string) Container {
	var best Container
	for line := range strings.Lines(text) {
		// hierarchy-ID:controller-list:cgroup-path; the path may hold ':'.
		parts := strings.SplitN(strings.TrimRight(line, "\n"), ":", 3)
		if len(parts) != 3 {
			continue
		}
		c := ParsePath(parts[2], kubeletRoot)
		switch {
		case c.PodUID != "" && c.ContainerID != "":
			return c
		case c.PodUID != "" && best.PodUID == "", c.ContainerID != "" && best.ContainerID == "" && best.PodUID == "":
			best = c
		}
	}
	return best
}

// ProcConfig bounds a Procs cache. Zero values take the defaults.
type ProcConfig struct {
	Root       string        // procfs mount; default /proc
	MaxEntries int           // pids cached; default 4096
	TTL        time.Duration // how long an answer is trusted, since pids are reused; default 10s
	// KubeletRoot is the cgroup kubelet keeps its pods under (ParsePath).
	KubeletRoot string
}

// ProcStats counts what a Procs cache did.
type ProcStats struct {
	Entries       int
	Reads, Errors uint64 // /proc files read, and those that could not be (the process had exited)
}

// Procs names the container of a process from /proc/<pid>/cgroup: the way
// to a pod on cgroup v1 hosts, where a socket's v2 cgroup id names nothing.
// It is safe for concurrent use and bounded.
type Procs struct {
	cfg   ProcConfig
	mu    sync.Mutex
	byPID map[uint32]procEntry
	stats ProcStats
}

type procEntry struct {
	c    Container
	read time.Time
}

// NewProcs returns an empty cache.
func NewProcs(cfg ProcConfig) *Procs {
	if cfg.Root == "" {
		cfg.Root = "/proc"
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 4096
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	return &Procs{cfg: cfg, byPID: make(map[uint32]procEntry)}
}

// Lookup returns the Container of process pid (pid in procfs' namespace),
// and whether the process could be read.
func (p *Procs) Lookup(pid uint32) (Container, bool) {
	now := time.Now()
	p.mu.Lock()
	if e, ok := p.byPID[pid]; ok && now.Sub(e.read) < p.cfg.TTL {
		p.mu.Unlock()
		return e.c, true
	}
	p.mu.Unlock()

	b, err := os.ReadFile(filepath.Join(p.cfg.Root, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Reads++
	if err != nil {
		p.stats.Errors++
		return Container{}, false
	}
	c := ParseProcCgroup(string(b), p.cfg.KubeletRoot)
	if len(p.byPID) >= p.cfg.MaxEntries {
		// Drop what has expired; if nothing has, start afresh rather than
		// grow: a cache miss costs one small file read.
		for k, e := range p.byPID {
			if now.Sub(e.read) >= p.cfg.TTL {
				delete(p.byPID, k)
			}
		}
		if len(p.byPID) >= p.cfg.MaxEntries {
			clear(p.byPID)
		}
	}
	p.byPID[pid] = procEntry{c: c, read: now}
	return c, true
}

// Stats returns the cache's counters.
func (p *Procs) Stats() ProcStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Entries = len(p.byPID)
	return s
}
