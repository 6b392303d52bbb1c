package history

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// FileName is the database's file in Config.Dir; DuckDB keeps its
// write-ahead log beside it (FileName + ".wal").
const FileName = "history.duckdb"

// schemaVersion changes whenever a table's columns do: a database of
// another version is refused, not misread.
const schemaVersion = 4

// DB is the hub's history. Its methods are safe for concurrent use;
// writes (Append, Checkpoint) are serialised on one connection, reads
// use others and see the last committed state.
type DB struct {
	cfg  Config
	log  *slog.Logger
	path string
	sql  *sql.DB
	w    *sql.Conn // the one writing connection
	// appenders of the writing connection, by table; made on first use.
	appenders map[string]*duckdb.Appender

	mu      sync.Mutex // serialises writes; guards what follows
	lastPos uint64     // of the last event appended, or the checkpoint's
	stats   Stats
}

// Stats counts what the history holds and did.
type Stats struct {
	DiskBytes int64 // the database file and its WAL now
	// UsedBytes is what the budget bounds: DuckDB's blocks in use plus
	// the WAL, as of the last checkpoint. The file itself does not
	// shrink: freed blocks are reused.
	UsedBytes int64

	Events, LogRecords, Flows, EdgeRows int64 // rows held now

	EventsAppended, RecordsAppended uint64
	Checkpoints                     uint64
	LogEventsTrimmed                uint64 // log events past the learning window, deleted
	FlowsExpired, EdgeRowsExpired   uint64 // deleted past their retention
	// Deleted early, before their retention, to keep within the budget.
	FlowsOverBudget, EdgeRowsOverBudget uint64
}

