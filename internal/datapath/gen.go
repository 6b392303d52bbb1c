package datapath

// The generated flowlens_x86_bpfel.{go,o} are committed so that building needs no
// clang; `make generate` (or `go generate ./internal/datapath`) rebuilds them
// and the test suite fails when they drift from bpf/.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64 -type conn_event -type tcp_state -type udp_key -type udp_stats -type listener_key -type listen_info -type udp_meta -type cgroup_usage -type cgroup_refused -type drop_key -type listener_stat -type owner -type l4_tuple -type counter -type event_kind -type role -type owner_source -type l7_event -type l7_source -type l7_dir -type l7_hint -type tls_call_key -type tls_call -type tls_conn_key flowlens ../../bpf/flowlens.bpf.c -- -I../../bpf -D__TARGET_ARCH_x86
