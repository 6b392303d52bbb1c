package datapath

// The generated flowlens_bpfel.{go,o} are committed so that building needs no
// clang; `make generate` (or `go generate ./internal/datapath`) rebuilds them
// and the test suite fails when they drift from bpf/.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type conn_event -type tcp_state -type udp_key -type udp_stats -type listener_key -type listen_info -type udp_meta -type cgroup_usage -type cgroup_refused -type drop_key -type listener_stat -type owner -type l4_tuple -type counter -type event_kind -type role -type owner_source flowlens ../../bpf/flowlens.bpf.c -- -I../../bpf
