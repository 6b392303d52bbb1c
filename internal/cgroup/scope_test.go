package cgroup

import "testing"

func TestScopeContains(t *testing.T) {
	paths := map[uint64]string{
		1: "/fl01-kubelet/node-a/kubepods/besteffort/pod1/c1",
		2: "/fl01-kubelet/node-a",
		3: "/fl01-kubelet/node-ab/kubepods/besteffort/pod3/c3", // a sibling sharing the prefix
		4: "/system.slice/sshd.service",
	}
	lookup := func(id uint64) (Container, bool) { p, ok := paths[id]; return Container{Path: p}, ok }
	s := &Scope{root: "/fl01-kubelet/node-a", lookup: lookup}
	for id, want := range map[uint64]bool{0: false, 1: true, 2: true, 3: false, 4: false, 9: false} {
		if got := s.Contains(id); got != want {
			t.Errorf("cgroup %d (%q): in scope %v, want %v", id, paths[id], got, want)
		}
	}
	if st := s.Stats(); st != (ScopeStats{Inside: 2, Outside: 2, Unknown: 2}) {
		t.Errorf("stats %+v, want 2 inside, 2 outside, 2 unknown", st)
	}
	all := &Scope{lookup: lookup}
	if !all.Contains(4) {
		t.Error("the root scope must contain every known cgroup")
	}
}
