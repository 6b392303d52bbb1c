// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * flowlens kernel side: per-socket TCP state and per-conversation UDP
 * counters, aggregated in maps; the ring buffer carries one lifecycle record
 * per TCP socket (close or failed connect), never one per packet.
 *
 * Only tracepoints (tp_btf) and cgroup_skb are used: kprobes and fentry are
 * missing on many production kernels, including the ones flowlens is
 * developed on. Every hook below names the kernel path that fires it.
 */
#include "include/vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "flowlens.h"

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define MSG_PEEK 2
#define E2BIG 7
#define NEXTHDR_ICMPV6 58

/* Set by the loader before the programs are verified. */
volatile const __u32 self_pid = 0; /* the agent's own sockets are not traffic */
/* Wake the reader only once this much is waiting (0: on every event). The
 * agent drains the ring at every interval anyway, and a wakeup per closed
 * socket costs more than the rest of the event. */
volatile const __u64 wakeup_bytes = 0;
/* The share of tcp_socks and udp_flows one cgroup may hold (0: no limit).
 * Without it one pod holding 32k loopback connections, or sending to 16k
 * UDP ports, fills the node-wide maps and blinds flowlens to every other. */
volatile const __u32 tcp_per_cgroup = 0;
volatile const __u32 udp_per_cgroup = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* resized by the loader */
	__type(key, __u64);         /* struct sock address */
	__type(value, struct tcp_state);
} tcp_socks SEC(".maps");

/*
 * The tcp_socks entries that changed since the agent last read them, so
 * that an interval costs the agent what moved, not what is open. Two sets,
 * by the parity of touch_gen: the kernel side marks into the current one
 * while the agent reads the other (read_touched) and empties it. A socket is
 * marked once per generation: its touch_gen says it already is, so the
 * common case is one compare. The agent bumps touch_gen and waits for the
 * programs that may still see the old value to finish before it reads.
 * Preallocated: a mark and its delete take and give back an element of a
 * per-CPU free list, where an allocated map allocates at every first mark
 * of a socket in a generation and frees at every delete, which cost the
 * reader more than the read. The price is memory: ≈64 bytes per element,
 * both sets as large as tcp_socks.
 */
struct touched_set {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* resized by the loader, as tcp_socks */
	__type(key, __u64);         /* struct sock address */
	__type(value, __u8);
};
struct touched_set touched0 SEC(".maps");
struct touched_set touched1 SEC(".maps");

/* Written by the agent at each read; starts at 1 so that a fresh entry
 * (touch_gen 0) is never taken for marked. */
volatile __u32 touch_gen = 1;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct listener_key);
	__type(value, struct listen_info);
} listeners SEC(".maps");

/* The agent's own sockets by cookie: those that existed before its
 * programs were attached, filled by the agent before it walks, and those it
 * connects since, marked at connect(). Neither the walk nor a handshake
 * that completes later (in softirq, where current is not the agent) may
 * take them for traffic: a socket tracked there would leave tcp_socks
 * without an end event at the agent's first I/O on it, and be counted
 * vanished. A mark matters only until the walk or the handshake is over,
 * so the oldest may go: LRU, never deleted. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} self_socks SEC(".maps");

/* tcp_socks entries per cgroup, counted here as entries come and go. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* cgroup id */
	__type(value, struct cgroup_usage);
} tcp_usage SEC(".maps");

/* udp_flows entries per cgroup: the kernel side adds what it creates,
 * userspace, which deletes UDP entries, takes off what it deletes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} udp_usage SEC(".maps");

/* Who was refused, so the loss metrics can name the source of overload.
 * LRU: the noisiest stay, and it never refuses an update itself. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct cgroup_refused);
} refused SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); /* resized by the loader */
	__type(key, struct udp_key);
	__type(value, struct udp_stats);
} udp_flows SEC(".maps");

/* Conversations ended with their socket (udp_release), moved out of
 * udp_flows with their final counts: the agent takes them all at each read
 * (a batch lookup-and-delete), where an idle one costs it a deletion of
 * its own after the idle time. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); /* resized by the loader, as udp_flows */
	__type(key, struct udp_key);
	__type(value, struct udp_stats);
} udp_ended SEC(".maps");

/* What a UDP socket's own process context tells (owner, destination before
 * NAT), recorded by the sock_create, sock_addr and send/recv hooks and read
 * by the cgroup_skb programs, which run where current is meaningless. Keyed
 * by socket cookie and deleted by udp_release when the socket is freed:
 * socket-local storage would allocate twice (memcg-charged) per socket,
 * ≈2.5 µs of a DNS query's socket, where a hash entry from the map's own
 * cache costs a fraction. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536); /* resized by the loader, as udp_flows */
	__type(key, __u64);
	__type(value, struct udp_meta);
} udp_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21); /* resized by the loader */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Drops by reason, node-wide: every drop lands here, attributed or not. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_REASON_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} drop_reasons SEC(".maps");

/* Drops by (socket or packet tuple, netns, reason), read and deleted by
 * userspace each interval. LRU: under a flood of distinct tuples it keeps
 * the recent ones and never refuses; drop_reasons still counts every drop. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct drop_key);
	__type(value, __u64);
} drops SEC(".maps");

/* Make the shared types visible to bpf2go -type. */
const struct conn_event *unused_conn_event __attribute__((unused));
const struct udp_key *unused_udp_key __attribute__((unused));
const struct udp_stats *unused_udp_stats __attribute__((unused));
const struct listener_key *unused_listener_key __attribute__((unused));
const struct listen_info *unused_listen_info __attribute__((unused));
const struct udp_meta *unused_udp_meta __attribute__((unused));
const struct cgroup_usage *unused_cgroup_usage __attribute__((unused));
const struct cgroup_refused *unused_cgroup_refused __attribute__((unused));
const struct drop_key *unused_drop_key __attribute__((unused));
const struct listener_stat *unused_listener_stat __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum event_kind *unused_event_kind __attribute__((unused));
const enum role *unused_role __attribute__((unused));
const enum owner_source *unused_owner_source __attribute__((unused));

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

/* touch marks a tracked socket whose state changed: everything a record
 * reports (bytes, segments, retransmits, resets, establishment, close).
 * Called after the change is written, so that a read that finds the mark
 * also finds the change. A mark that does not fit is counted: the agent
 * then reads the whole map. */
static __always_inline void touch(__u64 key, struct tcp_state *st)
{
	__u32 gen = touch_gen;
	__u8 one = 1;
	long err;

	if (st->touch_gen == gen)
		return;
	st->touch_gen = gen;
	if (gen & 1)
		err = bpf_map_update_elem(&touched1, &key, &one, BPF_ANY);
	else
		err = bpf_map_update_elem(&touched0, &key, &one, BPF_ANY);
	if (err)
		count(CNT_TOUCHED_FULL);
}

/*
 * Socket fields are read with plain loads, not BPF_CORE_READ: every sk the
 * helpers below take is a BTF pointer (a tp_btf argument, an iterator's
 * bpf_skc_to_tcp_sock(), a field loaded from one), which the verifier lets
 * a program dereference directly, and vmlinux.h's preserve_access_index
 * keeps the CO-RE relocations. A BPF_CORE_READ is a bpf_probe_read_kernel
 * call: measured on this kernel at ≈45 ns each, against ≈2 ns for a load.
 */

