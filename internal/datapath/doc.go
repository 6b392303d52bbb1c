// Package datapath loads flowlens' eBPF programs, attaches them, and turns
// what they record into flow observations: socket end events from the ring
// buffer, live TCP sockets and UDP conversations from the kernel maps.
//
// It is the only package that imports cilium/ebpf's link and ringbuf
// packages. The C source is under bpf/; the generated flowlens_x86_bpfel.{go,o}
// are committed so that building needs no clang.
//
// Every hook is a tracepoint (tp_btf) or cgroup_skb program: kprobes and
// fentry are missing on many production kernels. A hook this kernel lacks is
// skipped with a log line, and Hooks says what is attached.
package datapath
