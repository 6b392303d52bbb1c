/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * L7 capture, included by flowlens.bpf.c after its maps and helpers.
 *
 * The bytes an application moves are not in the sock_*_length tracepoints'
 * arguments, but the system call that fired them is: bpf_task_pt_regs()
 * gives the registers the task entered the kernel with, so the buffer of a
 * read/write/send/recv is read where the byte counting already runs, with
 * no per-syscall entry hook and nothing paid by sockets that are not TCP or
 * UDP. A socket's first messages are checked for a protocol flowlens parses
 * (L7_CHECKS of them); the rest of a socket that matches none is never
 * sampled. UDP datagrams are sampled in cgroup_skb, one message each, when
 * their header looks like DNS.
 *
 * Each sample is the first l7_capture_bytes of the message with the length
 * the call moved, within a per-second byte budget per CPU: over it, samples
 * are not taken, counted, and the socket's next sample says there was a gap.
 */
#ifndef FLOWLENS_L7_H
#define FLOWLENS_L7_H

/* 0: L7 capture off. At most L7_DATA_MAX. */
volatile const __u32 l7_capture_bytes = 0;
/* Bytes (samples with their headers) one CPU may submit per second; 0: no limit. */
volatile const __u64 l7_budget_bytes = 0;
/* As wakeup_bytes, for the L7 ring. */
volatile const __u64 l7_wakeup_bytes = 0;

#define L7_CHECKS 4    /* messages looked at before a socket is opaque */
#define L7_CLASSIFY 16 /* bytes the content check reads */

/* x86-64 system call numbers that move a socket's bytes through one buffer. */
#define NR_read 0
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47

/* The budget of the second that ends at end_ns: a sample compares its
 * clock with it, and divides only at the second's first sample. */
struct l7_budget {
	__u64 end_ns;
	__u64 used;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* resized by the loader */
} l7_events SEC(".maps");


struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l7_budget);
} l7_budgets SEC(".maps");

/* LRU: a call whose return was never seen (a thread killed inside
 * SSL_read) must not hold its entry for ever. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tls_call_key);
	__type(value, struct tls_call);
} tls_calls SEC(".maps");

/* TLS calls in progress on the node, so that sends and receives look for
 * theirs only when there can be one: most of a node's traffic is not
 * inside a TLS library call. Approximate (an entry the LRU evicts is not
 * subtracted): it errs towards looking. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} tls_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tls_conn_key);
	__type(value, __u64);
} tls_conns SEC(".maps");

/* Connections opened on this node, from their handshake to their client's
 * first sample (or release), for their server end to find if it is on
 * this node too. Only a connection whose two ends are local sockets of one
 * kernel finds its client's tuple here: loopback, or namespaces joined by
 * veth without NAT between them. LRU, and small: what matters is an entry's
 * first instants, from the client's handshake to the server's, and a new
 * entry evicts the oldest, a connection long open that sampled nothing
 * (then, should it sample, each end samples for itself). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct l7_pair_key);
	__type(value, struct l7_pair);
} l7_pairs SEC(".maps");

const struct l7_event *unused_l7_event __attribute__((unused));
const struct l7_pair_key *unused_l7_pair_key __attribute__((unused));
const struct l7_pair *unused_l7_pair __attribute__((unused));
const enum l7_pair_state *unused_l7_pair_state __attribute__((unused));
const struct tls_call_key *unused_tls_call_key __attribute__((unused));
const struct tls_call *unused_tls_call __attribute__((unused));
const struct tls_conn_key *unused_tls_conn_key __attribute__((unused));
const enum l7_source *unused_l7_source __attribute__((unused));
const enum l7_dir *unused_l7_dir __attribute__((unused));
const enum l7_hint *unused_l7_hint __attribute__((unused));

static __always_inline __u32 be32(const __u8 *p)
{
	return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | p[3];
}

static __always_inline int is4(const __u8 *p, const char *s)
{
	return p[0] == s[0] && p[1] == s[1] && p[2] == s[2] && p[3] == s[3];
}

/* dns_header: a query or response with one question and opcode QUERY, the
 * shape of every DNS exchange applications make. */
static __always_inline int dns_header(const __u8 *h)
{
	return (h[2] & 0x78) == 0 && h[4] == 0 && h[5] == 1;
}

/* What the first bytes of a message say about its protocol. Only message
 * starts that a client or server of each protocol sends first, or a
 * mid-stream request of a keep-alive connection begins with. */
