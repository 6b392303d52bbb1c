/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TLS plaintext through uprobes, included at the end of flowlens.bpf.c: it
 * uses tls_calls, tls_conns, count() and l7_sample_tls() from there.
 *
 * A TLS library call is seen twice: at entry, where its arguments say which
 * connection object and which buffer, and at return, where the result says
 * how many plaintext bytes the buffer holds. In between, the send/recv the
 * call makes on its socket (sock_*_length, tls_nested) writes the socket
 * into the call record, since neither OpenSSL's SSL * nor Go's *tls.Conn
 * names it in a way a probe can read without knowing the library's build.
 * The connection object → socket pair is kept in tls_conns for the calls
 * that make no send/recv (a read served from the library's buffer).
 *
 * user space (internal/tlsprobe) attaches these programs:
 *
 *   OpenSSL (libssl.so*, every process mapping it):
 *     SSL_write, SSL_read         entry: ssl_write_entry, ssl_read_entry
 *                                 return (uretprobe): ssl_return
 *     SSL_write_ex, SSL_read_ex   entry: ssl_write_ex_entry, ssl_read_ex_entry
 *                                 return (uretprobe): ssl_ex_return
 *   Go crypto/tls (each Go executable that has it, Go 1.17+ amd64):
 *     (*Conn).Write, (*Conn).Read entry: go_tls_write_entry, go_tls_read_entry
 *                                 every RET instruction: go_tls_return
 *     (*Conn).handshakeContext    entry: go_tls_handshake_entry
 *                                 every RET instruction: go_tls_handshake_return
 *
 * Go's calls are not probed with uretprobes: a uretprobe replaces the
 * return address on the stack, and Go moves stacks when they grow, so the
 * replaced address would be copied to a stack the kernel does not know and
 * the program would crash. A probe on each RET instruction sees the return
 * with no change to the stack.
 */
#ifndef FLOWLENS_TLS_H
#define FLOWLENS_TLS_H

/* SSL_read_ex/SSL_write_ex return 1 and report the bytes through a size_t *
 * (their 4th argument), which the call record has no room for. LRU: a
 * thread killed inside a call never returns to delete its entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tls_call_key);
	__type(value, __u64);
} tls_ex_sizes SEC(".maps");

static __always_inline struct tls_call_key tls_thread_key(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call_key k = { .id = (__u32)id, .tgid = id >> 32, .kind = TLS_CALL_THREAD };

	return k;
}

/* Go keeps the running goroutine's g pointer in R14 (register ABI, Go
 * 1.17+ on amd64): a goroutine that parks in Read resumes on another
 * thread, with the same g. */
static __always_inline struct tls_call_key tls_goroutine_key(const struct pt_regs *ctx)
{
	struct tls_call_key k = {
		.id = ctx->r14,
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.kind = TLS_CALL_GOROUTINE,
	};

	return k;
}

/* tls_call_add records a call in progress unless one is (then it fails),
 * counted in tls_inflight; tls_call_put replaces one a thread or goroutine
 * began and never finished, counted once. */
static __always_inline int tls_call_add(const struct tls_call_key *k, const struct tls_call *call)
{
	__u32 zero = 0;
	__s64 *inflight;

	if (bpf_map_update_elem(&tls_calls, k, call, BPF_NOEXIST))
		return -1;
	inflight = bpf_map_lookup_elem(&tls_inflight, &zero);
	if (inflight)
		__sync_fetch_and_add(inflight, 1);
	return 0;
}

static __always_inline void tls_call_put(const struct tls_call_key *k, const struct tls_call *call)
{
	if (tls_call_add(k, call))
		bpf_map_update_elem(&tls_calls, k, call, BPF_ANY);
}

static __always_inline void tls_call_begin(const struct tls_call_key *k, __u64 conn, __u64 buf,
					   __u8 send, __u8 source)
{
	struct tls_call call = { .conn = conn, .buf = buf, .send = send, .source = source };

	tls_call_put(k, &call);
}

/* tls_write_begin samples a write at its entry when its connection's socket
 * is known: sampled at its return, a request could come after its own
 * response (Go's reading goroutine can get the answer before the writing
 * one reaches a RET), and the parser would pair them wrongly. The length
 * asked for is taken as written: blocking writes write it all or fail. The
 * first write of a connection, before its socket is known, is sampled at
 * its return, when no response can have come yet. */
static __always_inline void tls_write_begin(const struct tls_call_key *k, __u64 conn, __u64 buf,
					    __u64 len, __u8 source)
{
	struct tls_call call = { .conn = conn, .buf = buf, .send = 1, .source = source };
	struct tls_conn_key ck = { .conn = conn, .tgid = k->tgid };
	__u64 *sk = bpf_map_lookup_elem(&tls_conns, &ck);

	if (sk && len > 0 && len <= 0x7fffffff) {
		l7_sample_tls(*sk, (const void *)buf, (__u32)len, L7_SEND, source);
		call.sampled = 1;
	}
	tls_call_put(k, &call);
}

/* tls_call_end finishes the call of k that moved n plaintext bytes (n <= 0:
 * none, an error or a retry): learns or recalls its socket, samples. */
static __always_inline void tls_call_end(const struct tls_call_key *k, long n)
{
	struct tls_call *call = bpf_map_lookup_elem(&tls_calls, k);
	struct tls_conn_key ck = { .tgid = k->tgid };
	__u64 sk, buf, *known;
	__u8 send, source, sampled;

	if (!call)
		return;
	ck.conn = call->conn;
	sk = call->sk;
	buf = call->buf;
	send = call->send;
	source = call->source;
	sampled = call->sampled;
	if (bpf_map_delete_elem(&tls_calls, k) == 0) {
		__u32 zero = 0;
		__s64 *inflight = bpf_map_lookup_elem(&tls_inflight, &zero);

		if (inflight)
			__sync_fetch_and_add(inflight, -1);
	}

	known = bpf_map_lookup_elem(&tls_conns, &ck);
	if (sk) {
		/* Learnt even when the call failed: a non-blocking
		 * SSL_read that found no data still showed its socket. */
		if (!known || *known != sk)
			bpf_map_update_elem(&tls_conns, &ck, &sk, BPF_ANY);
	} else if (known) {
		sk = *known;
	}
	if (n <= 0 || sampled)
		return;
	if (!sk) {
		count(CNT_TLS_UNATTRIBUTED);
		return;
	}
	l7_sample_tls(sk, (const void *)buf, (__u32)n, send ? L7_SEND : L7_RECV, source);
}

/* int SSL_write(SSL *ssl, const void *buf, int num) */
SEC("uprobe")
int BPF_KPROBE(ssl_write_entry, void *ssl, const void *buf, int num)
{
	struct tls_call_key k = tls_thread_key();

	tls_write_begin(&k, (__u64)ssl, (__u64)buf, num > 0 ? num : 0, L7_SRC_OPENSSL);
	return 0;
}

/* int SSL_read(SSL *ssl, void *buf, int num) */
SEC("uprobe")
int BPF_KPROBE(ssl_read_entry, void *ssl, void *buf)
{
	struct tls_call_key k = tls_thread_key();

	tls_call_begin(&k, (__u64)ssl, (__u64)buf, 0, L7_SRC_OPENSSL);
	return 0;
}

/* SSL_read and SSL_write return the bytes moved, or <= 0. */
SEC("uretprobe")
int BPF_KRETPROBE(ssl_return, int ret)
{
	struct tls_call_key k = tls_thread_key();

	tls_call_end(&k, ret);
	return 0;
}

static __always_inline void ssl_ex_begin(void *ssl, const void *buf, __u64 num, __u64 *bytes, __u8 send)
{
	struct tls_call_key k = tls_thread_key();
	__u64 at = (__u64)bytes;

	if (send)
		tls_write_begin(&k, (__u64)ssl, (__u64)buf, num, L7_SRC_OPENSSL);
	else
		tls_call_begin(&k, (__u64)ssl, (__u64)buf, send, L7_SRC_OPENSSL);
	bpf_map_update_elem(&tls_ex_sizes, &k, &at, BPF_ANY);
}

/* int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written) */
SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_entry, void *ssl, const void *buf, __u64 num, __u64 *written)
{
	ssl_ex_begin(ssl, buf, num, written, 1);
	return 0;
}

