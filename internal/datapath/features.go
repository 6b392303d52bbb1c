package datapath

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Feature is one kernel capability, whether this host offers it, and what
// flowlens uses it for ("" when flowlens does not depend on it).
type Feature struct {
	Name      string
	Available bool
	Detail    string
	UsedFor   string
}

// Probe checks the kernel features flowlens uses or deliberately avoids,
// given the cgroup2 mount ("" if none was found). It loads tiny test
// programs; it attaches nothing.
func Probe(cgroupMount string) []Feature {
	// So that a refusal below is the kernel's answer, not the memlock rlimit.
	_ = rlimit.RemoveMemlock()
	var out []Feature
	add := func(name, usedFor string, err error) {
		f := Feature{Name: name, Available: err == nil, UsedFor: usedFor}
		if err != nil {
			f.Detail = err.Error()
		}
		out = append(out, f)
	}
	_, err := os.Stat("/sys/kernel/btf/vmlinux")
	add("BTF (/sys/kernel/btf/vmlinux)", "CO-RE relocations, tp_btf", err)
	add("ring buffer map", "socket end events", features.HaveMapType(ebpf.RingBuf))
	add("socket local storage map", "UDP socket owners", features.HaveMapType(ebpf.SkStorage))
	add("bpf_get_socket_cookie in tracing programs (Linux 5.12)", "TCP socket identity across reads (required)", probeTracingCookie())

	spec, err := loadFlowlens()
	if err == nil {
		for _, h := range plan(spec, "", kernelHasType, kernelTracepointArgs) {
			if !strings.HasPrefix(h.Target, "tp_btf/") && !strings.HasPrefix(h.Target, "iter/") {
				continue
			}
			var herr error
			if !h.Attached {
				herr = errors.New(h.Reason)
			}
			add(h.Target, usedFor[h.Program], herr)
		}
	}
	mptcp := errors.New("kernel built without MPTCP: nothing to attribute")
	if ok, err := kernelHasType("mptcp_sock"); err != nil || ok {
		mptcp = err
	}
	add("MPTCP (mptcp_sock in BTF)", "bytes of MPTCP sockets (Go listens with MPTCP), attributed to their subflow", mptcp)
	err = errors.New("no cgroup2 mount")
	if cgroupMount != "" {
		err = features.HaveProgramType(ebpf.CGroupSKB)
	}
	add("cgroup v2 + cgroup_skb", "UDP datagrams and peers", err)
	if err == nil {
		out[len(out)-1].Detail = "attached at " + cgroupMount
	}
	if cgroupMount != "" {
		err = features.HaveProgramType(ebpf.CGroupSockAddr)
	}
	add("cgroup sock_addr (sendmsg, connect), sock_create and sock_release", "UDP destinations before NAT, owners of fresh UDP sockets", err)
	add("kprobes", "", pmuExists("kprobe"))
	add("fentry/fexit", "", haveFentry())
	add("uprobes", "", pmuExists("uprobe"))
	return out
}

var usedFor = map[string]string{
	"on_set_state":     "TCP open, close, failed connect (both sides)",
	"on_destroy":       "end of a TCP socket: its final record",
	"on_send":          "bytes sent per socket, process attribution",
	"on_recv":          "bytes received per socket, process attribution",
	"on_retransmit":    "retransmitted segments",
	"on_send_reset":    "resets sent",
	"on_receive_reset": "resets received",
	"walk_tcp":         "sockets open before the agent started: roles and baselines",
	"on_kfree_skb":     "dropped packets with their reason, per flow and per node",
	"read_listeners":   "accept queue depth and drops per listener",
	"read_touched":     "the TCP sockets that changed in an interval, read alone",
	"read_udp":         "the UDP conversations that changed in an interval or went idle, read alone",
}

// requireTracingHelpers fails with a clear message on a kernel whose
// tracing programs cannot call what every TCP hook needs.
func requireTracingHelpers() error {
	err := probeTracingCookie()
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("not allowed to load tracing programs (needs root, or CAP_BPF and CAP_PERFMON): %w", err)
	case err != nil:
		return fmt.Errorf("this kernel cannot run flowlens' TCP hooks (bpf_get_socket_cookie from tracing programs needs Linux 5.12+): %w", err)
	}
	return nil
}

// probeTracingCookie loads a tp_btf program that takes a socket cookie.
// The helper works from tracing programs since Linux 5.12; features.
// HaveProgramHelper cannot probe tracing programs, which need a target.
func probeTracingCookie() error {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceRawTp,
		AttachTo:   "inet_sock_set_state",
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R1, asm.R1, 0, asm.DWord), // the tracepoint's sk argument
			asm.FnGetSocketCookie.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return err
	}
	return p.Close()
}

func pmuExists(name string) error {
	if _, err := os.Stat("/sys/bus/event_source/devices/" + name + "/type"); err != nil {
		return fmt.Errorf("no %s PMU: %w", name, err)
	}
	return nil
}

// haveFentry loads a do-nothing fentry program; some kernels refuse it with
// EPERM even as root (BPF trampolines disabled).
func haveFentry() error {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceFEntry,
		AttachTo:   "tcp_close",
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return err
	}
	return p.Close()
}