static __always_inline __u8 l7_classify(const __u8 *d, __u32 n)
{
	if (n >= 4) {
		if (is4(d, "GET ") || is4(d, "POST") || is4(d, "PUT ") || is4(d, "HEAD") ||
		    is4(d, "DELE") || is4(d, "PATC") || is4(d, "OPTI") || is4(d, "TRAC") ||
		    is4(d, "HTTP"))
			return L7_HINT_HTTP;
		/* A TLS record: handshake, alert or application data. */
		if ((d[0] == 0x16 || d[0] == 0x15 || d[0] == 0x17) && d[1] == 3 && d[2] <= 4)
			return L7_HINT_TLS;
		/* RESP: an array of bulk strings. */
		if (d[0] == '*' && d[1] >= '1' && d[1] <= '9')
			return L7_HINT_REDIS;
	}
	if (n >= 8) {
		__u32 len = be32(d), code = be32(d + 4);

		/* StartupMessage (3.0), SSLRequest, GSSENCRequest. */
		if (len >= 8 && len <= 10000 &&
		    (code == 196608 || code == 80877103 || code == 80877104))
			return L7_HINT_POSTGRES;
	}
	if (n >= 14) {
		__u32 len = ((__u32)d[0] << 8) | d[1];

		/* DNS over TCP: a two-byte length, then a header. */
		if (len >= 17 && dns_header(d + 2))
			return L7_HINT_DNS;
	}
	return L7_HINT_NONE;
}

/* The verifier needs a size's bound where it is used: clang, knowing the
 * bound from earlier, would otherwise drop the check or check a copy. */
#define L7_BOUNDED(n, max) ({ barrier_var(n); (n) <= (max); })

/*
 * A connection whose two ends are sockets on this node moves the same bytes
 * through both: sampled at each end, every message is two samples of ≈1 µs
 * each in the kernel. One end, the client, samples for both, and its
 * samples name the other end so that the agent puts their requests on both
 * ends' flows. It is settled before any data moves where it can be: the
 * client registers its connection at its handshake's end, the server's
 * handshake ends after (the ACK that ends it is the client's), finds the
 * entry, and takes it from UNDECIDED to BOTH with one compare-and-swap:
 * from then on it takes no samples. The client's first sample takes it
 * from UNDECIDED to EACH, or finds BOTH and the server's socket. Whichever
 * comes first wins, so no message goes unsampled: a client that sends
 * before the server's handshake ends (its data carrying the ACK) samples
 * for itself, and so does the server. A client not on this node registers
 * nothing, and a server finds nothing.
 */

/* l7_pair_key_of is the key of t's connection as its client sees it; t is
 * the socket's own tuple, server says whether it is the server's. */
static __always_inline void l7_pair_key_of(struct l7_pair_key *k, const struct l4_tuple *t,
					   int server, __u32 isn)
{
	const __u8 *client = server ? t->remote_addr : t->local_addr;
	const __u8 *srv = server ? t->local_addr : t->remote_addr;

	__builtin_memcpy(k->client_addr, client, 16);
	__builtin_memcpy(k->server_addr, srv, 16);
	k->client_port = server ? t->remote_port : t->local_port;
	k->server_port = server ? t->local_port : t->remote_port;
	k->family = t->family;
	k->_pad = 0;
	k->isn = isn;
}

/* The client's initial sequence number, as each end computes it: the
 * counters of what was acknowledged (client) or received (server) include
 * the SYN, and the sequence numbers moved with them. */
static __always_inline __u32 l7_client_isn(const struct tcp_sock *tp, int server)
{
	if (server)
		return tp->rcv_nxt - (__u32)tp->bytes_received - 1;
	return tp->snd_una - (__u32)tp->bytes_acked;
}

/* l7_pair_open, at a handshake's end: a client registers its connection,
 * a server looks for its client's and, found undecided, pairs. */
static __always_inline void l7_pair_open(const struct tcp_sock *tp, struct tcp_state *st)
{
	int server = st->role == ROLE_SERVER;
	struct l7_pair_key k;
	struct l7_pair *p;

	if (!l7_capture_bytes || !tp)
		return;
	l7_pair_key_of(&k, &st->tuple, server, l7_client_isn(tp, server));
	if (!server) {
		struct l7_pair init = { .state = L7_PAIR_UNDECIDED };

		bpf_map_update_elem(&l7_pairs, &k, &init, BPF_ANY);
		return;
	}
	p = bpf_map_lookup_elem(&l7_pairs, &k);
	if (!p)
		return;
	/* Written before the swap, which orders them for the client. */
	p->server_cookie = st->cookie;
	p->server_netns = st->owner.netns;
	if (__sync_val_compare_and_swap(&p->state, L7_PAIR_UNDECIDED, L7_PAIR_BOTH) == L7_PAIR_UNDECIDED) {
		st->l7_pair = L7_PAIR_BOTH;
		st->l7_hint = L7_HINT_PEER;
	}
}

