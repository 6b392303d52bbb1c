package server

import (
	"context"
	"encoding/json"
	"fmt"
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

// writeHistory writes the matching records of the request's time window:
// those saved, then the ring's newer than the last save. Without ?last it
// writes at most the ring's capacity, the newest: ask with ?last for more
// or fewer.
func (s *Server) writeHistory(ctx context.Context, st *stream, req request, oldest, end uint64) error {
	saved := s.history.Saved()
	from := max(saved, oldest)
	// Published since the last save and already overwritten in the ring:
	// saved by the next checkpoint, but not readable now.
	if err := st.lost(from - min(saved, from)); err != nil {
		return err
	}
	var tail []*ring.Entry
	err := s.scanRange(st, from, end, func(es []*ring.Entry) error {
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
	limit := s.ring.Cap()
	if req.last >= 0 {
		limit = req.last
	}
	if len(tail) > limit {
		tail = tail[len(tail)-limit:]
	}
	if n := limit - len(tail); n > 0 {
		recs, err := s.history.Flows(ctx, req.since, req.until, req.match, n)
		if err != nil {
			return fmt.Errorf("read the flow history: %w", err)
		}
		st.deadline()
		for i := range recs {
			b, err := json.Marshal(&recs[i])
			if err != nil {
				return fmt.Errorf("encode flow record: %w", err)
			}
			if _, err := st.w.Write(append(b, '\n')); err != nil {
				return fmt.Errorf("write flows: %w", err)
			}
		}
	}
	return st.entries(tail)
}