/* tcp_sock's and inet_sock's fields lie past struct sock's end, where the
 * verifier lets a struct sock pointer load nothing: the helper gives the
 * typed pointer (NULL for a request or time-wait socket, or not TCP). */
static __always_inline const struct tcp_sock *tcp_of(const struct sock *sk)
{
	return bpf_skc_to_tcp_sock((void *)sk);
}

/* The local port comes from inet_sport, not skc_num: tcp_set_state() fires
 * the tracepoint for TCP_CLOSE after inet_put_port() has zeroed inet_num. */
static __always_inline __be16 tcp_sport(const struct sock *sk)
{
	const struct tcp_sock *tp = tcp_of(sk);

	return tp ? tp->inet_conn.icsk_inet.inet_sport : 0;
}

/* tuple_of reads a socket's tuple, its local port given (see tcp_sport). */
static __always_inline void tuple_of(const struct sock *sk, __be16 sport, struct l4_tuple *t)
{
	const struct sock_common *c = &sk->__sk_common;

	t->family = c->skc_family;
	t->local_port = bpf_ntohs(sport);
	t->remote_port = bpf_ntohs(c->skc_dport);
	if (t->family == AF_INET) {
		__be32 *l = (__be32 *)t->local_addr, *r = (__be32 *)t->remote_addr;

		*l = c->skc_rcv_saddr;
		*r = c->skc_daddr;
	} else {
		__builtin_memcpy(t->local_addr, c->skc_v6_rcv_saddr.in6_u.u6_addr32, 16);
		__builtin_memcpy(t->remote_addr, c->skc_v6_daddr.in6_u.u6_addr32, 16);
	}
}

static __always_inline void read_tuple(const struct sock *sk, struct l4_tuple *t)
{
	tuple_of(sk, tcp_sport(sk), t);
}

static __always_inline __u32 sock_netns(const struct sock *sk)
{
	return sk->__sk_common.skc_net.net->ns.inum;
}

/* The socket's cgroup, not current's: accepted sockets are created in
 * softirq context and inherit the listener's cgroup, which is the server's. */
static __always_inline __u64 sock_cgroup(const struct sock *sk)
{
	return sk->sk_cgrp_data.cgroup->kn->id;
}

/* A task's process name: comm is NUL-padded (set with strscpy_pad), so a
 * plain copy of all of it is the string. */
static __always_inline void copy_comm(char *dst, const struct task_struct *task)
{
	__builtin_memcpy(dst, task->group_leader->comm, COMM_LEN);
}

/* The process's name, not the thread's: resolvers and runtimes do socket
 * I/O from worker threads with names like "isc-net-0000". */
static __always_inline void owner_current(const struct sock *sk, struct owner *o)
{
	o->pid = bpf_get_current_pid_tgid() >> 32;
	o->netns = sock_netns(sk);
	o->cgroup = sock_cgroup(sk);
	copy_comm(o->comm, bpf_get_current_task_btf());
}

/* The calling process as a socket's owner, where the socket itself cannot
 * be read (sock_addr programs get a bpf_sock): a process's own sockets
 * share its netns and cgroup unless it moved after creating them. */
static __always_inline void owner_task(struct owner *o)
{
	struct task_struct *task = bpf_get_current_task_btf();

	o->pid = bpf_get_current_pid_tgid() >> 32;
	o->netns = task->nsproxy->net_ns->ns.inum;
	o->cgroup = bpf_get_current_cgroup_id();
	copy_comm(o->comm, task);
}

static __always_inline int is_self(void)
{
	return self_pid && (bpf_get_current_pid_tgid() >> 32) == self_pid;
}

static __always_inline int self_socket(const struct sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie((void *)sk);

	return bpf_map_lookup_elem(&self_socks, &cookie) != NULL;
}

/* mark_self records a socket the agent connects, in connect() (its own
 * process context), for the handshake's end to recognise. */
static __always_inline void mark_self(const struct sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie((void *)sk);
	__u8 one = 1;

	bpf_map_update_elem(&self_socks, &cookie, &one, BPF_ANY);
}

/* Cumulative counters the TCP stack already keeps; copying them is cheaper
 * and more exact than counting segments ourselves. */
static __always_inline void snapshot_tcp(const struct tcp_sock *tp, struct tcp_state *st)
{
	if (!tp)
		return;
	st->segs_out = tp->segs_out;
	st->segs_in = tp->segs_in;
	st->retrans = tp->total_retrans;
	st->srtt_us = tp->srtt_us >> 3;
}

/* l7_sent_init starts where the stream was written when the socket is
 * first seen established: what l7_syscall compares the peer's
 * acknowledgements with until the first send reaches the hooks. */
static __always_inline void l7_sent_init(const struct tcp_sock *tp, struct tcp_state *st)
{
	if (tp)
		st->l7_sent_seq = tp->write_seq;
}

static __always_inline void note_refused(__u64 cgroup, int tcp)
{
	struct cgroup_refused *r = bpf_map_lookup_elem(&refused, &cgroup);

	if (!r) {
		struct cgroup_refused zero = {};

		bpf_map_update_elem(&refused, &cgroup, &zero, BPF_NOEXIST);
		r = bpf_map_lookup_elem(&refused, &cgroup);
		if (!r)
			return;
	}
	if (tcp)
		__sync_fetch_and_add(&r->tcp, 1);
	else
		__sync_fetch_and_add(&r->udp, 1);
}

/* charge counts a new tcp_socks entry against its cgroup's share. It
 * returns -1 when the cgroup already holds its share, 0 when charged (or
 * when no share applies: cgroup 0, or the usage map itself is full). The
 * check and the add are not one atomic step: two CPUs can pass the check
 * together, so a share can be exceeded by the number of CPUs. */
static __always_inline int charge(__u64 cgroup, __u64 *charged)
{
	struct cgroup_usage *u;

	*charged = 0;
	if (!tcp_per_cgroup || !cgroup)
		return 0;
	u = bpf_map_lookup_elem(&tcp_usage, &cgroup);
	if (!u) {
		struct cgroup_usage zero = {};

		bpf_map_update_elem(&tcp_usage, &cgroup, &zero, BPF_NOEXIST);
		u = bpf_map_lookup_elem(&tcp_usage, &cgroup);
		if (!u)
			return 0;
	}
	if (u->tcp >= tcp_per_cgroup)
		return -1;
	__sync_fetch_and_add(&u->tcp, 1);
	*charged = cgroup;
	return 0;
}

static __always_inline void uncharge(__u64 cgroup)
{
	struct cgroup_usage *u;

	if (!cgroup)
		return;
	u = bpf_map_lookup_elem(&tcp_usage, &cgroup);
	if (u && u->tcp)
		__sync_fetch_and_add(&u->tcp, -1);
}