/* l7_pair_close forgets a client's entry its first sample did not take
 * (a connection of no protocol sampled, or TLS). */
static __always_inline void l7_pair_close(const struct sock *sk, const struct tcp_state *st)
{
	const struct tcp_sock *tp;
	struct l7_pair_key k;

	if (!l7_capture_bytes || st->role != ROLE_CLIENT || st->l7_pair != L7_PAIR_NONE || st->adopted ||
	    !(tp = tcp_of(sk)))
		return;
	l7_pair_key_of(&k, &st->tuple, 0, l7_client_isn(tp, 0));
	bpf_map_delete_elem(&l7_pairs, &k);
}

/* l7_pair_settle decides, at a client's first sample, whether it samples
 * for its server end too, and forgets the entry. A server's was settled at
 * its handshake: it samples for itself here. */
static __always_inline void l7_pair_settle(struct tcp_state *st, const struct tcp_sock *tp)
{
	struct l7_pair_key k;
	struct l7_pair *p;

	st->l7_pair = L7_PAIR_EACH;
	if (st->role != ROLE_CLIENT || !tp)
		return;
	l7_pair_key_of(&k, &st->tuple, 0, l7_client_isn(tp, 0));
	p = bpf_map_lookup_elem(&l7_pairs, &k);
	if (!p)
		return;
	if (__sync_val_compare_and_swap(&p->state, L7_PAIR_UNDECIDED, L7_PAIR_EACH) == L7_PAIR_BOTH) {
		st->l7_pair = L7_PAIR_BOTH;
		st->l7_peer_cookie = p->server_cookie;
		st->l7_peer_netns = p->server_netns;
		count(CNT_L7_PAIRED);
	}
	bpf_map_delete_elem(&l7_pairs, &k);
}

/* l7_budget_take takes bytes of this CPU's budget for the second now
 * (CLOCK_MONOTONIC) falls in. */
static __always_inline int l7_budget_take(__u32 bytes, __u64 now)
{
	__u32 zero = 0;
	struct l7_budget *b = bpf_map_lookup_elem(&l7_budgets, &zero);

	if (!b)
		return -1;
	if (now >= b->end_ns) {
		b->end_ns = (now / 1000000000ULL + 1) * 1000000000ULL;
		b->used = 0;
	}
	if (l7_budget_bytes && b->used + bytes > l7_budget_bytes) {
		count(CNT_L7_BUDGET);
		return -1;
	}
	b->used += bytes;
	return 0;
}

/* l7_cap bounds n by the configured capture for the verifier. */
static __always_inline __u32 l7_cap(__u32 n)
{
	if (n > l7_capture_bytes)
		n = l7_capture_bytes;
	if (n > L7_DATA_MAX)
		n = L7_DATA_MAX;
	return n;
}

/* l7_reserve takes room for a sample in the ring, where its bytes are read
 * straight in; NULL when the ring is full. */
static __always_inline struct l7_event *l7_reserve(void)
{
	struct l7_event *ev = bpf_ringbuf_reserve(&l7_events, sizeof(*ev), 0);

	if (!ev)
		count(CNT_L7_RING_FULL);
	return ev;
}