/* int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes) */
SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_entry, void *ssl, void *buf, __u64 num, __u64 *readbytes)
{
	ssl_ex_begin(ssl, buf, num, readbytes, 0);
	return 0;
}

/* SSL_read_ex and SSL_write_ex return 1 when they moved *bytes, else 0. */
SEC("uretprobe")
int BPF_KRETPROBE(ssl_ex_return, int ret)
{
	struct tls_call_key k = tls_thread_key();
	__u64 *at = bpf_map_lookup_elem(&tls_ex_sizes, &k);
	__u64 n = 0;

	if (!at)
		return 0;
	if (ret != 1 || !*at || bpf_probe_read_user(&n, sizeof(n), (void *)*at))
		n = 0;
	bpf_map_delete_elem(&tls_ex_sizes, &k);
	/* Larger than an int: not a count this call can have made. */
	if (n > 0x7fffffff)
		n = 0;
	tls_call_end(&k, (long)n);
	return 0;
}

/* func (c *Conn) Write(b []byte) (int, error) and Read alike, Go register
 * ABI: c in AX, b's pointer in BX (its length in CX). */
SEC("uprobe")
int go_tls_write_entry(struct pt_regs *ctx)
{
	struct tls_call_key k = tls_goroutine_key(ctx);

	tls_write_begin(&k, ctx->ax, ctx->bx, ctx->cx, L7_SRC_GOTLS);
	return 0;
}

SEC("uprobe")
int go_tls_read_entry(struct pt_regs *ctx)
{
	struct tls_call_key k = tls_goroutine_key(ctx);

	tls_call_begin(&k, ctx->ax, ctx->bx, 0, L7_SRC_GOTLS);
	return 0;
}

/* At a RET of Read or Write: the int result is in AX. */
SEC("uprobe")
int go_tls_return(struct pt_regs *ctx)
{
	struct tls_call_key k = tls_goroutine_key(ctx);

	tls_call_end(&k, (long)ctx->ax);
	return 0;
}

/* func (c *Conn) handshakeContext(ctx context.Context) error, c in AX.
 * Go reads all the socket holds into the connection's buffer, so the
 * request a client sends right behind its Finished message is read by the
 * handshake, and the first Read makes no recv to learn the socket from.
 * The handshake's own recv teaches it: a call with no buffer, never
 * sampled. Read and Write run the handshake inside themselves when it was
 * not done before: their record, which learns the socket as well, is kept
 * (BPF_NOEXIST), and the handshake's return leaves it to theirs. */
SEC("uprobe")
int go_tls_handshake_entry(struct pt_regs *ctx)
{
	struct tls_call_key k = tls_goroutine_key(ctx);
	struct tls_call call = { .conn = ctx->ax, .source = L7_SRC_GOTLS };

	tls_call_add(&k, &call);
	return 0;
}

SEC("uprobe")
int go_tls_handshake_return(struct pt_regs *ctx)
{
	struct tls_call_key k = tls_goroutine_key(ctx);
	struct tls_call *call = bpf_map_lookup_elem(&tls_calls, &k);

	if (call && !call->buf)
		tls_call_end(&k, 0);
	return 0;
}

#endif /* FLOWLENS_TLS_H */