// Open opens (or creates) the history in cfg.Dir. Only one process may
// have a directory open: a second one gets DuckDB's lock error.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	path := filepath.Join(cfg.Dir, FileName)
	connector, err := duckdb.NewConnector(fmt.Sprintf("%s?memory_limit=%dMB", path, cfg.MemoryLimitMiB), nil)
	if err != nil {
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	db := &DB{cfg: cfg, log: log, path: path, sql: sql.OpenDB(connector), appenders: map[string]*duckdb.Appender{}}
	if err := db.open(ctx); err != nil {
		db.sql.Close()
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	return db, nil
}

func (db *DB) open(ctx context.Context) error {
	w, err := db.sql.Conn(ctx)
	if err != nil {
		return err
	}
	db.w = w
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS meta (schema_version INTEGER NOT NULL, resolution_ns BIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS events (pos UBIGINT NOT NULL, time TIMESTAMP_NS NOT NULL, tick BOOLEAN NOT NULL,
			agent VARCHAR NOT NULL, incarnation UBIGINT NOT NULL, seq UBIGINT NOT NULL, records UINTEGER NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS log_records (` + ddl("pos UBIGINT NOT NULL, idx UINTEGER NOT NULL", recordColumns) + `)`,
		`CREATE TABLE IF NOT EXISTS high_waters (agent VARCHAR NOT NULL, incarnation UBIGINT NOT NULL, seq UBIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS checkpoint (pos UBIGINT NOT NULL, time TIMESTAMP_NS NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS edges (` + ddl("", edgeColumns) + `)`,
		`CREATE TABLE IF NOT EXISTS flows (` + ddl("pos UBIGINT NOT NULL, idx UINTEGER NOT NULL", recordColumns) + `)`,
	} {
		if _, err := w.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
	}
	var version int
	var resolution int64
	switch err := w.QueryRowContext(ctx, `SELECT schema_version, resolution_ns FROM meta`).Scan(&version, &resolution); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := w.ExecContext(ctx, `INSERT INTO meta VALUES (?, ?)`, schemaVersion, int64(db.cfg.Resolution)); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read schema version: %w", err)
	case version != schemaVersion:
		return fmt.Errorf("schema version %d, this flowlens reads %d: move the directory away to start afresh", version, schemaVersion)
	case time.Duration(resolution) != db.cfg.Resolution:
		return fmt.Errorf("buckets of %s, the topology's are %s", time.Duration(resolution), db.cfg.Resolution)
	}
	err = w.QueryRowContext(ctx, `SELECT greatest((SELECT coalesce(max(pos), 0) FROM events), (SELECT coalesce(max(pos), 0) FROM checkpoint)),
		(SELECT count(*) FROM events), (SELECT count(*) FROM log_records), (SELECT count(*) FROM flows), (SELECT count(*) FROM edges)`).
		Scan(&db.lastPos, &db.stats.Events, &db.stats.LogRecords, &db.stats.Flows, &db.stats.EdgeRows)
	if err != nil {
		return fmt.Errorf("read positions: %w", err)
	}
	db.stats.UsedBytes, err = db.usedBytes(ctx)
	return err
}

// Close closes the database; DuckDB checkpoints its WAL into the file.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	var errs []error
	for table, a := range db.appenders {
		if err := a.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close appender of %s: %w", table, err))
		}
	}
	return errors.Join(append(errs, db.w.Close(), db.sql.Close())...)
}

// Stats reports what the history holds and did.
func (db *DB) Stats() Stats {
	db.mu.Lock()
	st := db.stats
	db.mu.Unlock()
	for _, p := range []string{db.path, db.path + ".wal"} {
		if fi, err := os.Stat(p); err == nil {
			st.DiskBytes += fi.Size()
		}
	}
	return st
}

// usedBytes is DuckDB's blocks in use plus its WAL.
func (db *DB) usedBytes(ctx context.Context) (int64, error) {
	var used, blockSize int64
	if err := db.w.QueryRowContext(ctx, `SELECT used_blocks, block_size FROM pragma_database_size()`).Scan(&used, &blockSize); err != nil {
		return 0, fmt.Errorf("database size: %w", err)
	}
	n := used * blockSize
	if fi, err := os.Stat(db.path + ".wal"); err == nil {
		n += fi.Size()
	}
	return n, nil
}

// tx runs fn in one transaction of the writing connection. The caller
// holds db.mu.
func (db *DB) tx(ctx context.Context, fn func() error) error {
	if _, err := db.w.ExecContext(ctx, `BEGIN TRANSACTION`); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	err := fn()
	if err == nil {
		if _, err = db.w.ExecContext(ctx, `COMMIT`); err == nil {
			return nil
		}
		err = fmt.Errorf("commit: %w", err)
	}
	// A failed commit has ended the transaction already; this is then a
	// harmless error.
	_, _ = db.w.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
	return err
}

// appendRows appends n rows to table through DuckDB's appender, in the
// writing connection's transaction. row fills the i-th row into buf. The
// appenders live as long as the connection: making one costs milliseconds
// (a chunk of vectors for every column), more than a small batch's rows.
// The caller holds db.mu.
func (db *DB) appendRows(table string, n int, row func(i int, buf []driver.Value) []driver.Value) error {
	if n == 0 {
		return nil
	}
	return db.w.Raw(func(dc any) error {
		a := db.appenders[table]
		if a == nil {
			conn, ok := dc.(driver.Conn)
			if !ok {
				return fmt.Errorf("append to %s: driver connection %T", table, dc)
			}
			var err error
			if a, err = duckdb.NewAppenderFromConn(conn, "", table); err != nil {
				return fmt.Errorf("append to %s: %w", table, err)
			}
			db.appenders[table] = a
		}
		var buf []driver.Value
		for i := range n {
			buf = row(i, buf[:0])
			if err := a.AppendRow(buf...); err != nil {
				// Drop what this call appended: the transaction rolls back.
				return errors.Join(fmt.Errorf("append to %s: %w", table, err), a.Clear())
			}
		}
		// Into the transaction: the commit makes it durable.
		if err := a.Flush(); err != nil {
			return errors.Join(fmt.Errorf("append to %s: %w", table, err), a.Clear())
		}
		return nil
	})
}

// exec runs a statement on the writing connection and returns the rows
// it affected.
func (db *DB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := db.w.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
