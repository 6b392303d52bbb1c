package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// BPFHeld is the eBPF objects one process holds a file descriptor to, by
// kernel id. It comes from the process's own descriptors, so it is exact
// whatever other agents on the host load (bpftool built without its pid
// iterator, as Debian's is, cannot say who holds what).
type BPFHeld struct {
	Progs map[uint32]bool
	Maps  map[uint32]bool
	Links map[uint32]uint32 // link id → id of the program it attaches
}

// bpfInodes are the names the kernel gives the anonymous inodes behind
// eBPF descriptors (links have an underscore, programs and maps a dash).
var bpfInodes = map[string]string{
	"anon_inode:bpf-prog": "prog",
	"anon_inode:bpf-map":  "map",
	"anon_inode:bpf_link": "link",
}

// HeldBPF reads /proc/<pid>/fd and fdinfo for the eBPF objects pid holds.
func HeldBPF(pid int) (BPFHeld, error) {
	h := BPFHeld{Progs: map[uint32]bool{}, Maps: map[uint32]bool{}, Links: map[uint32]uint32{}}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return h, fmt.Errorf("list descriptors of pid %d: %w", pid, err)
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed since the listing
		}
		kind, ok := bpfInodes[target]
		if !ok {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			continue // closed since the listing
		}
		if err := h.add(kind, string(info)); err != nil {
			return h, fmt.Errorf("descriptor %s of pid %d: %w", e.Name(), pid, err)
		}
	}
	return h, nil
}

// add records one descriptor of kind prog, map or link from its fdinfo
// text.
func (h BPFHeld) add(kind, fdinfo string) error {
	fields := map[string]string{}
	for line := range strings.Lines(fdinfo) {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	id := func(key string) (uint32, error) {
		n, err := strconv.ParseUint(fields[key], 10, 32)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("bpf-%s fdinfo: %s %q is not an id", kind, key, fields[key])
		}
		return uint32(n), nil
	}
	switch kind {
	case "prog":
		p, err := id("prog_id")
		if err != nil {
			return err
		}
		h.Progs[p] = true
	case "map":
		m, err := id("map_id")
		if err != nil {
			return err
		}
		h.Maps[m] = true
	case "link":
		l, err := id("link_id")
		if err != nil {
			return err
		}
		p, err := id("prog_id")
		if err != nil {
			return err
		}
		h.Links[l] = p
	}
	return nil
}
