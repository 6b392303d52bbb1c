/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types shared between the eBPF programs and the Go agent. bpf2go generates
 * the Go side from these definitions (-type), so there is one source of truth
 * and no hand-copied struct layouts.
 */
#ifndef FLOWLENS_H
#define FLOWLENS_H

#define COMM_LEN 16

/* One end of an L4 conversation as the kernel sees it from one socket:
 * local is the socket's own address, remote its peer. Addresses are IPv6 or
 * IPv4 stored in the first 4 bytes; family says which. */
struct l4_tuple {
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;  /* host byte order */
	__u16 remote_port; /* host byte order */
	__u16 family;      /* AF_INET or AF_INET6 */
	__u8 protocol;     /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 _pad;
};

/* Who owns a socket: the process that opened it (client), called listen()
 * (server, until a process does I/O on the accepted socket), or did I/O. */
struct owner {
	__u32 pid; /* thread-group id in the initial pid namespace */
	__u32 netns;
	__u64 cgroup;
	char comm[COMM_LEN];
};

enum role {
	ROLE_UNKNOWN = 0,
	ROLE_CLIENT = 1, /* this socket opened the connection */
	ROLE_SERVER = 2, /* this socket was accepted */
};

enum owner_source {
	OWNER_NONE = 0,
	OWNER_SELF = 1,     /* taken in the owning process's own context */
	OWNER_LISTENER = 2, /* inherited from the listener; replaced on first I/O */
};

/* Per-socket state for a TCP socket, keyed by its struct sock address. All
 * counters are cumulative since the socket was first seen; userspace turns
 * them into per-interval deltas. What every send and receive reads or
 * writes comes first, right after the map's key, so that the common call
 * touches one or two cache lines of the entry, not four; an L7 sample reads
 * on to the tuple, owner and role. */
struct tcp_state {
	__u64 bytes_sent; /* application payload handed to sendmsg */
	__u64 bytes_recv; /* application payload returned by recvmsg */
	__u32 segs_out;   /* TCP segments, from tcp_sock */
	__u32 segs_in;
	__u32 retrans;    /* retransmitted segments, from tcp_sock */
	__u32 srtt_us;    /* latest smoothed RTT, from tcp_sock */
	__u32 touch_gen;  /* the last touch generation it was marked in (see touch()) */
	__u8 owner_source;
	/* L7 sampling: what the content check saw (enum l7_hint), how many
	 * messages it looked at before deciding, and whether a sample was
	 * lost since the last one submitted. */
	__u8 l7_hint;
	__u8 l7_checked;
	__u8 l7_gap;
	__u64 cookie;     /* socket cookie: unique for the boot, unlike the address */
	struct l4_tuple tuple;
	struct owner owner;
	__u8 role;
	__u8 established; /* handshake completed */
	__u8 failed;      /* reached TCP_CLOSE from SYN_SENT: the connect failed */
	__u8 adopted;     /* first seen already established: its opening was not seen */
	__s32 sk_err;     /* errno the kernel recorded at TCP_CLOSE, e.g. ECONNREFUSED */
	__u64 start_ns;   /* first seen (connect, accept or first I/O), CLOCK_MONOTONIC */
	__u64 end_ns;     /* when it reached TCP_CLOSE; 0 while open */
	__u32 rst_sent;
	__u32 rst_recv;
	/* A socket adopted already established (found by the start-up walk,
	 * or on its first I/O) carries tcp_sock's lifetime counters: these
	 * are their values at adoption, which userspace subtracts. */
	__u32 base_segs_out;
	__u32 base_segs_in;
	__u32 base_retrans;
	__u32 syn_retrans;     /* SYNs sent again before the handshake completed (client) */
	__u64 established_ns;  /* when an active open completed its handshake; 0: not seen */
	__u64 charged_cgroup; /* the cgroup whose quota this entry counts against; 0: none */
	/* L7 of a connection whose two ends are on this node (see l7.h,
	 * l7_pairs): the server end the client samples for, once decided. */
	__u64 l7_peer_cookie;
	__u32 l7_peer_netns;
	/* A client's: tcp_sock's write_seq when a send last reached the hooks
	 * (set at the handshake's end): a receive whose peer acknowledged
	 * more was answered before a send's sample was taken (l7_syscall). */
	__u32 l7_sent_seq;
	__u8 l7_pair; /* enum l7_pair_state this end settled: NONE until then */
	__u8 _pad[7];
};

