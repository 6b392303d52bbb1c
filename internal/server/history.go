package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/flowlens/flowlens/internal/filter"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/ring"
)

// History is a hub's saved flows: /api/v1/flows?since=… reaches back
// through them, beyond what the ring holds.
type History interface {
	// Flows returns the newest limit saved records in [since, until) that
	// match, oldest first.
	Flows(ctx context.Context, since, until time.Time, match filter.Filter, limit int) ([]flow.Record, error)
	// Saved is the ring position up to which published records are
	// saved: the later ones are still only in the ring.
	Saved() uint64
}

// SetHistory answers time-bounded flow queries from h and the ring's
// records not saved yet; without it they are answered from the ring.
func (s *Server) SetHistory(h History) { s.history = h }

// errAnswered ends a request whose answer (an error) is written.
var errAnswered = errors.New("answered")

// writeHistory writes the matching records of the request's time window:
// those saved, then the ring's newer than the last save, at most ?last of
// the newest (--max-history-records without it). Nothing is written until
// the history answered: a history that cannot be read gets a 500, not an
// empty answer.
func (s *Server) writeHistory(ctx context.Context, st *stream, req request, oldest, end uint64) error {
	saved := s.history.Saved()
	from := max(saved, oldest)
	// Published since the last save and overwritten in the ring before
	// this read: saved by the next checkpoint, not readable now.
	gap := from - min(saved, from)
	var tail []*ring.Entry
	err := s.scanRange(from, end, func(n uint64) error { gap += n; return nil }, func(es []*ring.Entry) error {
		for _, e := range es {
			if st.match(&e.Record) {
				tail = append(tail, e)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	limit := s.limits.MaxHistoryRecords
	if req.last >= 0 {
		limit = req.last
	}
	if len(tail) > limit {
		tail, gap = tail[len(tail)-limit:], 0 // what was lost is older than what is written
	}
	var older []flow.Record
	if n := limit - len(tail); n > 0 {
		if older, err = s.history.Flows(ctx, req.since, req.until, req.match, n); err != nil {
			s.log.Warn("read the flow history", "err", err)
			http.Error(st.w, fmt.Sprintf("read the flow history: %v", err), http.StatusInternalServerError)
			return errAnswered
		}
	}
	st.deadline()
	for i := range older {
		b, err := json.Marshal(&older[i])
		if err != nil {
			return fmt.Errorf("encode flow record: %w", err)
		}
		if _, err := st.w.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("write flows: %w", err)
		}
	}
	if err := st.lost(gap); err != nil {
		return err
	}
	return st.entries(tail)
}
