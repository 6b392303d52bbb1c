// Package conntable turns what the kernel reports about sockets into flow
// records: one per connection (or UDP conversation) per interval, carrying
// the deltas of that interval.
//
// It is a pure, single-threaded core with no clock and no I/O, in the style
// of etcd's raft: the agent feeds it observations and calls Flush once per
// interval.
//
//	kernel                      Table                         out
//	ring buffer ── EndTCP ───▶ ┌───────────────────────┐
//	tcp_socks map ─ SyncTCP ─▶ │ last cumulative        │── Flush ─▶ []flow.Record
//	udp_flows map ─ SyncUDP ─▶ │ counters per socket    │
//	                           └───────────────────────┘
//
// The kernel keeps cumulative counters per socket; the table remembers what
// it already reported for each socket (by cookie) and accounts only the
// difference, so a socket read many times, or read and then ended, is never
// counted twice. A socket that opens and closes between two reads is known
// only from its end event, which carries its whole history.
package conntable
