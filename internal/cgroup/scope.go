package cgroup

import (
	"strings"
	"sync/atomic"
)

// Scope is a cgroup subtree an agent watches: the pods of one node of a
// simulated cluster sharing a kernel, or only kubepods on a real node. A
// cgroup is in it when its path is the root's or below it.
type Scope struct {
	root   string // as /proc/<pid>/cgroup shows it, no trailing slash
	lookup func(id uint64) (Container, bool)

	inside, outside, unknown atomic.Uint64
}

// NewScope returns the subtree at root, whose cgroups r names.
func NewScope(root string, r *Resolver) *Scope {
	return &Scope{root: strings.TrimSuffix(root, "/"), lookup: r.Lookup}
}

// ScopeStats counts the scope's answers.
type ScopeStats struct {
	Inside, Outside uint64
	// Unknown are ids that named no cgroup any more (or never did): a
	// socket of a cgroup removed before its record was read is outside,
	// since nothing can tell where it was.
	Unknown uint64
}

// Contains reports whether the cgroup with this id is in the scope.
func (s *Scope) Contains(id uint64) bool {
	var c Container
	ok := id != 0
	if ok {
		c, ok = s.lookup(id)
	}
	switch {
	case !ok:
		s.unknown.Add(1)
		return false
	case c.Path == s.root || strings.HasPrefix(c.Path, s.root+"/") || s.root == "":
		s.inside.Add(1)
		return true
	}
	s.outside.Add(1)
	return false
}

// Stats reads the counters.
func (s *Scope) Stats() ScopeStats {
	return ScopeStats{Inside: s.inside.Load(), Outside: s.outside.Load(), Unknown: s.unknown.Load()}
}