enum event_kind {
	EVENT_CLOSE = 1,       /* an established connection ended */
	EVENT_CONNECT_FAIL = 2 /* an active open never got established */
};

/* Ring-buffer record: lifecycle only, one per socket, never per packet. */
struct conn_event {
	struct tcp_state state;
	__u8 kind;
	__u8 _pad[7];
};

/* UDP is connectionless: the kernel aggregates datagrams per (socket,
 * local, remote) in a hash map that userspace reads and expires. */
struct udp_key {
	__u64 cookie;
	struct l4_tuple tuple;
};

struct udp_stats {
	struct owner owner;
	__u64 first_ns;
	__u64 last_ns;
	__u64 tx_bytes;
	__u64 rx_bytes;
	__u32 tx_datagrams;
	__u32 rx_datagrams;
	__u64 cgroup;   /* the socket's cgroup, charged for this entry */
	__u8 initiator; /* 1 when this socket sent the first datagram */
	__u8 _pad[7];
};

/* What the UDP programs know of a socket beyond its packets: the owner,
 * recorded in process context before the first datagram leaves, the
 * destination the application asked for, which kube-proxy's DNAT may have
 * rewritten by the time egress sees it, and the conversation that
 * udp_release ends with the socket. */
struct udp_meta {
	struct owner owner;
	__u8 dst_addr[16]; /* last sendmsg/connect destination, before NAT */
	__u16 dst_port;    /* host byte order; 0: none recorded */
	__u16 dst_family;
	__u32 _pad;
	struct l4_tuple conv; /* the socket's last conversation created; family 0: none */
};

/* A v4 and a v6 listener on one port are two listeners; with SO_REUSEPORT
 * several sockets share a key, and the key goes when the last one closes,
 * whichever process closes it. */
struct listener_key {
	__u32 netns;
	__u16 port;
	__u16 family;
};

struct listen_info {
	struct owner owner;
	__u32 sockets; /* listening sockets with this key */
	__u32 _pad;
	/* The struct sock of the latest socket to listen on this key, read by
	 * the read_listeners iterator; 0 after it closed while others with
	 * the key stay, until the next one listens. */
	__u64 sk;
};

/* What read_listeners writes per listener: its accept queue and the drops
 * the kernel charged to it (sk_drops: SYNs and handshake-completing ACKs
 * dropped because the accept queue was full, ListenOverflows, or for lack
 * of memory or SYN-queue room, which ListenDrops counts beside them). */
struct listener_stat {
	struct listener_key key;
	__u32 queue;     /* sk_ack_backlog: connections waiting for accept() */
	__u32 queue_max; /* sk_max_ack_backlog: listen()'s backlog, capped by somaxconn */
	__u32 drops;     /* sk_drops, since the socket began to listen */
	__u32 _pad;
};

/* What one cgroup holds in the shared maps, so that one noisy neighbour
 * cannot fill them for everybody. */
struct cgroup_usage {
	__u32 tcp; /* tcp_socks entries, kept by the kernel side */
	__u32 _pad;
};

/* What was refused to one cgroup because it was over its share. */
struct cgroup_refused {
	__u64 tcp; /* sockets */
	__u64 udp; /* datagrams */
};

/* Drops: packets the kernel freed with a drop reason (tp_btf/kfree_skb).
 * Reasons are counted per slot: the enum's value where it is below
 * DROP_REASON_OTHER, else (subsystem reasons, enums grown past it) in the
 * last slot. */
#define DROP_REASON_SLOTS 256
#define DROP_REASON_OTHER (DROP_REASON_SLOTS - 1)

