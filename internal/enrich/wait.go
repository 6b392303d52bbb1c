package enrich

import "github.com/flowlens/flowlens/internal/flow"

// Waiter names records like its Enricher, and holds back for a few
// intervals those that came early: their cgroup names a pod the watch has
// not delivered yet. A pod often connects within milliseconds of starting,
// and on a busy API server its watch event can trail by more than the
// interval that separates a connection from its record. Identity is
// time-aware, so a record named late is named as things were when its
// connection began. Not safe for concurrent use.
type Waiter struct {
	Names Enricher
	// MaxWait is how many intervals an early record waits; past it, it
	// goes out named by address alone and is counted. Default 3.
	MaxWait int
	// MaxHeld bounds the records waiting; past it, records go out at once
	// and are counted. Default 65536.
	MaxHeld int

	held  []early
	stats WaitStats
}

// WaitStats counts what waited and how it ended.
type WaitStats struct {
	Held      int    // waiting now
	NamedLate uint64 // named after waiting
	Unnamed   uint64 // waited MaxWait intervals for a pod that never came
	Overflow  uint64 // not held: MaxHeld records were waiting
}

type early struct {
	rec  flow.Record
	left int // intervals it may still wait
}

// Stats reports counters and the records waiting.
func (w *Waiter) Stats() WaitStats {
	s := w.stats
	s.Held = len(w.held)
	return s
}

// Records takes one interval's records and returns those ready: earlier
// ones named now or done waiting, then this interval's that are not early.
func (w *Waiter) Records(recs []flow.Record) []flow.Record {
	maxWait, maxHeld := w.MaxWait, w.MaxHeld
	if maxWait <= 0 {
		maxWait = 3
	}
	if maxHeld <= 0 {
		maxHeld = 1 << 16
	}
	out := make([]flow.Record, 0, len(recs)+len(w.held))
	waiting := w.held[:0]
	for _, e := range w.held {
		switch {
		case !w.Names.Record(&e.rec):
			w.stats.NamedLate++
			out = append(out, e.rec)
		case e.left <= 1:
			w.stats.Unnamed++
			out = append(out, e.rec)
		default:
			e.left--
			waiting = append(waiting, e)
		}
	}
	clear(w.held[len(waiting):])
	w.held = waiting
	for _, r := range recs {
		if !w.Names.Record(&r) {
			out = append(out, r)
			continue
		}
		if len(w.held) >= maxHeld {
			w.stats.Overflow++
			out = append(out, r)
			continue
		}
		w.held = append(w.held, early{rec: r, left: maxWait})
	}
	return out
}
