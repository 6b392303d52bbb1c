package datapath

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// plan decides, before loading, which programs this kernel can take: a
// tp_btf program needs its tracepoint in the kernel's BTF (sock_send_length
// and sock_recv_length exist only since Linux 6.3), the cgroup_skb ones a
// cgroup2 mount. Loading a program whose target is missing would fail the
// whole collection. A tracepoint whose arguments the program reads must
// have at least that many (tpArgs: the tracepoint's argument count).
func plan(spec *ebpf.CollectionSpec, cgroupMount string, hasType func(string) (bool, error), tpArgs func(string) (int, error)) []Hook {
	names := make([]string, 0, len(spec.Programs))
	for name := range spec.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	hooks := make([]Hook, 0, len(names))
	for _, name := range names {
		p := spec.Programs[name]
		h := Hook{Program: name, Attached: true, attach: p.AttachType}
		switch {
		case p.Type == ebpf.Tracing && p.AttachType == ebpf.AttachTraceIter:
			h.Target = "iter/" + p.AttachTo
			ok, err := hasType("bpf_iter__" + p.AttachTo)
			switch {
			case err != nil:
				h.Attached, h.Reason = false, err.Error()
			case !ok:
				h.Attached, h.Reason = false, "BPF iterator "+p.AttachTo+" not in kernel BTF"
			}
		case p.Type == ebpf.Tracing:
			h.Target = "tp_btf/" + p.AttachTo
			ok, err := hasType("btf_trace_" + p.AttachTo)
			switch {
			case err != nil:
				h.Attached, h.Reason = false, err.Error()
			case !ok:
				h.Attached, h.Reason = false, "tracepoint "+p.AttachTo+" not in kernel BTF"
			default:
				h.Attached, h.Reason = enoughArgs(p.AttachTo, tpArgs)
			}
		case p.Type == ebpf.Kprobe && (strings.HasPrefix(p.SectionName, "uprobe") || strings.HasPrefix(p.SectionName, "uretprobe")):
			h.Target = "uprobes on the TLS libraries found (see tlsprobe)"
		case p.Type == ebpf.CGroupSKB, p.Type == ebpf.CGroupSockAddr, p.Type == ebpf.CGroupSock:
			h.Target = p.SectionName + " on " + cgroupMount
			if cgroupMount == "" {
				h.Attached, h.Reason = false, "no cgroup2 mount"
			}
		default:
			h.Attached, h.Reason = false, fmt.Sprintf("unexpected program type %s", p.Type)
		}
		hooks = append(hooks, h)
	}
	return hooks
}

// Iterators names the programs that run only inside the agent's own reads
// (BPF iterators): their time is the agent's CPU, not its workload's. The
// names are the kernel's, cut to 15 bytes.
func Iterators() ([]string, error) {
	spec, err := loadFlowlens()
	if err != nil {
		return nil, fmt.Errorf("load eBPF spec: %w", err)
	}
	var names []string
	for name, p := range spec.Programs {
		if p.AttachType == ebpf.AttachTraceIter {
			names = append(names, name[:min(len(name), 15)])
		}
	}
	return names, nil
}

// wantArgs is how many arguments a program reads of the tracepoints whose
// signature grew over kernel versions.
var wantArgs = map[string]struct {
	n     int
	since string
}{
	// (skb, location, reason) since 5.17, rx_sk since 6.12.
	"kfree_skb": {4, "its drop reason and receiving socket (Linux 6.12)"},
}

func enoughArgs(tp string, tpArgs func(string) (int, error)) (bool, string) {
	w, ok := wantArgs[tp]
	if !ok {
		return true, ""
	}
	n, err := tpArgs(tp)
	if err != nil {
		return false, err.Error()
	}
	if n < w.n {
		return false, fmt.Sprintf("tracepoint %s has %d arguments, without %s", tp, n, w.since)
	}
	return true, ""
}

// kernelBTF is the kernel's BTF, parsed on first use and kept only while
// the datapath opens (Open releases it): the types read from it stay
// inflated in the spec, ≈5 MB of heap nothing reads again, which the GC's
// headroom would double for the life of the process.
var kernelBTF = newBTFCache(btf.LoadKernelSpec)

type btfCache struct {
	load func() (*btf.Spec, error)
	mu   sync.Mutex
	spec *btf.Spec
}

func newBTFCache(load func() (*btf.Spec, error)) *btfCache { return &btfCache{load: load} }

// get returns the spec, loading it if it is not held; an error is not kept,
// so a later call tries again.
func (c *btfCache) get() (*btf.Spec, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.spec == nil {
		spec, err := c.load()
		if err != nil {
			return nil, err
		}
		c.spec = spec
	}
	return c.spec, nil
}

// release drops the spec: the next get parses it again.
func (c *btfCache) release() {
	c.mu.Lock()
	c.spec = nil
	c.mu.Unlock()
}

// kernelTracepointArgs counts a tracepoint's arguments in the kernel's BTF:
// btf_trace_X is a pointer to a function whose first parameter is the
// tracepoint's context, not one of its arguments.
func kernelTracepointArgs(tp string) (int, error) {
	spec, err := kernelBTF.get()
	if err != nil {
		return 0, fmt.Errorf("kernel BTF: %w", err)
	}
	var td *btf.Typedef
	if err := spec.TypeByName("btf_trace_"+tp, &td); err != nil {
		return 0, fmt.Errorf("tracepoint %s in kernel BTF: %w", tp, err)
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return 0, fmt.Errorf("btf_trace_%s is a %T, not a pointer", tp, td.Type)
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok {
		return 0, fmt.Errorf("btf_trace_%s points to a %T, not a function", tp, ptr.Target)
	}
	return len(proto.Params) - 1, nil
}

// kernelHasType reports whether the kernel's BTF has a type: tp_btf can
// attach to tracepoint X when btf_trace_X exists, iter/X when bpf_iter__X does.
func kernelHasType(name string) (bool, error) {
	spec, err := kernelBTF.get()
	if err != nil {
		return false, fmt.Errorf("kernel BTF: %w", err)
	}
	_, err = spec.AnyTypeByName(name)
	return err == nil, nil
}
