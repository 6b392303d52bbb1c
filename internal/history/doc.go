// Package history keeps the hub's durable state in DuckDB, an embedded
// columnar database: the ingest log, the topology's checkpoints and the
// recent flow history. One process owns a data directory (DuckDB locks
// its file); one DB serialises its writes.
//
// # Ingest log: acknowledged means durable
//
// Every batch an agent sends is appended, in one transaction with that
// agent's high-water mark (incarnation, seq), before the hub acknowledges
// it; so are the ticks of the hub's interval clock. Each event has a
// position (Pos) the hub assigns, strictly increasing. A hub killed at any
// moment loses nothing it acknowledged, and reading the high-water marks
// back it recognises an agent's resends.
//
// # Checkpoints and restart
//
// Every few seconds the hub writes, in one transaction: the topology
// buckets that changed (whole, replacing what the table held of them), the
// flow records it published since the last checkpoint, and the log
// position they reflect. The same transaction trims the log, keeping the
// learning window (LogWindow) of events before the checkpoint:
//
//	log:   ...trimmed... │◀── LogWindow ──▶│ checkpoint pos │ appended since ▶
//	replay (restart):    └ counting off ───┘                └ counting on ───▶
//
// After a restart the hub restores the retained buckets into a fresh
// topology.Store (Restore), then replays every retained event (Replay
// from 0): those up to the checkpoint's position with counting off, so
// the store's dedup index and held records are what they were, and those
// after it counted.
//
// # Flow history and the disk budget
//
// Flow records are kept for FlowRetention and within DiskBudget bytes:
// past the budget the oldest flows go first, then the oldest edge buckets,
// and Stats counts what went early. The log is never cut for the budget:
// it is what was acknowledged.
//
// # Columns, not blobs
//
// A record is a row with one column per flow.Record field (columns.go has
// the one mapping both the log and the flows table use), so the history
// can be queried with SQL and exported to Parquet as it is.
package history
