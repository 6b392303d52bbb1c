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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* resized by the loader */
	__type(key, __u64);         /* struct sock address */
	__type(value, struct tcp_state);
} tcp_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct listener_key);
	__type(value, struct owner);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); /* resized by the loader */
	__type(key, struct udp_key);
	__type(value, struct udp_stats);
} udp_flows SEC(".maps");

/* The owner of a UDP socket, recorded in process context (send/recv) and
 * read by the cgroup_skb programs, which run where current is meaningless.
 * Socket-local storage is freed with the socket: it cannot leak. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct owner);
} udp_owners SEC(".maps");

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

/* Make the shared types visible to bpf2go -type. */
const struct conn_event *unused_conn_event __attribute__((unused));
const struct udp_key *unused_udp_key __attribute__((unused));
const struct udp_stats *unused_udp_stats __attribute__((unused));
const struct listener_key *unused_listener_key __attribute__((unused));
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

/* The local port comes from inet_sport, not skc_num: tcp_set_state() fires
 * the tracepoint for TCP_CLOSE after inet_put_port() has zeroed inet_num. */
static __always_inline void read_tuple(const struct sock *sk, struct l4_tuple *t)
{
	t->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	t->local_port = bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	t->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (t->family == AF_INET) {
		__be32 *l = (__be32 *)t->local_addr, *r = (__be32 *)t->remote_addr;

		*l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		*r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(&t->local_addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->remote_addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

static __always_inline __u32 sock_netns(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* The socket's cgroup, not current's: accepted sockets are created in
 * softirq context and inherit the listener's cgroup, which is the server's. */
static __always_inline __u64 sock_cgroup(const struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
}

/* The process's name, not the thread's: resolvers and runtimes do socket
 * I/O from worker threads with names like "isc-net-0000". */
static __always_inline void owner_current(const struct sock *sk, struct owner *o)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	o->pid = bpf_get_current_pid_tgid() >> 32;
	o->netns = sock_netns(sk);
	o->cgroup = sock_cgroup(sk);
	BPF_CORE_READ_STR_INTO(&o->comm, task, group_leader, comm);
}

static __always_inline int is_self(void)
{
	return self_pid && (bpf_get_current_pid_tgid() >> 32) == self_pid;
}

/* Cumulative counters the TCP stack already keeps; copying them is cheaper
 * and more exact than counting segments ourselves. */
static __always_inline void snapshot_tcp(const struct sock *sk, struct tcp_state *st)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	st->segs_out = BPF_CORE_READ(tp, segs_out);
	st->segs_in = BPF_CORE_READ(tp, segs_in);
	st->retrans = BPF_CORE_READ(tp, total_retrans);
	st->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
}

/* track starts tracking a socket. A full map is counted only when opened
 * is set, at the one moment each socket is first seen (connect, accept):
 * the later retries (an established connect the agent missed, the first
 * I/O of an untracked socket) would count the same socket again. */
static __always_inline struct tcp_state *track(const struct sock *sk, __u8 role,
					       const struct owner *o, __u8 source, int opened)
{
	__u64 key = (__u64)sk;
	struct tcp_state st = {};

	st.role = role;
	st.owner_source = source;
	if (o)
		st.owner = *o;
	st.cookie = bpf_get_socket_cookie((void *)sk);
	st.start_ns = bpf_ktime_get_ns();
	st.tuple.protocol = IPPROTO_TCP;
	read_tuple(sk, &st.tuple);
	if (bpf_map_update_elem(&tcp_socks, &key, &st, BPF_ANY)) {
		if (opened)
			count(CNT_TCP_MAP_FULL);
		return NULL;
	}
	return bpf_map_lookup_elem(&tcp_socks, &key);
}

static __always_inline struct owner *listener_of(const struct sock *sk)
{
	struct listener_key lk = {
		.netns = sock_netns(sk),
		.port = BPF_CORE_READ(sk, __sk_common.skc_num),
	};

	return bpf_map_lookup_elem(&listeners, &lk);
}

static __always_inline void on_listen(const struct sock *sk, int listening)
{
	struct listener_key lk = {
		.netns = sock_netns(sk),
		.port = BPF_CORE_READ(sk, __sk_common.skc_num),
	};
	struct owner o = {};

	if (!listening) {
		/* With SO_REUSEPORT several processes share the port: only the
		 * recorded owner's close forgets it. */
		struct owner *cur = bpf_map_lookup_elem(&listeners, &lk);

		if (cur && cur->pid == (bpf_get_current_pid_tgid() >> 32))
			bpf_map_delete_elem(&listeners, &lk);
		return;
	}
	owner_current(sk, &o);
	if (bpf_map_update_elem(&listeners, &lk, &o, BPF_ANY))
		count(CNT_LISTENER_MAP_FULL);
}

/* TCP_CLOSE settles the verdict: the error and the final tuple are read
 * here, while they are still there (the caller of connect() clears sk_err
 * when it reads it). The socket may still hold unread data. */
static __always_inline void on_close(const struct sock *sk, int oldstate)
{
	__u64 key = (__u64)sk;
	struct tcp_state *st = bpf_map_lookup_elem(&tcp_socks, &key);

	if (!st)
		return;
	snapshot_tcp(sk, st);
	/* An active open's local port is chosen after SYN_SENT is set, so
	 * read the tuple again, keeping what we had if the socket has already
	 * let go of its port. */
	if (BPF_CORE_READ((const struct inet_sock *)sk, inet_sport))
		read_tuple(sk, &st->tuple);
	st->end_ns = bpf_ktime_get_ns();
	st->sk_err = BPF_CORE_READ(sk, sk_err);
	st->failed = oldstate == TCP_SYN_SENT;
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
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(CNT_RINGBUF_FULL);
		bpf_map_delete_elem(&tcp_socks, &key);
		return;
	}
	if (!st->end_ns) {
		/* Destroyed without passing TCP_CLOSE (not expected for a
		 * tracked socket): end it now. */
		snapshot_tcp(sk, st);
		st->end_ns = bpf_ktime_get_ns();
	}
	e->state = *st;
	e->kind = st->failed ? EVENT_CONNECT_FAIL : EVENT_CLOSE;
	bpf_map_delete_elem(&tcp_socks, &key);
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
	struct owner *l;

	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;

	switch (newstate) {
	case TCP_LISTEN:
		/* The agent's own listeners are recorded too, so that the
		 * connections they accept can be recognised and skipped. */
		on_listen(sk, 1);
		return 0;
	case TCP_SYN_SENT:
		if (oldstate != TCP_CLOSE || is_self())
			return 0;
		/* connect() again on a socket whose last connect failed. */
		finish(sk);
		owner_current(sk, &o);
		track(sk, ROLE_CLIENT, &o, OWNER_SELF, 1);
		return 0;
	case TCP_ESTABLISHED:
		if (oldstate == TCP_SYN_SENT) {
			st = bpf_map_lookup_elem(&tcp_socks, &key);
			/* A connect that began before the agent: owner is filled on first I/O. */
			if (!st)
				st = track(sk, ROLE_CLIENT, NULL, OWNER_NONE, 0);
		} else if (oldstate == TCP_SYN_RECV) {
			l = listener_of(sk);
			if (l && self_pid && l->pid == self_pid)
				return 0;
			st = track(sk, ROLE_SERVER, l, l ? OWNER_LISTENER : OWNER_NONE, 1);
		} else {
			return 0;
		}
		if (st) {
			st->established = 1;
			snapshot_tcp(sk, st);
		}
		return 0;
	case TCP_CLOSE:
		if (oldstate == TCP_LISTEN)
			on_listen(sk, 0);
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

/* A TCP socket that was already established when the agent started is
 * adopted on its first I/O; its role follows whether its port is listened on. */
static __always_inline struct tcp_state *adopt(const struct sock *sk)
{
	struct owner o = {};
	struct tcp_state *st;

	if (BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_ESTABLISHED)
		return NULL;
	owner_current(sk, &o);
	st = track(sk, listener_of(sk) ? ROLE_SERVER : ROLE_CLIENT, &o, OWNER_SELF, 0);
	if (st)
		st->established = 1;
	return st;
}

static __always_inline void note_udp_owner(struct sock *sk)
{
	struct owner *o = bpf_sk_storage_get(&udp_owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (o && !o->pid)
		owner_current(sk, o);
}

/*
 * sock:sock_send_length / sock_recv_length fire from sock_sendmsg_nosec() and
 * sock_recvmsg_nosec() for every send/recv call (write, sendfile and splice
 * included), in the calling process: exact application bytes with the process
 * that moved them, at a cost per call rather than per packet.
 */
static __always_inline void account_io(const struct sock *sk, struct tcp_state *st, int ret, int send)
{
	if (st->owner_source != OWNER_SELF) {
		owner_current(sk, &st->owner);
		st->owner_source = OWNER_SELF;
	}
	if (send)
		__sync_fetch_and_add(&st->bytes_sent, ret);
	else
		__sync_fetch_and_add(&st->bytes_recv, ret);
	snapshot_tcp(sk, st);
}

static __always_inline void on_io(struct sock *sk, int ret, int flags, int send)
{
	__u16 family, proto;
	__u64 key = (__u64)sk;
	struct tcp_state *st;

	if (ret <= 0 || (!send && (flags & MSG_PEEK)))
		return;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	proto = BPF_CORE_READ(sk, sk_protocol);
	if (proto == IPPROTO_UDP) {
		note_udp_owner(sk);
		return;
	}
	if (is_self())
		return;
	/* Go (1.24+) listens with MPTCP by default: the application reads and
	 * writes the MPTCP socket while a TCP subflow carries the connection.
	 * Account to the first subflow, which is the only one unless the peer
	 * speaks MPTCP too (then the other subflows' bytes land on it). The
	 * subflow was tracked from its own handshake. */
	if (proto == IPPROTO_MPTCP) {
		const struct sock *sub = BPF_CORE_READ((struct mptcp_sock *)sk, first);

		key = (__u64)sub;
		st = key ? bpf_map_lookup_elem(&tcp_socks, &key) : NULL;
		if (st)
			account_io(sub, st, ret, send);
		return;
	}
	if (proto != IPPROTO_TCP)
		return;

	st = bpf_map_lookup_elem(&tcp_socks, &key);
	if (!st) {
		st = adopt(sk);
		if (!st)
			return;
	}
	account_io(sk, st, ret, send);
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

	if (st)
		snapshot_tcp(sk, st);
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
	if (st)
		__sync_fetch_and_add(&st->rst_sent, 1);
	return 0;
}

/* tcp:tcp_receive_reset fires from tcp_reset() before the socket is closed. */
SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_receive_reset, struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct tcp_state *st = bpf_map_lookup_elem(&tcp_socks, &key);

	if (st)
		__sync_fetch_and_add(&st->rst_recv, 1);
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
	struct udphdr uh;
	__u32 l4off;
	__u8 *src, *dst;
	struct udp_stats *v;
	__u64 now;
	__u32 len;

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

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			goto unparsed;
		if (ip6.nexthdr != IPPROTO_UDP) {
			/* Extension headers before UDP are rare; count, don't chase. */
			if (ip6.nexthdr != IPPROTO_TCP && ip6.nexthdr != NEXTHDR_ICMPV6)
				goto unparsed;
			return;
		}
		l4off = sizeof(ip6);
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
	len = bpf_ntohs(uh.len);
	len = len > sizeof(uh) ? len - sizeof(uh) : 0;
	now = bpf_ktime_get_ns();

	v = bpf_map_lookup_elem(&udp_flows, &key);
	if (!v) {
		struct udp_stats init = { .first_ns = now, .initiator = egress };

		/* -EEXIST means another CPU created it first: fine. */
		if (bpf_map_update_elem(&udp_flows, &key, &init, BPF_NOEXIST) == -E2BIG) {
			count(CNT_UDP_MAP_FULL);
			return;
		}
		v = bpf_map_lookup_elem(&udp_flows, &key);
		if (!v)
			return;
	}
	v->last_ns = now;
	if (egress) {
		__sync_fetch_and_add(&v->tx_datagrams, 1);
		__sync_fetch_and_add(&v->tx_bytes, len);
	} else {
		__sync_fetch_and_add(&v->rx_datagrams, 1);
		__sync_fetch_and_add(&v->rx_bytes, len);
	}
	if (!v->owner.pid) {
		struct bpf_sock *bsk = skb->sk;

		if (bsk)
			bsk = bpf_sk_fullsock(bsk);
		if (bsk) {
			struct owner *o = bpf_sk_storage_get(&udp_owners, bsk, 0, 0);

			if (o && o->pid)
				v->owner = *o;
		}
	}
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

char LICENSE[] SEC("license") = "Dual BSD/GPL";