/* untrack forgets a socket and gives its share back. */
static __always_inline void untrack(__u64 key, const struct tcp_state *st)
{
	__u64 cg = st->charged_cgroup;

	if (bpf_map_delete_elem(&tcp_socks, &key) == 0) {
		uncharge(cg);
		count(CNT_TCP_UNTRACKED);
	}
}

/* track starts tracking a socket. A refusal (map full, or the socket's
 * cgroup over its share) is counted only when opened is set, at the one
 * moment each socket is first seen (connect, accept): the later retries
 * (an established connect the agent missed, the first I/O of an untracked
 * socket) would count the same socket again. adopted marks a socket first
 * seen already established: its lifetime counters become a baseline. A
 * socket already tracked keeps its entry, which is returned: a connect()
 * that met a SYN instead of a SYN-ACK (a simultaneous open, or a socket
 * connected to itself) passes SYN_RECV as an accepted one does. */
static __always_inline struct tcp_state *track(const struct sock *sk, __u8 role,
					       const struct owner *o, __u8 source, int opened,
					       int adopted)
{
	__u64 key = (__u64)sk;
	struct tcp_state st = {};
	__u64 cg = sock_cgroup(sk);

	if (charge(cg, &st.charged_cgroup)) {
		if (opened) {
			count(CNT_TCP_CGROUP_QUOTA);
			note_refused(cg, 1);
		}
		return NULL;
	}
	st.role = role;
	st.owner_source = source;
	if (o) {
		st.owner = *o;
	} else {
		/* The process is learnt at the first I/O; where the socket
		 * lives is known now. */
		st.owner.netns = sock_netns(sk);
		st.owner.cgroup = cg;
	}
	st.cookie = bpf_get_socket_cookie((void *)sk);
	st.start_ns = bpf_ktime_get_ns();
	st.tuple.protocol = IPPROTO_TCP;
	read_tuple(sk, &st.tuple);
	if (adopted) {
		const struct tcp_sock *tp = tcp_of(sk);

		snapshot_tcp(tp, &st);
		l7_sent_init(tp, &st);
		st.base_segs_out = st.segs_out;
		st.base_segs_in = st.segs_in;
		st.base_retrans = st.retrans;
		st.adopted = 1;
		st.established = 1;
	}
	if (bpf_map_update_elem(&tcp_socks, &key, &st, BPF_NOEXIST)) {
		struct tcp_state *known = bpf_map_lookup_elem(&tcp_socks, &key);

		uncharge(st.charged_cgroup);
		if (!known && opened)
			count(CNT_TCP_MAP_FULL);
		return known;
	}
	count(CNT_TCP_TRACKED);
	if (adopted)
		count(CNT_ADOPTED);
	return bpf_map_lookup_elem(&tcp_socks, &key);
}

/* The port comes from inet_sport, not skc_num: at a listener's TCP_CLOSE,
 * inet_put_port() has zeroed skc_num unless the port was bound explicitly. */
static __always_inline struct listener_key listener_key_of(const struct sock *sk)
{
	struct listener_key lk = {
		.netns = sock_netns(sk),
		.port = bpf_ntohs(tcp_sport(sk)),
		.family = sk->__sk_common.skc_family,
	};

	return lk;
}

/* An accepted socket has its listener's family (a dual-stack v6 listener's
 * children are v6 sockets with v4-mapped addresses) and local port. */
static __always_inline struct listen_info *listener_of(const struct sock *sk)
{
	struct listener_key lk = listener_key_of(sk);

	return bpf_map_lookup_elem(&listeners, &lk);
}

/* add_listener counts one more listening socket on its key. o is NULL for
 * listeners found by the start-up walk, whose process is unknown. */
static __always_inline void add_listener(const struct sock *sk, const struct owner *o)
{
	struct listener_key lk = listener_key_of(sk);
	struct listen_info *l = bpf_map_lookup_elem(&listeners, &lk);
	struct listen_info init = {};

	if (l) {
		__sync_fetch_and_add(&l->sockets, 1);
		if (o && !l->owner.pid)
			l->owner = *o;
		l->sk = (__u64)sk;
		return;
	}
	init.sockets = 1;
	init.sk = (__u64)sk;
	if (o)
		init.owner = *o;
	if (bpf_map_update_elem(&listeners, &lk, &init, BPF_NOEXIST) == 0)
		return;
	/* Another CPU created it first. */
	l = bpf_map_lookup_elem(&listeners, &lk);
	if (l)
		__sync_fetch_and_add(&l->sockets, 1);
	else
		count(CNT_LISTENER_MAP_FULL);
}

static __always_inline void remove_listener(const struct sock *sk)
{
	struct listener_key lk = listener_key_of(sk);
	struct listen_info *l = bpf_map_lookup_elem(&listeners, &lk);

	if (!l)
		return;
	__sync_fetch_and_add(&l->sockets, -1);
	if ((__s32)l->sockets <= 0)
		bpf_map_delete_elem(&listeners, &lk);
	else if (l->sk == (__u64)sk)
		l->sk = 0; /* never read a socket about to be freed */
}

#include "l7.h"

/* TCP_CLOSE settles the verdict: the error and the final tuple are read
 * here, while they are still there (the caller of connect() clears sk_err
 * when it reads it). The socket may still hold unread data. */
static __always_inline void on_close(const struct sock *sk, int oldstate)
{
	__u64 key = (__u64)sk;
	struct tcp_state *st = bpf_map_lookup_elem(&tcp_socks, &key);

	if (!st)
		return;
	snapshot_tcp(tcp_of(sk), st);
	/* A failed active open's local port may have been chosen after
	 * SYN_SENT was set, so read the tuple again, keeping what we had if
	 * the socket has already let go of its port. */
	if (tcp_sport(sk))
		read_tuple(sk, &st->tuple);
	st->end_ns = bpf_ktime_get_ns();
	st->sk_err = sk->sk_err;
	st->failed = oldstate == TCP_SYN_SENT;
	touch(key, st);
}

/* Hand a socket's whole story to userspace and forget it. The entry is
 * deleted before the event is submitted, so a reader that has consumed the
 * event can no longer find the socket in the map. */
static __always_inline void finish(const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct tcp_state *st = bpf_map_lookup_elem(&tcp_socks, &key);
	struct conn_event *e;
	__u64 flags;

	if (!st)
		return;
	l7_pair_close(sk, st);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CNT_RINGBUF_FULL);
		untrack(key, st);
		return;
	}
	if (!st->end_ns) {
		/* Destroyed without passing TCP_CLOSE (not expected for a
		 * tracked socket): end it now. */
		snapshot_tcp(tcp_of(sk), st);
		st->end_ns = bpf_ktime_get_ns();
	}
	e->state = *st;
	e->kind = st->failed ? EVENT_CONNECT_FAIL : EVENT_CLOSE;
	untrack(key, st);
	if (!wakeup_bytes)
		flags = 0;
	else if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	else
		flags = BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	count(CNT_EVENTS);
}

