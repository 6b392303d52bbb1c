package testutil

import "github.com/flowlens/flowlens/internal/bpffd"

// BPFHeld is the eBPF objects one process holds a file descriptor to, by
// kernel id. It comes from the process's own descriptors, so it is exact
// whatever other agents on the host load (bpftool built without its pid
// iterator, as Debian's is, cannot say who holds what).
type BPFHeld struct {
	Progs map[uint32]bool
	Maps  map[uint32]bool
	Links map[uint32]uint32 // link id → id of the program it attaches
}

// HeldBPF lists the eBPF objects pid holds a descriptor to.
func HeldBPF(pid int) (BPFHeld, error) {
	h := BPFHeld{Progs: map[uint32]bool{}, Maps: map[uint32]bool{}, Links: map[uint32]uint32{}}
	return h, bpffd.Walk(pid, h.add)
}

// add records one descriptor from its fdinfo.
func (h BPFHeld) add(kind bpffd.Kind, info bpffd.Info) error {
	switch kind {
	case bpffd.Prog:
		p, err := info.ID("prog_id")
		if err != nil {
			return err
		}
		h.Progs[p] = true
	case bpffd.Map:
		m, err := info.ID("map_id")
		if err != nil {
			return err
		}
		h.Maps[m] = true
	case bpffd.Link:
		l, err := info.ID("link_id")
		if err != nil {
			return err
		}
		p, err := info.ID("prog_id")
		if err != nil {
			return err
		}
		h.Links[l] = p
	}
	return nil
}
