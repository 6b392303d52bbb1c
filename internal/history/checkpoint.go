package history

import (
	"context"
	"database/sql/driver"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/topology"
)

// Checkpoint is what the hub's state is made of at a log position, as far
// as it changed since the previous checkpoint.
type Checkpoint struct {
	Pos   uint64    // the last log event the state reflects
	Time  time.Time // the hub's time of it: retention and the log's trim count back from here
	Edges []topology.EdgeRow
	Flows []flow.Record // published since the previous checkpoint
}

// Checkpoint writes c in one transaction: its buckets replace what the
// edges table held of them, its flows are added, its position recorded,
// the log trimmed to LogWindow before c.Time and what is past its
// retention deleted. Then the disk budget is enforced.
func (db *DB) Checkpoint(ctx context.Context, c Checkpoint) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if c.Pos > db.lastPos {
		return fmt.Errorf("checkpoint at %d: the log ends at %d", c.Pos, db.lastPos)
	}
	var buckets []string
	for i, r := range c.Edges {
		if i == 0 || r.Bucket != c.Edges[i-1].Bucket {
			buckets = append(buckets, strconv.FormatInt(r.Bucket, 10))
		}
	}
	slices.Sort(buckets)
	buckets = slices.Compact(buckets) // Dirty gives them grouped; this is for any other caller
	res := int64(db.cfg.Resolution)
	lastExpired := floorDiv(c.Time.UnixNano()-1, res) - int64(db.cfg.EdgeRetention)/res

	var replaced, trimmedEvents, trimmedRecords, flowsExpired, edgesExpired int64
	err := db.tx(ctx, func() error {
		var err error
		if len(buckets) > 0 {
			// Integers formatted here: nothing to inject.
			if replaced, err = db.exec(ctx, `DELETE FROM edges WHERE bucket IN (`+strings.Join(buckets, ",")+`)`); err != nil {
				return fmt.Errorf("replace buckets: %w", err)
			}
		}
		if err := db.appendRows("edges", len(c.Edges), func(i int, row []driver.Value) []driver.Value {
			return values(row, edgeColumns, &c.Edges[i])
		}); err != nil {
			return err
		}
		if err := db.appendRows("flows", len(c.Flows), func(i int, row []driver.Value) []driver.Value {
			return values(append(row, c.Pos, uint32(i)), recordColumns, &c.Flows[i])
		}); err != nil {
			return err
		}
		if _, err := db.exec(ctx, `DELETE FROM checkpoint`); err != nil {
			return fmt.Errorf("record position: %w", err)
		}
		if _, err := db.exec(ctx, `INSERT INTO checkpoint VALUES (?, ?)`, c.Pos, c.Time); err != nil {
			return fmt.Errorf("record position: %w", err)
		}
		// The log is cut as a prefix: at the last event before the
		// learning window, never after the checkpoint.
		var cut uint64
		if err := db.w.QueryRowContext(ctx, `SELECT coalesce(max(pos), 0) FROM events WHERE pos <= ? AND time < ?`,
			c.Pos, c.Time.Add(-db.cfg.LogWindow)).Scan(&cut); err != nil {
			return fmt.Errorf("trim log: %w", err)
		}
		if trimmedRecords, err = db.exec(ctx, `DELETE FROM log_records WHERE pos <= ?`, cut); err != nil {
			return fmt.Errorf("trim log: %w", err)
		}
		if trimmedEvents, err = db.exec(ctx, `DELETE FROM events WHERE pos <= ?`, cut); err != nil {
			return fmt.Errorf("trim log: %w", err)
		}
		if flowsExpired, err = db.exec(ctx, `DELETE FROM flows WHERE time < ?`, c.Time.Add(-db.cfg.FlowRetention)); err != nil {
			return fmt.Errorf("expire flows: %w", err)
		}
		if edgesExpired, err = db.exec(ctx, `DELETE FROM edges WHERE bucket <= ?`, lastExpired); err != nil {
			return fmt.Errorf("expire buckets: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint at %d: %w", c.Pos, err)
	}
	st := &db.stats
	st.Checkpoints++
	st.EdgeRows += int64(len(c.Edges)) - replaced - edgesExpired
	st.Flows += int64(len(c.Flows)) - flowsExpired
	st.Events -= trimmedEvents
	st.LogRecords -= trimmedRecords
	st.LogEventsTrimmed += uint64(trimmedEvents)
	st.FlowsExpired += uint64(flowsExpired)
	st.EdgeRowsExpired += uint64(edgesExpired)
	if err := db.enforceBudget(ctx); err != nil {
		return fmt.Errorf("checkpoint at %d: %w", c.Pos, err)
	}
	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// budgetRounds bounds the delete-and-measure rounds of one enforcement.
const budgetRounds = 10

// enforceBudget deletes the oldest flows, then the oldest buckets, once
// the bytes in use pass 80% of the budget, down to 70% of it. Deleted rows
// free DuckDB's blocks only when it checkpoints its WAL into the file, and
// it writes a checkpoint's new blocks before it frees the old: the file,
// which never shrinks, peaks above what is in use, and the margin keeps
// that peak within the budget (85% was not enough once edges carried a
// list of request figures: a nested column writes more new blocks per
// checkpoint). Each round deletes, checkpoints and
// measures again. The log is never cut here: it is what was acknowledged.
// The caller holds db.mu.
func (db *DB) enforceBudget(ctx context.Context) error {
	used, err := db.usedBytes(ctx)
	if err != nil {
		return err
	}
	defer func() { db.stats.UsedBytes = used }()
	if used <= db.cfg.DiskBudget/100*80 {
		return nil
	}
	target := db.cfg.DiskBudget / 100 * 70
	st := &db.stats
	for range budgetRounds {
		// About as many rows as the excess holds at the mean bytes per
		// row; the next round measures what that freed.
		rows := max(1, st.Flows+st.LogRecords+st.EdgeRows+st.Events)
		n := max(1, (used-target)*rows/used)
		switch {
		case st.Flows > 0:
			deleted, err := db.exec(ctx, `DELETE FROM flows WHERE rowid IN (SELECT rowid FROM flows ORDER BY time, pos, idx LIMIT ?)`, min(n, st.Flows))
			if err != nil {
				return fmt.Errorf("delete flows over the budget: %w", err)
			}
			st.Flows -= deleted
			st.FlowsOverBudget += uint64(deleted)
		case st.EdgeRows > 0:
			// Whole buckets, the oldest, holding at least n rows.
			deleted, err := db.exec(ctx, `DELETE FROM edges WHERE bucket <= (SELECT bucket FROM edges ORDER BY bucket LIMIT 1 OFFSET ?)`, min(n, st.EdgeRows)-1)
			if err != nil {
				return fmt.Errorf("delete buckets over the budget: %w", err)
			}
			st.EdgeRows -= deleted
			st.EdgeRowsOverBudget += uint64(deleted)
		default:
			db.log.Warn("history: over the disk budget with only the ingest log left", "used_bytes", used, "budget_bytes", db.cfg.DiskBudget)
			return nil
		}
		if _, err := db.w.ExecContext(ctx, `CHECKPOINT`); err != nil {
			// Another transaction may hold it off; the next round or
			// checkpoint tries again.
			db.log.Debug("history: DuckDB checkpoint deferred", "err", err)
		}
		if used, err = db.usedBytes(ctx); err != nil || used <= target {
			return err
		}
	}
	return nil
}

// Restore loads every retained bucket into store, a fresh one, and returns
// the position of the last checkpoint (0: none): the hub replays the log
// with counting off up to it and on after it.
func (db *DB) Restore(ctx context.Context, store *topology.Store) (pos uint64, err error) {
	sc := store.Config()
	if sc.Resolution != db.cfg.Resolution {
		return 0, fmt.Errorf("restore: the store's buckets are %s, the history's %s", sc.Resolution, db.cfg.Resolution)
	}
	if err := db.sql.QueryRowContext(ctx, `SELECT coalesce(max(pos), 0) FROM checkpoint`).Scan(&pos); err != nil {
		return 0, fmt.Errorf("restore: %w", err)
	}
	rows, err := db.sql.QueryContext(ctx, `SELECT `+prefixed("", edgeColumns)+` FROM edges
		WHERE bucket > (SELECT max(bucket) FROM edges) - ? ORDER BY bucket`, sc.MaxBuckets)
	if err != nil {
		return 0, fmt.Errorf("restore: %w", err)
	}
	defer rows.Close()
	vals := make([]any, len(edgeColumns))
	dest := make([]any, len(vals))
	for i := range vals {
		dest[i] = &vals[i]
	}
	// In chunks, oldest bucket first, as Store.Restore wants them.
	const chunk = 4096
	batch := make([]topology.EdgeRow, 0, chunk)
	dropped, restored := 0, 0
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return 0, fmt.Errorf("restore: %w", err)
		}
		var r topology.EdgeRow
		if err := scanned(&r, edgeColumns, vals); err != nil {
			return 0, fmt.Errorf("restore: %w", err)
		}
		if batch = append(batch, r); len(batch) == chunk {
			dropped += store.Restore(batch)
			restored += len(batch)
			batch = batch[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("restore: %w", err)
	}
	dropped += store.Restore(batch)
	restored += len(batch)
	db.log.Info("history: restored the topology", "edge_rows", restored, "dropped", dropped, "checkpoint_pos", pos)
	return pos, nil
}