/*
 * sock:inet_sock_set_state fires from tcp_set_state() and inet_sk_state_store():
 *   connect()  -> tcp_v4_connect()  CLOSE -> SYN_SENT      (process context)
 *   SYN-ACK    -> tcp_rcv_synsent_state_process()  SYN_SENT -> ESTABLISHED
 *   ACK of SYN-ACK -> inet_csk_clone_lock() LISTEN -> SYN_RECV (child socket),
 *                     tcp_rcv_state_process() SYN_RECV -> ESTABLISHED (softirq)
 *   listen()   -> inet_csk_listen_start()  CLOSE -> LISTEN   (process context)
 *   tcp_done() / close  any -> CLOSE, before the socket is unhashed
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key = (__u64)sk;
	struct tcp_state *st;
	struct owner o = {};
	struct listen_info *l;

	/* Half of a connection's ten transitions (SYN_RECV, FIN_WAIT1/2,
	 * CLOSE_WAIT, LAST_ACK) need nothing: they return before any read. */
	switch (newstate) {
	case TCP_LISTEN:
	case TCP_SYN_SENT:
	case TCP_ESTABLISHED:
	case TCP_CLOSE:
		break;
	default:
		return 0;
	}
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;

	switch (newstate) {
	case TCP_LISTEN:
		/* The agent's own listeners are recorded too, so that the
		 * connections they accept can be recognised and skipped. */
		owner_current(sk, &o);
		add_listener(sk, &o);
		return 0;
	case TCP_SYN_SENT:
		if (oldstate != TCP_CLOSE)
			return 0;
		if (is_self()) {
			mark_self(sk);
			return 0;
		}
		/* connect() again on a socket whose last connect failed. */
		finish(sk);
		owner_current(sk, &o);
		track(sk, ROLE_CLIENT, &o, OWNER_SELF, 1, 0);
		return 0;
	case TCP_ESTABLISHED:
		if (oldstate == TCP_SYN_SENT) {
			st = bpf_map_lookup_elem(&tcp_socks, &key);
			if (st) {
				/* Tracked since connect(): how long the handshake
				 * took, and how many SYNs it needed (nothing but
				 * SYNs was sent yet). */
				const struct tcp_sock *tp = tcp_of(sk);

				st->established_ns = bpf_ktime_get_ns();
				st->syn_retrans = tp ? tp->total_retrans : 0;
			} else {
				/* A connect that began before the agent (or was
				 * refused a share at connect()): owner is filled on
				 * first I/O. The agent's own are marked. */
				if (self_socket(sk))
					return 0;
				st = track(sk, ROLE_CLIENT, NULL, OWNER_NONE, 0, 0);
			}
		} else if (oldstate == TCP_SYN_RECV) {
			l = listener_of(sk);
			if (l && self_pid && l->owner.pid == self_pid)
				return 0;
			if (l && l->owner.pid)
				st = track(sk, ROLE_SERVER, &l->owner, OWNER_LISTENER, 1, 0);
			else
				st = track(sk, ROLE_SERVER, NULL, OWNER_NONE, 1, 0);
			/* A simultaneous open's: tracked since connect(). */
			if (st && st->role == ROLE_CLIENT && !st->established_ns)
				st->established_ns = bpf_ktime_get_ns();
		} else {
			return 0;
		}
		if (st) {
			const struct tcp_sock *tp = tcp_of(sk);

			st->established = 1;
			/* connect() picks the local port after SYN_SENT is set:
			 * read the tuple now, so an open connection's records
			 * name their client port from the first interval. */
			read_tuple(sk, &st->tuple);
			snapshot_tcp(tp, st);
			l7_sent_init(tp, st);
			touch(key, st);
			l7_pair_open(tp, st);
		}
		return 0;
	case TCP_CLOSE:
		if (oldstate == TCP_LISTEN)
			remove_listener(sk);
		else
			on_close(sk, oldstate);
		return 0;
	}
	return 0;
}

/* tcp:tcp_destroy_sock fires from tcp_v4_destroy_sock() when the socket is
 * released: after the application's last read, whichever side closed first.
 * Ending the record here, not at TCP_CLOSE, counts the bytes an application
 * reads after the peer's FIN moved the socket to TCP_CLOSE. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(on_destroy, struct sock *sk)
{
	finish(sk);
	return 0;
}

/* States of a connection that is (or was) established and not yet closed:
 * what the start-up walk and first-I/O adoption take on. */
static __always_inline int connected_state(int state)
{
	switch (state) {
	case TCP_ESTABLISHED:
	case TCP_FIN_WAIT1:
	case TCP_FIN_WAIT2:
	case TCP_CLOSE_WAIT:
	case TCP_LAST_ACK:
	case TCP_CLOSING:
		return 1;
	}
	return 0;
}

/* A socket established before the agent started; its role follows whether
 * its local port is listened on in its netns with its family. */
static __always_inline struct tcp_state *adopt(const struct sock *sk, const struct owner *o)
{
	return track(sk, listener_of(sk) ? ROLE_SERVER : ROLE_CLIENT, o,
		     o ? OWNER_SELF : OWNER_NONE, 0, 1);
}

/*
 * iter/tcp walks every TCP socket of every netns once, when the agent
 * starts (bpf_iter_tcp: the listening hash first, then the established
 * one). Listeners are learnt before the connections they accepted, so an
 * accepted connection that outlived an agent restart keeps its server role,
 * and every live connection starts from a baseline instead of reporting its
 * lifetime as this interval's. The walk runs after the tracepoints are
 * attached: a socket created meanwhile is already tracked and left alone.
 */
SEC("iter/tcp")
int walk_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_sock *tp;
	const struct sock *sk;
	__u64 key;
	int state;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0; /* request and time-wait sockets */
	sk = (const struct sock *)tp;
	state = sk->__sk_common.skc_state;
	if (state == TCP_LISTEN) {
		add_listener(sk, NULL);
		return 0;
	}
	if (!connected_state(state))
		return 0;
	key = (__u64)sk;
	if (bpf_map_lookup_elem(&tcp_socks, &key) || self_socket(sk))
		return 0;
	adopt(sk, NULL);
	return 0;
}

/* bpf_rdonly_cast (Linux 6.2) types a pointer for plain loads only; the
 * verifier makes it a register move. The send/recv hooks that use it need
 * Linux 6.3, the other programs never reach it. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define ro_cast(p, type) ((const struct type *)bpf_rdonly_cast(p, bpf_core_type_id_kernel(struct type)))

/* An MPTCP socket's first subflow, which carries its connection. */
static __always_inline const struct sock *mptcp_first(const struct sock *sk)
{
	return ro_cast(sk, mptcp_sock)->first;
}


/*
 * sock:sock_send_length / sock_recv_length fire from sock_sendmsg_nosec() and
 * sock_recvmsg_nosec() for every send/recv call (write, sendfile and splice
 * included), in the calling process: exact application bytes with the process
 * that moved them, at a cost per call rather than per packet.
 */
static __always_inline void account_io(const struct sock *sk, const struct tcp_sock *tp,
					  struct tcp_state *st, int ret, int send, int tls)
{
	if (send)
		__sync_fetch_and_add(&st->bytes_sent, ret);
	else
		__sync_fetch_and_add(&st->bytes_recv, ret);
	snapshot_tcp(tp, st);
	touch((__u64)sk, st);
	if (tls)
		st->l7_hint = L7_HINT_TLS;
	else
		l7_syscall(st, tp, ret, send);
}