/* One kind of drop, attributed as far as the kernel can tell: to a socket
 * (cookie != 0) when the packet still had one, and to the packet's own
 * addresses when they could be parsed. */
struct drop_key {
	/* from_packet: local is the packet's source, remote its destination,
	 * as it flew. Otherwise the socket's own local and remote. */
	struct l4_tuple tuple;
	__u64 cookie; /* the socket's; 0: none */
	__u32 netns;  /* the socket's, else the device's; 0: unknown */
	__u16 reason; /* slot, see DROP_REASON_SLOTS */
	__u8 from_packet;
	__u8 _pad;
};

/* L7: the first bytes of each send and receive on sockets whose content
 * looks like a protocol flowlens parses, in their own ring buffer. */
#define L7_DATA_MAX 512 /* a sample's room; the loader's l7_capture_bytes takes at most this */

enum l7_source {
	L7_SRC_SYSCALL = 0, /* the bytes a send/recv system call moved */
	L7_SRC_OPENSSL = 1, /* plaintext of OpenSSL's SSL_read/SSL_write */
	L7_SRC_GOTLS = 2,   /* plaintext of Go's crypto/tls (*Conn).Read/Write */
	L7_SRC_UDP = 3,     /* a UDP datagram's payload, from cgroup_skb */
};

enum l7_dir {
	L7_SEND = 0, /* this socket's process wrote it */
	L7_RECV = 1, /* this socket's process read it */
};

/* What the kernel's content check saw on a socket's first messages: a
 * filter, user space parses and decides. */
enum l7_hint {
	L7_HINT_NONE = 0,
	L7_HINT_HTTP = 1,
	L7_HINT_POSTGRES = 2,
	L7_HINT_REDIS = 3,
	L7_HINT_DNS = 4,
	L7_HINT_TLS = 5,    /* a TLS record: the plaintext comes from uprobes, if at all */
	L7_HINT_OPAQUE = 6, /* nothing known: no more samples */
	L7_HINT_PEER = 7,   /* its client end on this node samples for both: no samples here */
};

/* Whether one end of a TCP connection samples for both (l7.h, l7_pairs).
 * In a pair entry: UNDECIDED until the server's handshake or the client's
 * first sample settles it. In tcp_state.l7_pair: what that end settled. */
enum l7_pair_state {
	L7_PAIR_NONE = 0,
	L7_PAIR_UNDECIDED = 1,
	L7_PAIR_BOTH = 2,     /* the client samples for both ends */
	L7_PAIR_EACH = 3,     /* each end samples for itself, as for a lone end */
};

/* A TCP connection opened on this node, found by the connection as its
 * client sees it. isn is the client's initial sequence number, which both
 * ends know: two network namespaces that use the same addresses make the
 * same tuple, but not, short of connecting within the same 64 ns (the
 * sequence number's clock), the same sequence number. */
struct l7_pair_key {
	__u8 client_addr[16];
	__u8 server_addr[16];
	__u16 client_port;
	__u16 server_port;
	__u16 family;
	__u16 _pad;
	__u32 isn;
};

struct l7_pair {
	__u64 server_cookie; /* written by the server end before it pairs */
	__u32 server_netns;
	__u32 _pad;
	/* enum l7_pair_state, changed by compare-and-swap: 64 bits, the
	 * width BPF's atomics have at the instruction set the objects use. */
	__u64 state;
};

