// Package bpffd lists the eBPF objects a process holds, from its own file
// descriptors (/proc/<pid>/fd and fdinfo). That is exact whatever else is
// loaded on the host, unlike names, and needs no bpftool built with its pid
// iterator (Debian's is not). The tests use it to check what an agent
// attached and left behind, the benchmark to measure what its programs cost.
package bpffd

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Kind is what an eBPF descriptor refers to.
type Kind string

const (
	Prog Kind = "prog"
	Map  Kind = "map"
	Link Kind = "link"
)

// kinds are the names the kernel gives the anonymous inodes behind eBPF
// descriptors (links have an underscore, programs and maps a dash).
var kinds = map[string]Kind{
	"anon_inode:bpf-prog": Prog,
	"anon_inode:bpf-map":  Map,
	"anon_inode:bpf_link": Link,
}

// Info is one descriptor's fdinfo: "key:\tvalue" lines.
type Info map[string]string

// Parse reads fdinfo text.
func Parse(text string) Info {
	out := Info{}
	for line := range strings.Lines(text) {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// Uint is a numeric field, 0 when absent or malformed.
func (i Info) Uint(key string) uint64 {
	n, _ := strconv.ParseUint(i[key], 10, 64)
	return n
}

// ID is a kernel object id field (prog_id, map_id, link_id): an error
// when absent, malformed or 0, which the kernel never hands out.
func (i Info) ID(key string) (uint32, error) {
	n, err := strconv.ParseUint(i[key], 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("fdinfo %s %q is not an id", key, i[key])
	}
	return uint32(n), nil
}

// Walk calls fn for every eBPF descriptor pid holds. Descriptors closed
// while it walks are skipped.
func Walk(pid int, fn func(Kind, Info) error) error {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list descriptors of pid %d: %w", pid, err)
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		kind, ok := kinds[target]
		if !ok {
			continue
		}
		text, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		if err := fn(kind, Parse(string(text))); err != nil {
			return fmt.Errorf("descriptor %s of pid %d: %w", e.Name(), pid, err)
		}
	}
	return nil
}