/* first_io settles whose a socket is at a call of a process not yet taken
 * for its owner: the agent's own connection is forgotten, a connection
 * opened before the agent is adopted (st NULL), any other learns its owner.
 * It returns the entry to count the call on, or NULL. Past it the entry
 * says OWNER_SELF, which nothing sets without an is_self() check first (here
 * and at connect()); the agent shares no socket with another process, so
 * the later calls of such a socket need no pid compared. */
static __always_inline struct tcp_state *first_io(const struct sock *sk, __u64 key,
						  struct tcp_state *st)
{
	struct owner o = {};

	if (is_self()) {
		/* The agent's own connection (to the API server, a hub),
		 * tracked before its first I/O said whose it is: the connect
		 * began before the programs were attached. */
		if (st)
			untrack(key, st);
		return NULL;
	}
	if (st) {
		owner_current(sk, &st->owner);
		st->owner_source = OWNER_SELF;
		return st;
	}
	if (!connected_state(sk->__sk_common.skc_state))
		return NULL;
	owner_current(sk, &o);
	return adopt(sk, &o);
}

static __always_inline void on_io(struct sock *sk, int ret, int flags, int send)
{
	__u16 family, proto;
	__u64 key = (__u64)sk;
	struct tcp_state *st;
	int tls;

	if (!send && (flags & MSG_PEEK))
		return;
	family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return;
	proto = sk->sk_protocol;
	/* The common call first: a TCP socket tracked and owned, whose call
	 * costs one lookup, one add, and the loads of what it changed. The
	 * socket is a full one (the application holds it) and a stream, not
	 * a raw IPPROTO_TCP socket: its tcp_sock is a cast, not a helper call. */
	if (proto == IPPROTO_TCP && sk->sk_type == SOCK_STREAM) {
		/* Before the failed calls return: see tls_nested. */
		tls = l7_capture_bytes ? tls_nested(sk) : 0;
		if (ret <= 0)
			return;
		st = bpf_map_lookup_elem(&tcp_socks, &key);
		if ((!st || st->owner_source != OWNER_SELF) && !(st = first_io(sk, key, st)))
			return;
		account_io(sk, ro_cast(sk, tcp_sock), st, ret, send, tls);
		return;
	}
	/* Go (1.24+) listens with MPTCP by default: the application reads and
	 * writes the MPTCP socket while a TCP subflow carries the connection.
	 * Account to the first subflow, which is the only one unless the peer
	 * speaks MPTCP too (then the other subflows' bytes land on it). The
	 * subflow was tracked from its own handshake, and the socket a TLS
	 * call learns is it. Kernels built without MPTCP have no mptcp_sock:
	 * the branch is removed at load. */
	if (proto == IPPROTO_MPTCP) {
		if (bpf_core_type_exists(struct mptcp_sock)) {
			const struct sock *sub = mptcp_first(sk);

			tls = l7_capture_bytes ? tls_nested(sub) : 0;
			if (ret <= 0)
				return;
			key = (__u64)sub;
			st = key ? bpf_map_lookup_elem(&tcp_socks, &key) : NULL;
			if (!st || (st->owner_source != OWNER_SELF && !(st = first_io(sub, key, st))))
				return;
			account_io(sub, ro_cast(sub, tcp_sock), st, ret, send, tls);
		}
		return;
	}
	if (proto != IPPROTO_UDP || ret <= 0)
		return;
	{
		__u64 cookie = bpf_get_socket_cookie(sk);
		struct udp_meta *u = bpf_map_lookup_elem(&udp_socks, &cookie);

		if (u && !u->owner.pid) {
			owner_current(sk, &u->owner);
		} else if (!u) {
			/* Opened before the programs were attached. */
			struct udp_meta m = {};

			owner_current(sk, &m.owner);
			bpf_map_update_elem(&udp_socks, &cookie, &m, BPF_NOEXIST);
		}
	}
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send, struct sock *sk, int ret, int flags)
{
	on_io(sk, ret, flags, 1);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_recv, struct sock *sk, int ret, int flags)
{
	on_io(sk, ret, flags, 0);
	return 0;
}

/* tcp:tcp_retransmit_skb fires from __tcp_retransmit_skb(): refresh the
 * counters so retransmits of an idle-looking connection show this interval. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_retransmit, const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct tcp_state *st = bpf_map_lookup_elem(&tcp_socks, &key);

	if (st) {
		snapshot_tcp(tcp_of(sk), st);
		touch(key, st);
	}
	return 0;
}

/* tcp:tcp_send_reset fires from tcp_v4/v6_send_reset() and
 * tcp_send_active_reset(); sk is NULL for a RST to a port nobody listens on. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_send_reset, const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct tcp_state *st;

	if (!sk)
		return 0;
	st = bpf_map_lookup_elem(&tcp_socks, &key);
	if (st) {
		__sync_fetch_and_add(&st->rst_sent, 1);
		touch(key, st);
	}
	return 0;
}

/* tcp:tcp_receive_reset fires from tcp_reset() before the socket is closed. */
SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_receive_reset, struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct tcp_state *st = bpf_map_lookup_elem(&tcp_socks, &key);

	if (st) {
		__sync_fetch_and_add(&st->rst_recv, 1);
		touch(key, st);
	}
	return 0;
}

/*
 * cgroup/sendmsg4,6 run in udp_sendmsg() before routing and before
 * kube-proxy's DNAT in nat OUTPUT, for every sendto()/sendmsg() with an
 * address; cgroup/connect4,6 run in connect(). Both see the destination the
 * application asked for (a Service's ClusterIP) and run in its process, so
 * the first datagram of a fresh socket already has its owner. Observe only:
 * they always allow.
 */
static __always_inline void note_udp_dst(struct bpf_sock_addr *ctx, int v6)
{
	struct udp_meta *u;
	__u64 cookie;

	if (ctx->protocol != IPPROTO_UDP)
		return;
	cookie = bpf_get_socket_cookie(ctx);
	u = bpf_map_lookup_elem(&udp_socks, &cookie);
	if (!u) {
		/* Opened before the programs were attached, or udp_socks
		 * was full when it was. */
		struct udp_meta m = {};

		bpf_map_update_elem(&udp_socks, &cookie, &m, BPF_NOEXIST);
		u = bpf_map_lookup_elem(&udp_socks, &cookie);
		if (!u)
			return;
	}
	if (!u->owner.pid)
		owner_task(&u->owner);
	if (v6) {
		__u32 a[4];

		a[0] = ctx->user_ip6[0];
		a[1] = ctx->user_ip6[1];
		a[2] = ctx->user_ip6[2];
		a[3] = ctx->user_ip6[3];
		__builtin_memcpy(u->dst_addr, a, 16);
		u->dst_family = AF_INET6;
	} else {
		__u32 a4 = ctx->user_ip4;

		__builtin_memcpy(u->dst_addr, &a4, 4);
		u->dst_family = AF_INET;
	}
	u->dst_port = bpf_ntohs(ctx->user_port);
}