struct l7_event {
	__u64 cookie;
	__u64 ns; /* CLOCK_MONOTONIC at the sample */
	struct l4_tuple tuple; /* UDP: the datagram's (remote before NAT); TCP: the socket's */
	__u32 len;      /* bytes the call (or datagram) moved */
	__u16 captured; /* bytes of data[] that are filled */
	__u8 dir;       /* enum l7_dir */
	__u8 source;    /* enum l7_source */
	__u8 role;      /* enum role of the socket (TCP) */
	__u8 gap;       /* samples of this socket were lost before this one */
	__u8 hint;      /* enum l7_hint */
	/* A receive the peer answered after a send of this socket whose
	 * sample is not yet taken: the send left the kernel before its hook
	 * ran. Its sample follows in the ring; userspace feeds this one after
	 * it, by seq. */
	__u8 early;
	__u32 pid;
	__u32 netns; /* the socket's network namespace */
	/* A client's: its server end on this node, which takes no samples of
	 * its system calls, so that its requests go on that end's flow too
	 * (bar TLS plaintext, which each end's library calls give); 0: none. */
	__u32 peer_netns;
	/* A TCP client's system call's: a send's write_seq after it (the
	 * end of its bytes), a receive's snd_una (the end of what the peer
	 * had read when it answered). 0 for the other samples. */
	__u32 seq;
	__u32 _pad;
	__u64 peer_cookie;
	__u8 data[L7_DATA_MAX];
};

/* A TLS library call in progress. OpenSSL's are keyed by thread; Go's by
 * goroutine (the g pointer in R14), because a goroutine that blocks in
 * Read resumes on another thread. The send/recv the call makes on its
 * socket (seen by the sock_*_length hooks) writes the socket in, and is
 * not itself sampled: it carries ciphertext. */
enum tls_call_kind {
	TLS_CALL_THREAD = 0,
	TLS_CALL_GOROUTINE = 1,
};

struct tls_call_key {
	__u64 id;   /* thread id, or goroutine pointer */
	__u32 tgid;
	__u32 kind; /* enum tls_call_kind */
};

struct tls_call {
	__u64 conn; /* SSL * or *tls.Conn */
	__u64 buf;  /* the caller's buffer */
	__u64 sk;   /* struct sock address, once a nested send/recv showed it; 0: not yet */
	__u8 send;
	__u8 source;  /* enum l7_source */
	__u8 sampled; /* a write sampled at its entry: the return has nothing to add */
	__u8 _pad[5];
};

/* Which socket a TLS connection object writes to, learnt from its calls'
 * nested send/recv, for the calls that make none (a read served from the
 * library's buffer). */
struct tls_conn_key {
	__u64 conn;
	__u32 tgid;
	__u32 _pad;
};

/* Indexes into the per-CPU counters map; every place the kernel side cannot
 * record something bumps one, so userspace exports what was lost and where. */
enum counter {
	CNT_RINGBUF_FULL = 0, /* close/fail event not delivered */
	CNT_TCP_MAP_FULL,     /* socket opened (connect, accept) but not tracked: tcp_socks full */
	CNT_UDP_MAP_FULL,     /* datagram not counted: udp_flows full */
	CNT_LISTENER_MAP_FULL,
	CNT_UDP_UNPARSED,     /* truncated packets, or IPv6 extension headers past the chain we follow */
	CNT_EVENTS,           /* events submitted */
	CNT_TCP_CGROUP_QUOTA, /* socket not tracked: its cgroup holds its share of tcp_socks */
	CNT_UDP_CGROUP_QUOTA, /* datagram not counted: its cgroup holds its share of udp_flows */
	CNT_ADOPTED,          /* sockets adopted already established */
	CNT_DROP_UNATTRIBUTED, /* a drop counted by reason only: no inet socket, no IPv4/IPv6 TCP/UDP header */
	CNT_L7_SAMPLES,        /* L7 samples submitted */
	CNT_L7_BUDGET,         /* L7 samples not taken: over the per-second budget */
	CNT_L7_RING_FULL,      /* L7 samples lost: their ring buffer was full */
	CNT_TLS_UNATTRIBUTED,  /* TLS plaintext with no socket known for its connection */
	CNT_TOUCHED_FULL,      /* a changed socket not marked: its touched set was full */
	/* tcp_socks entries made and deleted: their difference is the map's
	 * fill, which the agent no longer learns by reading the whole map. */
	CNT_TCP_TRACKED,
	CNT_TCP_UNTRACKED,
	CNT_L7_PAIRED,         /* TCP connections whose client's samples stand for both ends */
	CNT_MAX,
};

#endif /* FLOWLENS_H */
