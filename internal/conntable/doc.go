// Package conntable turns what the kernel reports about sockets into flow
// records: one per connection (or UDP conversation) per interval, carrying
// the deltas of that interval.
//
// It is a pure, single-threaded core with no clock and no I/O, in the style
// of etcd's raft: the agent feeds it observations and calls Flush once per
// interval with the time it read.
//
//	kernel                      Table                         out
//	ring buffer ── EndTCP ───▶ ┌───────────────────────┐
//	tcp_socks map ─ SyncTCP ─▶ │ last cumulative        │── Flush ─▶ []flow.Record
//	udp_flows map ─ SyncUDP ─▶ │ counters per socket    │
//	        ◀── expired ────── │                        │
//	udp_ended map ─ EndedUDP ▶ └───────────────────────┘
//
// The kernel keeps cumulative counters per socket; the table remembers what
// it already reported for each socket (by cookie) and accounts only the
// difference, so a socket read many times, or read and then ended, is never
// counted twice. A socket that opens and closes between two reads is known
// only from its end event, which carries its whole history. UDP alike: the
// agent reads only the conversations that changed since its last read or
// went idle, and a conversation that ended with its socket comes once,
// with its final counts.
//
// Counting rules:
//
//   - 32-bit kernel counters (segments, retransmits, resets, datagrams)
//     wrap: deltas are taken modulo 2^32. Bytes are 64-bit.
//   - A connect() again on a socket keeps its cookie but starts a new
//     connection (another StartNS, counters from zero). The table keeps the
//     earlier connection until its end event, whichever of the event and
//     the next map read comes first.
//   - A socket the kernel adopted already established (Adopted: the agent
//     started after it opened) is never counted as opened; its counters
//     start from the baseline the kernel side took.
//   - A flow's record is keyed without the owning process: an accepted
//     socket passes from the listener's process to a worker at its first
//     I/O and stays one record, named after the latest owner.
//
// Bounds (size.go): the TCP table holds SocketsFor(kernel map) and the UDP
// table ConversationsFor(kernel map, idle, remember, interval), so that a
// table sized from the kernel maps never refuses what they report. A full
// UDP table forgets released conversations (remembered only for their role)
// oldest first, and accounts a conversation that still does not fit whole
// and has the caller release its kernel entry: every datagram read is
// counted, and every kernel entry can be freed. Each loss is counted once,
// in one unit, in Stats.
//
// Drops (drops.go): packets the kernel dropped, by reason, are matched to
// the records of their flow by 5-tuple at Flush; a drop whose flow has no
// record yet (a SYN dropped before the client's connect failed) waits for
// one, bounded in time and count, and is counted unmatched past that.
//
// Time (clock.go): kernel timestamps are CLOCK_MONOTONIC; ConnStart is
// dated on the wall clock as it reads at Flush, less the connection's age,
// keeping Go's monotonic reading, so that a wall-clock step moves ConnStart
// with the identity history stamped by time.Now().
package conntable