/* cgroup/sock_create runs in socket(), in the creating process: a UDP
 * socket's owner is known before its first datagram, sent or received
 * (a server's first datagrams arrive before its first recvmsg returns). */
SEC("cgroup/sock_create")
int udp_sock_create(struct bpf_sock *ctx)
{
	struct udp_meta m = {};
	__u64 cookie;

	if (ctx->protocol != IPPROTO_UDP)
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	owner_task(&m.owner);
	bpf_map_update_elem(&udp_socks, &cookie, &m, BPF_ANY);
	return 1;
}

/* cgroup/sock_release runs when the socket is freed (inet_release), after
 * its last datagram: its udp_socks entry goes with it, and its last
 * conversation, which can have no more datagrams, moves to udp_ended (a
 * resolver's socket per query has just that one). A datagram delivered
 * between this and the socket's unhashing starts a conversation anew,
 * released when idle. Named to attach before udp_sock_create (hooks
 * attach in name order), so that no socket created once the agent runs
 * outlives its entry. */
SEC("cgroup/sock_release")
int udp_release(struct bpf_sock *ctx)
{
	struct udp_key key = {};
	struct udp_stats *v;
	struct udp_meta *u;

	if (ctx->protocol != IPPROTO_UDP)
		return 1;
	key.cookie = bpf_get_socket_cookie(ctx);
	u = bpf_map_lookup_elem(&udp_socks, &key.cookie);
	if (u && u->conv.family) {
		key.tuple = u->conv;
		v = bpf_map_lookup_elem(&udp_flows, &key);
		/* udp_ended full: the conversation stays, released when idle. */
		if (v && bpf_map_update_elem(&udp_ended, &key, v, BPF_NOEXIST) == 0)
			bpf_map_delete_elem(&udp_flows, &key);
	}
	bpf_map_delete_elem(&udp_socks, &key.cookie);
	return 1;
}

SEC("cgroup/sendmsg4")
int udp_sendmsg4(struct bpf_sock_addr *ctx)
{
	note_udp_dst(ctx, 0);
	return 1;
}

SEC("cgroup/sendmsg6")
int udp_sendmsg6(struct bpf_sock_addr *ctx)
{
	note_udp_dst(ctx, 1);
	return 1;
}

SEC("cgroup/connect4")
int udp_connect4(struct bpf_sock_addr *ctx)
{
	note_udp_dst(ctx, 0);
	return 1;
}

SEC("cgroup/connect6")
int udp_connect6(struct bpf_sock_addr *ctx)
{
	note_udp_dst(ctx, 1);
	return 1;
}

static __always_inline int v4_mapped(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

/* The destination the application asked for, as the remote end of an egress
 * datagram: egress runs in ip_finish_output, after nat OUTPUT rewrote a
 * ClusterIP to a backend, while the reply is translated back before ingress.
 * Keying both directions by the asked-for address keeps them one
 * conversation. The send that recorded it is the one being transmitted:
 * egress runs synchronously inside that sendmsg. */
static __always_inline void pre_nat_remote(const struct udp_meta *u, struct l4_tuple *t)
{
	if (!u || !u->dst_port)
		return;
	if (t->family == u->dst_family) {
		__builtin_memcpy(t->remote_addr, u->dst_addr, 16);
	} else if (t->family == AF_INET && u->dst_family == AF_INET6 && v4_mapped(u->dst_addr)) {
		__builtin_memcpy(t->remote_addr, u->dst_addr + 12, 4);
	} else {
		return;
	}
	t->remote_port = u->dst_port;
}

/* Past its share, a cgroup's new conversations are refused (existing ones
 * go on being counted). The kernel side adds each entry it creates to
 * udp_usage (udp_uncharge: one it could not create after all); userspace,
 * which deletes entries, takes them off. */
static __always_inline int udp_charge(__u64 cgroup)
{
	__u32 *n, zero = 0;

	if (!udp_per_cgroup || !cgroup)
		return 0;
	n = bpf_map_lookup_elem(&udp_usage, &cgroup);
	if (!n) {
		bpf_map_update_elem(&udp_usage, &cgroup, &zero, BPF_NOEXIST);
		n = bpf_map_lookup_elem(&udp_usage, &cgroup);
		if (!n)
			return 0;
	}
	if (*n >= udp_per_cgroup)
		return -1;
	__sync_fetch_and_add(n, 1);
	return 0;
}

static __always_inline void udp_uncharge(__u64 cgroup)
{
	__u32 *n;

	if (!udp_per_cgroup || !cgroup)
		return;
	n = bpf_map_lookup_elem(&udp_usage, &cgroup);
	if (n && *n)
		__sync_fetch_and_add(n, -1);
}

#define IPV6_MAX_EXT 4
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60

/* ipv6_udp_offset follows up to IPV6_MAX_EXT extension headers (hop-by-hop,
 * routing, destination options, fragment) to the UDP header. It returns
 * the offset, 0 for another protocol or a non-first fragment, -1 for a
 * packet it cannot parse. */
static __always_inline int ipv6_udp_offset(struct __sk_buff *skb, __u8 nexthdr)
{
	__u32 off = sizeof(struct ipv6hdr);
	__u8 hdr[2];

#pragma unroll
	for (int i = 0; i < IPV6_MAX_EXT; i++) {
		switch (nexthdr) {
		case IPPROTO_UDP:
			return off;
		case NEXTHDR_HOP:
		case NEXTHDR_ROUTING:
		case NEXTHDR_DEST:
			if (bpf_skb_load_bytes(skb, off, hdr, sizeof(hdr)))
				return -1;
			nexthdr = hdr[0];
			off += ((__u32)hdr[1] + 1) * 8;
			break;
		case NEXTHDR_FRAGMENT: {
			struct frag_hdr fh;

			if (bpf_skb_load_bytes(skb, off, &fh, sizeof(fh)))
				return -1;
			/* Later fragments carry no UDP header. */
			if (fh.frag_off & bpf_htons(0xfff8))
				return 0;
			nexthdr = fh.nexthdr;
			off += sizeof(fh);
			break;
		}
		default:
			return 0;
		}
	}
	return nexthdr == IPPROTO_UDP ? off : -1;
}

/* tcp_packet tells most of a node's packets, TCP ones, apart by a direct
 * read of their linear IP header: bpf_skb_load_bytes, which count_udp needs
 * for headers that may not be linear, is a helper call (≈50 ns here, against
 * ≈80 ns for an empty cgroup_skb program). */
static __always_inline int tcp_packet(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data;

		return (void *)(ip + 1) <= end && ip->protocol == IPPROTO_TCP;
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data;

		return (void *)(ip6 + 1) <= end && ip6->nexthdr == IPPROTO_TCP;
	}
	return 0;
}

/*
 * UDP: cgroup_skb runs for every packet a socket in the cgroup (here: the
 * cgroup2 root, so every socket) sends or receives, with skb->sk set to
 * that socket, which gives the peer address that unconnected sendto/recvfrom
 * sockets do not keep. TCP returns at the first branch.
 */
