package history

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// FlowQuery selects flow records from the history.
type FlowQuery struct {
	Since, Until time.Time               // records with Since <= time < Until; a zero bound is open
	Match        func(*flow.Record) bool // when set, only records it accepts
	// Limit, when positive, keeps the newest Limit matching records. The
	// caller bounds it: without it every matching record is returned.
	Limit int
}

// Flows returns the checkpointed flow records q selects, oldest first
// (by time, then as published).
func (db *DB) Flows(ctx context.Context, q FlowQuery) ([]flow.Record, error) {
	var where []string
	var args []any
	if !q.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, q.Since)
	}
	if !q.Until.IsZero() {
		where, args = append(where, "time < ?"), append(args, q.Until)
	}
	stmt := `SELECT ` + prefixed("", recordColumns) + ` FROM flows`
	if len(where) > 0 {
		stmt += ` WHERE ` + strings.Join(where, " AND ")
	}
	// With a limit, read newest first and stop at it.
	order := ` ORDER BY time, pos, idx`
	if q.Limit > 0 {
		order = ` ORDER BY time DESC, pos DESC, idx DESC`
	}
	rows, err := db.sql.QueryContext(ctx, stmt+order, args...)
	if err != nil {
		return nil, fmt.Errorf("query flows: %w", err)
	}
	defer rows.Close()
	vals := make([]any, len(recordColumns))
	dest := make([]any, len(vals))
	for i := range vals {
		dest[i] = &vals[i]
	}
	var out []flow.Record
	for rows.Next() && (q.Limit <= 0 || len(out) < q.Limit) {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("query flows: %w", err)
		}
		var r flow.Record
		if err := scanned(&r, recordColumns, vals); err != nil {
			return nil, fmt.Errorf("query flows: %w", err)
		}
		if q.Match == nil || q.Match(&r) {
			out = append(out, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query flows: %w", err)
	}
	if q.Limit > 0 {
		slices.Reverse(out)
	}
	return out, nil
}
