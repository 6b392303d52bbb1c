package history

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strconv"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// Event is one entry of the ingest log: an agent's batch, or a tick of the
// hub's interval clock.
type Event struct {
	Pos  uint64    // assigned by the hub, strictly increasing
	Time time.Time // when the hub received it (ticks: the tick's time)
	Tick bool      // a tick of the hub's interval clock, or else an agent's batch:

	Agent            string
	Incarnation, Seq uint64
	Records          []flow.Record
}

// HighWater is the (incarnation, seq) of an agent's last appended batch.
type HighWater struct{ Incarnation, Seq uint64 }

// Append writes events to the log in one transaction, with the high-water
// mark of every agent among them (its last batch's). When it returns nil
// the events are durable: the hub may acknowledge them.
//
// A call costs a few milliseconds whatever it holds (DuckDB's commit, and
// flushing into tables of ~80 columns), then ~30 µs a record: the hub
// should append what arrived over the last tens of milliseconds at once
// (a group commit) and acknowledge those batches after, not call it per
// batch.
func (db *DB) Append(ctx context.Context, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	last := db.lastPos
	hw := map[string]HighWater{}
	var records int
	for i := range evs {
		e := &evs[i]
		if e.Pos <= last {
			return fmt.Errorf("append event at %d: not after %d", e.Pos, last)
		}
		last = e.Pos
		if !e.Tick {
			hw[e.Agent] = HighWater{e.Incarnation, e.Seq}
		}
		records += len(e.Records)
	}
	err := db.tx(ctx, func() error {
		if err := db.appendRows("events", len(evs), func(i int, row []driver.Value) []driver.Value {
			e := &evs[i]
			return append(row, e.Pos, e.Time, e.Tick, e.Agent, e.Incarnation, e.Seq, uint32(len(e.Records)))
		}); err != nil {
			return err
		}
		ev, idx := 0, 0 // the event and record the next row is
		if err := db.appendRows("log_records", records, func(_ int, row []driver.Value) []driver.Value {
			for idx == len(evs[ev].Records) {
				ev, idx = ev+1, 0
			}
			row = append(row, evs[ev].Pos, uint32(idx))
			row = values(row, recordColumns, &evs[ev].Records[idx])
			idx++
			return row
		}); err != nil {
			return err
		}
		for agent, h := range hw {
			if _, err := db.exec(ctx, `DELETE FROM high_waters WHERE agent = ?`, agent); err != nil {
				return fmt.Errorf("high water of %s: %w", agent, err)
			}
			// database/sql takes no uint64 past 1<<63, and incarnations
			// are random: they travel as text, cast by DuckDB.
			if _, err := db.exec(ctx, `INSERT INTO high_waters VALUES (?, CAST(? AS UBIGINT), CAST(? AS UBIGINT))`,
				agent, strconv.FormatUint(h.Incarnation, 10), strconv.FormatUint(h.Seq, 10)); err != nil {
				return fmt.Errorf("high water of %s: %w", agent, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d events: %w", len(evs), err)
	}
	db.lastPos = last
	db.stats.Events += int64(len(evs))
	db.stats.LogRecords += int64(records)
	db.stats.EventsAppended += uint64(len(evs))
	db.stats.RecordsAppended += uint64(records)
	return nil
}

// HighWaters returns every agent's high-water mark as committed.
func (db *DB) HighWaters(ctx context.Context) (map[string]HighWater, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT agent, incarnation, seq FROM high_waters`)
	if err != nil {
		return nil, fmt.Errorf("read high waters: %w", err)
	}
	defer rows.Close()
	out := map[string]HighWater{}
	for rows.Next() {
		var agent string
		var h HighWater
		if err := rows.Scan(&agent, &h.Incarnation, &h.Seq); err != nil {
			return nil, fmt.Errorf("read high waters: %w", err)
		}
		out[agent] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read high waters: %w", err)
	}
	return out, nil
}

// Replay calls fn with every event of the log after position from, in
// order, each with its records. The log holds the learning window before
// the last checkpoint and everything appended since: Replay(ctx, 0, fn)
// replays all of it. Call it before appending again.
func (db *DB) Replay(ctx context.Context, from uint64, fn func(Event) error) error {
	rows, err := db.sql.QueryContext(ctx, `SELECT e.pos, e.time, e.tick, e.agent, e.incarnation, e.seq, r.idx, `+
		prefixed("r.", recordColumns)+` FROM events e LEFT JOIN log_records r ON r.pos = e.pos
		WHERE e.pos > ? ORDER BY e.pos, r.idx`, from)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer rows.Close()
	vals := make([]any, 7+len(recordColumns))
	dest := make([]any, len(vals))
	for i := range vals {
		dest[i] = &vals[i]
	}
	var e Event
	have := false
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		pos, _ := vals[0].(uint64)
		if !have || pos != e.Pos {
			if have {
				if err := fn(e); err != nil {
					return err
				}
			}
			t, _ := vals[1].(time.Time)
			tick, _ := vals[2].(bool)
			agent, _ := vals[3].(string)
			inc, _ := vals[4].(uint64)
			seq, _ := vals[5].(uint64)
			e, have = Event{Pos: pos, Time: t.UTC(), Tick: tick, Agent: agent, Incarnation: inc, Seq: seq}, true
		}
		if vals[6] == nil {
			continue // an event without records
		}
		var r flow.Record
		if err := scanned(&r, recordColumns, vals[7:]); err != nil {
			return fmt.Errorf("replay event %d: %w", e.Pos, err)
		}
		e.Records = append(e.Records, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if have {
		return fn(e)
	}
	return nil
}