static __always_inline void count_udp(struct __sk_buff *skb, int egress)
{
	struct udp_key key = {};
	struct udp_meta *us;
	struct udphdr uh;
	__u32 l4off, segs;
	__u8 *src, *dst;
	struct udp_stats *v;
	__u64 now, cg;
	__u32 len;

	if (tcp_packet(skb))
		return;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			goto unparsed;
		if (ip.protocol != IPPROTO_UDP)
			return;
		/* Later fragments carry no UDP header. */
		if (ip.frag_off & bpf_htons(0x1fff))
			return;
		l4off = ip.ihl * 4;
		key.tuple.family = AF_INET;
		src = (__u8 *)&ip.saddr;
		dst = (__u8 *)&ip.daddr;
		if (egress) {
			__builtin_memcpy(key.tuple.local_addr, src, 4);
			__builtin_memcpy(key.tuple.remote_addr, dst, 4);
		} else {
			__builtin_memcpy(key.tuple.local_addr, dst, 4);
			__builtin_memcpy(key.tuple.remote_addr, src, 4);
		}
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		int off;

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			goto unparsed;
		off = ipv6_udp_offset(skb, ip6.nexthdr);
		if (off < 0)
			goto unparsed;
		if (off == 0)
			return;
		l4off = off;
		key.tuple.family = AF_INET6;
		src = (__u8 *)&ip6.saddr;
		dst = (__u8 *)&ip6.daddr;
		if (egress) {
			__builtin_memcpy(key.tuple.local_addr, src, 16);
			__builtin_memcpy(key.tuple.remote_addr, dst, 16);
		} else {
			__builtin_memcpy(key.tuple.local_addr, dst, 16);
			__builtin_memcpy(key.tuple.remote_addr, src, 16);
		}
	} else {
		return;
	}

	if (bpf_skb_load_bytes(skb, l4off, &uh, sizeof(uh)))
		goto unparsed;
	key.tuple.protocol = IPPROTO_UDP;
	if (egress) {
		key.tuple.local_port = bpf_ntohs(uh.source);
		key.tuple.remote_port = bpf_ntohs(uh.dest);
	} else {
		key.tuple.local_port = bpf_ntohs(uh.dest);
		key.tuple.remote_port = bpf_ntohs(uh.source);
	}
	key.cookie = bpf_get_socket_cookie(skb);
	us = bpf_map_lookup_elem(&udp_socks, &key.cookie);
	if (egress)
		pre_nat_remote(us, &key.tuple);
	/* A GSO super-packet (UDP_SEGMENT) or a GRO-merged one carries
	 * gso_segs datagrams behind one UDP header. */
	segs = skb->gso_segs > 1 ? skb->gso_segs : 1;
	if (segs > 1)
		len = skb->len > l4off + sizeof(uh) ? skb->len - l4off - sizeof(uh) : 0;
	else {
		len = bpf_ntohs(uh.len);
		len = len > sizeof(uh) ? len - sizeof(uh) : 0;
	}
	now = bpf_ktime_get_ns();

	v = bpf_map_lookup_elem(&udp_flows, &key);
	if (!v) {
		/* A new conversation is inserted with its first datagram
		 * counted: no second lookup (most of a DNS query's are new). */
		struct udp_stats init = { .first_ns = now, .last_ns = now, .initiator = egress };
		long err;

		cg = bpf_skb_cgroup_id(skb);
		if (udp_charge(cg)) {
			count(CNT_UDP_CGROUP_QUOTA);
			note_refused(cg, 0);
			return;
		}
		init.cgroup = cg;
		if (egress) {
			init.tx_datagrams = segs;
			init.tx_bytes = len;
		} else {
			init.rx_datagrams = segs;
			init.rx_bytes = len;
		}
		if (us && us->owner.pid)
			init.owner = us->owner;
		err = bpf_map_update_elem(&udp_flows, &key, &init, BPF_NOEXIST);
		if (err == 0) {
			if (us)
				us->conv = key.tuple;
			if (segs == 1)
				l7_udp(skb, &key, l4off + sizeof(uh), len, egress, &init.owner);
			return;
		}
		udp_uncharge(cg);
		if (err == -E2BIG) {
			count(CNT_UDP_MAP_FULL);
			return;
		}
		/* -EEXIST: another CPU created it first; count into it. */
		v = bpf_map_lookup_elem(&udp_flows, &key);
		if (!v)
			return;
	}
	v->last_ns = now;
	if (egress) {
		__sync_fetch_and_add(&v->tx_datagrams, segs);
		__sync_fetch_and_add(&v->tx_bytes, len);
	} else {
		__sync_fetch_and_add(&v->rx_datagrams, segs);
		__sync_fetch_and_add(&v->rx_bytes, len);
	}
	if (!v->owner.pid && us && us->owner.pid)
		v->owner = us->owner;
	if (segs == 1)
		l7_udp(skb, &key, l4off + sizeof(uh), len, egress, &v->owner);
	return;
unparsed:
	count(CNT_UDP_UNPARSED);
}

SEC("cgroup_skb/egress")
int udp_egress(struct __sk_buff *skb)
{
	count_udp(skb, 1);
	return 1; /* observe only: never drop */
}

SEC("cgroup_skb/ingress")
int udp_ingress(struct __sk_buff *skb)
{
	count_udp(skb, 0);
	return 1;
}

/*
 * iter/bpf_map_elem over listeners, run by the agent each interval: the
 * accept queue and drop count of each listener, which no tracepoint
 * reports (a SYN refused for a full accept queue is freed as consumed).
 * The socket is read by its address, recorded when it began to listen and
 * cleared before it closes; a socket no longer listening is skipped.
 */
SEC("iter/bpf_map_elem")
int read_listeners(struct bpf_iter__bpf_map_elem *ctx)
{
	struct listener_key *key = ctx->key;
	struct listen_info *l = ctx->value;
	struct listener_stat out = {};
	const struct sock *sk;

	if (!key || !l || !l->sk)
		return 0;
	sk = (const struct sock *)l->sk;
	if (BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_LISTEN)
		return 0;
	out.key = *key;
	out.queue = BPF_CORE_READ(sk, sk_ack_backlog);
	out.queue_max = BPF_CORE_READ(sk, sk_max_ack_backlog);
	if (bpf_core_field_exists(sk->sk_drops))
		out.drops = BPF_CORE_READ(sk, sk_drops.counter);
	bpf_seq_write(ctx->meta->seq, &out, sizeof(out));
	return 0;
}

/*
 * iter/bpf_map_elem over the touched set of the generation before
 * touch_gen, run by the agent each interval once no program can still mark
 * into it: for each marked socket its key and, if it is still tracked, its
 * state (a socket gone since has its end event in the ring; its state is
 * written zeroed). The agent then deletes the keys it read: a delete here,
 * under the iteration, would make the iterator skip elements of a bucket
 * when it resumes after filling its buffer. One program, attached to each
 * set in turn.
 */
