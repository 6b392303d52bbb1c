// Package hub is the cluster's one view: it takes every agent's flow
// records, joins the two sides of connections whatever node each side is
// on, and keeps the live topology, the recent flows and their history.
//
//	agent ─gRPC─▶ ingest ─▶ Receive ─▶ log (durable) ─▶ ack
//	                                      │
//	                     every interval: Tick
//	                                      ▼
//	      pending records ─▶ publish (join, cap per source) ─┬─▶ ring (live flows, follow)
//	                                                          ├─▶ topology.Store ─▶ per-edge metrics
//	                                                          └─▶ flows since the last checkpoint
//	every few seconds: checkpoint (changed buckets, flows, log position)
//
// `flowlens hub` feeds it from gRPC; `flowlens up` from its own agent, in
// process, through the same Receive and Tick.
//
// # Nothing acked is lost, nothing is counted twice
//
// A batch is appended to the log, with its agent's (incarnation, sequence)
// high-water mark, before it is acked; a batch at or below the mark is a
// resend, acked and not counted again. Ticks are logged too, so the log
// holds exactly the sequence of inputs the pipeline saw, and the pipeline
// (publish and topology) is pure: the same inputs rebuild the same state.
// A checkpoint stores the topology buckets changed since the previous one
// and the flows published since, at the position of the last tick it
// reflects. After a restart the hub loads the buckets, then replays the log:
// the events up to the checkpoint with counting off, so that the join's and
// the topology's indexes and the records waiting for their other side are
// as they were (the log keeps a learning window before the checkpoint for
// this), and the events after it with counting on.
package hub
