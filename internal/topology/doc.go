// Package topology folds flow records into the hub's topology: who talks
// to whom, how much and how well, over any window of the retained history.
// It is a pure core in the style of conntable: no I/O, no clock, no
// goroutines. The caller (the hub's ingest) calls Tick(now) once per
// interval, then Ingest with that interval's records from every agent
// (after the join named the backends behind Services), and serves Query
// and Diff in between. A Store is not safe for concurrent use.
//
// # Data model
//
// A record becomes one edge at the finest naming the store keeps (an
// ident per end: kind, namespace, pod, workload, the Service dialed, node,
// command, container id, and the address only when nothing else names the
// end). A query names both ends at its Level and sums the edges that fall
// together. Node ids are made of what they name only, edge ids are a hash
// of their two node ids, so ids are the same in every window and query:
//
//	level      an end is named by                       id, e.g.
//	pod        its pod                                  pod:shop/api-7d9f
//	workload   namespace + workload kind/name           workload:shop/Deployment/api
//	service    a destination: the Service it dialed;    service:shop/api
//	           else its workload
//	namespace  its namespace                            namespace:shop
//	node       the node it runs on (a plain host: the   node:node-b
//	           host that observed the process)
//	external   as workload, only edges with an end      external:203.0.113.9
//	           named by its address alone
//	process    host (+ container) + command; pids are   process:host-1/4f1c/curl
//	           not kept: they churn
//	container  host + container id; a host process      container:host-1/4f1c
//	           outside containers: its host             node:host-1
//
// An end without the level's name takes the most specific one it has:
// pod, apiserver, Service (its backend unknown), process, node, and last
// its address (external:<ip>; the world's, and a plain host's peers that
// no observed socket names), or the DNS name the observing side resolved
// that address from when it saw the answer (external:api.example.com).
//
// Edges carry the counted side's application requests, by protocol and a
// bounded class (HTTP status class, DNS rcode, ok/error): requests.go.
//
// # Both sides of a connection
//
// When client and server are both observed, each connection arrives
// twice. It is counted from exactly one side (dedup.go has the rule):
//
//	client record  10.244.1.10:43122 -> svc/api (pod api-5c) start 12.000 ─┐ same protocol, client addr:port,
//	server record  10.244.1.10:43122 -> pod api-5c :8080     start 12.010 ─┘ start within the join's tolerance
//	counted:       connections, failures, bytes, RTT from the client
//	               retransmits from each side (each counts only its own)
//	               the destination's process from the server
//
// A server record waits up to Hold batches for its client; if none comes,
// the connection is counted from the server from then on, and a client
// record that comes later adds only its retransmits. So no connection is
// counted twice whatever the order of arrival, while the dedup index holds
// it (Stats.RecordsUndeduplicated counts what a full index let through).
//
// # Buckets and windows
//
// Records go into fixed buckets of Resolution (10 s) by their interval's
// end: bucket i holds ends in (i*R, (i+1)*R]. A query's window is the
// Window/R buckets ending with the one holding At, so At rounds up to the
// resolution and a window ending now includes the bucket still filling.
// Rates are the window's totals over its length.
//
//	time  ──┬─────┬─────┬─────┬─────┬─────┬──▶
//	        │ b-4 │ b-3 │ b-2 │ b-1 │  b  │      ring of MaxBuckets slots
//	                    └──── window 30s ───┘ ◀─ At (in b)
//	since window:  └── 30s ──┘                   Diff compares the two
//
// Retention is a ring of MaxBuckets buckets (8640: 24 h) of at most
// MaxEdgesPerBucket edges each; records outside it or over the edge limit
// are dropped and counted in Stats, as are evicted buckets. RTT p50/p95
// come from a mergeable log-binned summary (rtt.go) within RelativeError
// (2%) of the true nearest-rank value; the max is exact.
package topology