SEC("iter/bpf_map_elem")
int read_touched(struct bpf_iter__bpf_map_elem *ctx)
{
	static const struct tcp_state gone;
	__u64 *k = ctx->key;
	struct tcp_state *st;
	__u64 key;

	if (!k)
		return 0;
	key = *k;
	bpf_seq_write(ctx->meta->seq, &key, sizeof(key));
	st = bpf_map_lookup_elem(&tcp_socks, &key);
	if (st)
		bpf_seq_write(ctx->meta->seq, st, sizeof(*st));
	else
		bpf_seq_write(ctx->meta->seq, &gone, sizeof(gone));
	return 0;
}

/* The window read_udp writes, set by the agent before each read: a
 * conversation counted at or after udp_read_since (the previous read's
 * start, once every program that began before it has returned), or silent
 * since before udp_idle_before (the agent releases it). The others, the
 * lingering bulk of a resolver's socket-per-query conversations, are
 * walked in the kernel and never copied out. */
volatile __u64 udp_read_since = 0;
volatile __u64 udp_idle_before = 0;
/* How many conversations the last read walked, for the map-entries gauge:
 * set, not added to, so that an element shown again after the reader's
 * buffer filled is not counted twice. */
volatile __u64 udp_walked = 0;

/*
 * iter/bpf_map_elem over udp_flows, run by the agent each interval: the
 * key and counts of each conversation in the window above. It deletes
 * nothing (see read_touched): the agent releases idle conversations one by
 * one, each with its final counts.
 */
SEC("iter/bpf_map_elem")
int read_udp(struct bpf_iter__bpf_map_elem *ctx)
{
	struct udp_key *k = ctx->key;
	struct udp_stats *v = ctx->value;
	__u64 last;

	if (!k || !v)
		return 0;
	udp_walked = ctx->meta->seq_num + 1;
	last = v->last_ns;
	if (last < udp_read_since && last >= udp_idle_before)
		return 0;
	bpf_seq_write(ctx->meta->seq, k, sizeof(*k));
	bpf_seq_write(ctx->meta->seq, v, sizeof(*v));
	return 0;
}

/* drop_packet_tuple reads the IPv4/IPv6 and TCP/UDP headers of a freed
 * packet into t as it flew (local: source). It returns 0 on success. The
 * IPv6 extension-header chain is not followed: such drops count by reason. */
static __always_inline int drop_packet_tuple(const struct sk_buff *skb, struct l4_tuple *t)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__be16 proto = BPF_CORE_READ(skb, protocol);
	__be16 ports[2];
	__u32 l4;

	if (nh == (__u16)~0U)
		return -1;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return -1;
		if (ip.version != 4 || (ip.frag_off & bpf_htons(0x1fff)))
			return -1;
		t->protocol = ip.protocol;
		t->family = AF_INET;
		__builtin_memcpy(t->local_addr, &ip.saddr, 4);
		__builtin_memcpy(t->remote_addr, &ip.daddr, 4);
		l4 = nh + ip.ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return -1;
		t->protocol = ip6.nexthdr;
		t->family = AF_INET6;
		__builtin_memcpy(t->local_addr, &ip6.saddr, 16);
		__builtin_memcpy(t->remote_addr, &ip6.daddr, 16);
		l4 = nh + sizeof(ip6);
	} else {
		return -1;
	}
	if (t->protocol != IPPROTO_TCP && t->protocol != IPPROTO_UDP)
		return -1;
	/* Source and destination ports lead both TCP and UDP headers. */
	if (bpf_probe_read_kernel(ports, sizeof(ports), head + l4))
		return -1;
	t->local_port = bpf_ntohs(ports[0]);
	t->remote_port = bpf_ntohs(ports[1]);
	return 0;
}

/* An inet TCP or UDP socket whose fields can be read: not a request or
 * time-wait mini socket, which share only sock_common. */
static __always_inline int inet_full_sock(const struct sock *sk)
{
	__u16 family;
	int state;

	if (!sk)
		return 0;
	family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	state = sk->__sk_common.skc_state;
	if (state == TCP_NEW_SYN_RECV || state == TCP_TIME_WAIT)
		return 0;
	return sk->sk_protocol == IPPROTO_TCP || sk->sk_protocol == IPPROTO_UDP;
}

/*
 * skb:kfree_skb fires from kfree_skb_reason() (sk_skb_reason_drop()) for
 * every freed packet with the kernel's reason; packets freed as consumed
 * normally take consume_skb, but some paths free a consumed packet here
 * with SKB_CONSUMED, so those return first. rx_sk (Linux 6.12+) is the
 * socket that was receiving it where skb->sk is not set.
 */
SEC("tp_btf/kfree_skb")
int BPF_PROG(on_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason, struct sock *rx_sk)
{
	struct drop_key key = {};
	const struct sock *sk;
	__u32 slot;
	__u64 *n, one = 1;

	if (reason <= SKB_CONSUMED)
		return 0;
	slot = reason < DROP_REASON_OTHER ? reason : DROP_REASON_OTHER;
	n = bpf_map_lookup_elem(&drop_reasons, &slot);
	if (n)
		*n += 1;
	/* Plain kfree_skb() frees with NOT_SPECIFIED, also where nothing was
	 * lost (a clean TCP connection frees one such packet): counted by
	 * reason, never put on a flow as its drop. */
	if (reason == SKB_DROP_REASON_NOT_SPECIFIED)
		return 0;
	key.reason = slot;

	/* rx_sk is a trusted pointer that bpf_get_socket_cookie takes;
	 * skb->sk is an RCU one it refuses, so its cookie comes from
	 * tcp_socks, which holds it for every tracked TCP socket. */
	if (rx_sk && inet_full_sock(rx_sk)) {
		sk = rx_sk;
		key.cookie = bpf_get_socket_cookie(rx_sk);
	} else if ((sk = skb->sk) && inet_full_sock(sk)) {
		__u64 addr = (__u64)sk;
		struct tcp_state *st = bpf_map_lookup_elem(&tcp_socks, &addr);

		if (st)
			key.cookie = st->cookie;
	} else {
		sk = NULL;
	}
	key.netns = sk ? sock_netns(sk) : skb->dev->nd_net.net->ns.inum;
	if (!drop_packet_tuple(skb, &key.tuple)) {
		key.from_packet = 1;
	} else if (key.cookie) {
		/* sk may be a UDP socket, and skb->sk an RCU pointer that
		 * bpf_skc_to_tcp_sock refuses: the port takes a probe read. */
		tuple_of(sk, BPF_CORE_READ((const struct inet_sock *)sk, inet_sport), &key.tuple);
		key.tuple.protocol = sk->sk_protocol;
	} else {
		count(CNT_DROP_UNATTRIBUTED);
		return 0;
	}
	n = bpf_map_lookup_elem(&drops, &key);
	if (n)
		__sync_fetch_and_add(n, 1);
	else if (bpf_map_update_elem(&drops, &key, &one, BPF_NOEXIST))
		/* Another CPU created it between the lookup and now. */
		if ((n = bpf_map_lookup_elem(&drops, &key)))
			__sync_fetch_and_add(n, 1);
	return 0;
}

#include "tls.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