static __always_inline void l7_submit(struct l7_event *ev)
{
	__u64 flags;

	if (!l7_wakeup_bytes)
		flags = 0;
	else if (bpf_ringbuf_query(&l7_events, BPF_RB_AVAIL_DATA) >= l7_wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	else
		flags = BPF_RB_NO_WAKEUP;
	bpf_ringbuf_submit(ev, flags);
	count(CNT_L7_SAMPLES);
}

/* l7_fill writes a sample's header: who, which way, how much, and when
 * (the clock read that took its budget). */
static __always_inline void l7_fill(struct l7_event *ev, __u64 cookie, const struct l4_tuple *t,
				    __u32 len, __u32 n, int send, __u8 source, __u8 role, __u8 gap,
				    __u8 hint, __u32 pid, __u32 netns, __u64 now)
{
	ev->cookie = cookie;
	ev->ns = now;
	ev->tuple = *t;
	ev->len = len;
	ev->captured = n;
	ev->dir = send ? L7_SEND : L7_RECV;
	ev->source = source;
	ev->role = role;
	ev->gap = gap;
	ev->hint = hint;
	ev->early = 0;
	ev->pid = pid;
	ev->netns = netns;
	ev->seq = 0;
	ev->_pad = 0;
}

/* l7_take reads n bytes of buf into a sample of st and submits it; a
 * sample not taken leaves a gap for the next one to report. seq and early
 * are the sample's order (struct l7_event). */
static __always_inline void l7_take(struct tcp_state *st, const void *buf, __u32 len, __u64 n,
				    int send, __u8 source, __u32 seq, __u8 early)
{
	__u64 now = bpf_ktime_get_ns();
	struct l7_event *ev;

	if (!L7_BOUNDED(n, L7_DATA_MAX) || l7_budget_take(n + offsetof(struct l7_event, data), now) ||
	    !(ev = l7_reserve())) {
		st->l7_gap = 1;
		return;
	}
	if (bpf_probe_read_user(ev->data, n, buf)) {
		bpf_ringbuf_discard(ev, BPF_RB_NO_WAKEUP);
		st->l7_gap = 1;
		return;
	}
	l7_fill(ev, st->cookie, &st->tuple, len, n, send, source, st->role, st->l7_gap, st->l7_hint,
		bpf_get_current_pid_tgid() >> 32, st->owner.netns, now);
	ev->peer_cookie = st->l7_peer_cookie;
	ev->peer_netns = st->l7_peer_netns;
	ev->seq = seq;
	ev->early = early;
	l7_submit(ev);
	st->l7_gap = 0;
}

/* syscall_buf returns the user buffer of the system call in progress and
 * how much of it is one contiguous run (the first iovec of a vector), or
 * NULL for calls whose bytes do not pass through one (sendfile, splice,
 * io_uring, the mmsg calls whose message index is unknown). */
static __always_inline const void *syscall_buf(__u32 *room)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	/* Each register loaded once, up front: clang would otherwise merge
	 * the loads of dx and of an iovec's length into one instruction on
	 * two kinds of pointer, which the verifier refuses. */
	__u64 arg = regs->si, count = regs->dx, nr = regs->orig_ax;
	struct user_msghdr mh;
	struct iovec iov;

	switch (nr) {
	case NR_read:
	case NR_write:
	case NR_sendto:
	case NR_recvfrom:
		*room = count;
		return (const void *)arg;
	case NR_sendmsg:
	case NR_recvmsg:
		if (bpf_probe_read_user(&mh, sizeof(mh), (void *)arg) || !mh.msg_iovlen)
			return NULL;
		arg = (__u64)mh.msg_iov;
		break;
	case NR_readv:
	case NR_writev:
		break;
	default:
		return NULL;
	}
	if (bpf_probe_read_user(&iov, sizeof(iov), (void *)arg))
		return NULL;
	*room = iov.iov_len;
	return iov.iov_base;
}

/* l7_syscall samples a plaintext send or receive of ret bytes on st.
 *
 * The send hook runs once the bytes have left: on a busy CPU a client's
 * sending thread can be preempted before it, while the server answers and
 * another thread of the client receives the answer. The receive's sample
 * would then come first in the ring, and a request-response parser pair
 * the answer with the request before. Every send of a client records how
 * far the stream was written when its hook ran; a receive whose peer
 * acknowledged more answered a send whose sample is still to come, and
 * says so (early, with snd_una as its seq) for userspace to put it after
 * that send's. A server needs none of it: it reads a request before it
 * can answer, and a late answer's sample still pairs with the oldest
 * request waiting. */
