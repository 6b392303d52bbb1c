package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// EmptyHooks is a program that returns at once on every hook the agent's
// programs run from: what those hooks cost a workload before any work is
// done (the bench's floor). BPF stats leave out the kernel's own dispatch
// around a program run; a workload measured with these attached shows it.
type EmptyHooks struct {
	progs []*ebpf.Program
	links []link.Link
	// Attached names the hooks, in the agent's order.
	Attached []Hook
}

// AttachEmpty attaches the empty programs, the cgroup ones on cgroupMount.
// Iterators (run once an interval by the agent) and TLS uprobes (only in
// the libraries that do TLS) are left out: they cost nothing per packet or
// call. The drop hook is in, as in the agent's default.
func AttachEmpty(cgroupMount string) (*EmptyHooks, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit (needs root, or CAP_BPF): %w", err)
	}
	if err := checkCgroup2(cgroupMount); err != nil {
		return nil, err
	}
	spec, err := loadFlowlens()
	if err != nil {
		return nil, fmt.Errorf("load eBPF spec: %w", err)
	}
	e := &EmptyHooks{}
	for _, h := range plan(spec, cgroupMount, kernelHasType, kernelTracepointArgs) {
		ps := spec.Programs[h.Program]
		if !h.Attached || ps.Type == ebpf.Kprobe || ps.AttachType == ebpf.AttachTraceIter {
			continue
		}
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name:       ps.Name,
			Type:       ps.Type,
			AttachType: ps.AttachType,
			AttachTo:   ps.AttachTo,
			License:    ps.License,
			Instructions: asm.Instructions{
				asm.Mov.Imm(asm.R0, passVerdict(ps.Type)),
				asm.Return(),
			},
		})
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("load empty %s: %w", h.Program, err)
		}
		e.progs = append(e.progs, prog)
		l, err := attachHook(prog, h, cgroupMount)
		if err != nil {
			e.Close()
			return nil, err
		}
		e.links = append(e.links, l)
		e.Attached = append(e.Attached, h)
	}
	if len(e.links) == 0 {
		return nil, errors.New("no eBPF hook could be attached")
	}
	return e, nil
}

// passVerdict is the return value that lets the packet, socket or call
// through: 1 for the cgroup programs (0 would drop or refuse it), 0 for a
// tracepoint, whose value nobody reads.
func passVerdict(t ebpf.ProgramType) int32 {
	switch t {
	case ebpf.CGroupSKB, ebpf.CGroupSock, ebpf.CGroupSockAddr:
		return 1
	}
	return 0
}

// Close detaches and unloads the programs.
func (e *EmptyHooks) Close() error {
	var errs []error
	for _, l := range e.links {
		errs = append(errs, l.Close())
	}
	for _, p := range e.progs {
		errs = append(errs, p.Close())
	}
	e.links, e.progs = nil, nil
	return errors.Join(errs...)
}