static __always_inline void l7_syscall(struct tcp_state *st, const struct tcp_sock *tp, int ret,
				       int send)
{
	const void *buf;
	__u32 room = 0, seq = 0;
	__u8 early = 0;
	__u64 n, k;

	if (!l7_capture_bytes || st->l7_hint == L7_HINT_OPAQUE || st->l7_hint == L7_HINT_TLS ||
	    st->l7_hint == L7_HINT_PEER)
		return;
	if (tp && st->role == ROLE_CLIENT) {
		if (send) {
			seq = tp->write_seq;
			st->l7_sent_seq = seq;
		} else {
			seq = tp->snd_una;
			early = (__s32)(seq - st->l7_sent_seq) > 0;
		}
	}
	buf = syscall_buf(&room);
	if (!buf) {
		st->l7_gap = st->l7_hint != L7_HINT_NONE;
		return;
	}
	n = l7_cap(room < (__u32)ret ? room : (__u32)ret);
	if (st->l7_hint == L7_HINT_NONE) {
		__u8 head[L7_CLASSIFY] = {}, hint;

		k = n < L7_CLASSIFY ? n : L7_CLASSIFY;
		if (!L7_BOUNDED(k, L7_CLASSIFY) || bpf_probe_read_user(head, k, buf))
			return;
		hint = l7_classify(head, k);
		if (hint == L7_HINT_NONE) {
			if (++st->l7_checked >= L7_CHECKS)
				st->l7_hint = L7_HINT_OPAQUE;
			return;
		}
		st->l7_hint = hint;
		if (hint == L7_HINT_TLS)
			return;
	}
	if (st->l7_pair == L7_PAIR_NONE)
		l7_pair_settle(st, tp);
	l7_take(st, buf, ret, n, send, L7_SRC_SYSCALL, seq, early);
}

/* tls_nested: a TLS library call of this thread (OpenSSL) or goroutine
 * (Go, whose g pointer R14 holds when it enters the kernel) is in
 * progress, and this send/recv is its ciphertext: the call learns its
 * socket. Done for failed calls too: a Go Read's first attempt, which
 * returns EAGAIN before the goroutine parks, is the only one on the
 * thread the call started on. */
static __always_inline int tls_nested(const struct sock *sk)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call_key k = { .id = (__u32)id, .tgid = id >> 32, .kind = TLS_CALL_THREAD };
	__u32 zero = 0;
	__s64 *inflight = bpf_map_lookup_elem(&tls_inflight, &zero);
	struct tls_call *c;

	if (!inflight || *inflight <= 0)
		return 0;
	c = bpf_map_lookup_elem(&tls_calls, &k);
	if (!c) {
		struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());

		k.id = regs->r14;
		k.kind = TLS_CALL_GOROUTINE;
		if (!k.id)
			return 0;
		c = bpf_map_lookup_elem(&tls_calls, &k);
		if (!c)
			return 0;
	}
	c->sk = (__u64)sk;
	return 1;
}

/* l7_sample_tls samples plaintext a TLS library call moved on socket sk
 * (its struct sock address, as tls_nested or tls_conns learnt it). */
static __always_inline void l7_sample_tls(__u64 sk, const void *buf, __u32 len, __u8 dir, __u8 source)
{
	struct tcp_state *st = bpf_map_lookup_elem(&tcp_socks, &sk);

	if (!l7_capture_bytes)
		return;
	if (!st) {
		count(CNT_TLS_UNATTRIBUTED);
		return;
	}
	st->l7_hint = L7_HINT_TLS;
	l7_take(st, buf, len, l7_cap(len), dir == L7_SEND, source, 0, 0);
}

/* l7_udp samples a datagram whose payload looks like DNS, at off in skb. */
static __always_inline void l7_udp(struct __sk_buff *skb, const struct udp_key *key, __u32 off,
				   __u32 len, int egress, const struct owner *o)
{
	struct l7_event *ev;
	__u8 h[12];
	__u64 n, now;

	if (!l7_capture_bytes || len < sizeof(h))
		return;
	if (bpf_skb_load_bytes(skb, off, h, sizeof(h)) || !dns_header(h))
		return;
	n = l7_cap(len);
	now = bpf_ktime_get_ns();
	if (n < sizeof(h) || !L7_BOUNDED(n, L7_DATA_MAX) ||
	    l7_budget_take(n + offsetof(struct l7_event, data), now) || !(ev = l7_reserve()))
		return;
	if (bpf_skb_load_bytes(skb, off, ev->data, n)) {
		bpf_ringbuf_discard(ev, BPF_RB_NO_WAKEUP);
		return;
	}
	l7_fill(ev, key->cookie, &key->tuple, len, n, egress, L7_SRC_UDP, ROLE_UNKNOWN, 0, L7_HINT_DNS,
		o->pid, o->netns, now);
	ev->peer_cookie = 0; /* UDP is not paired */
	ev->peer_netns = 0;
	l7_submit(ev);
}

#endif /* FLOWLENS_L7_H */
