package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowlens/flowlens/internal/filter"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/ring"
)

// Lost is the line a reader of /api/v1/flows gets where records it should
// have seen are missing, as Hubble's LostEvent: never a silent gap.
//
//	{"lost_records":{"count":1536,"reason":"reader_behind_ring","time":"…"}}
type Lost struct {
	LostRecords *LostRecords `json:"lost_records"`
}

// LostRecords says how many ring records a reader lost, why and when it
// noticed. Count is of records written to the ring, matching the request's
// filters or not: which of them would have matched is unknown.
type LostRecords struct {
	Count  uint64    `json:"count"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// ReasonBehindRing: the reader fell more than the ring's capacity behind
// the writer, which overwrote the records before they were sent.
const ReasonBehindRing = "reader_behind_ring"

// chunk is how many ring entries a request reads under the ring's lock at a
// time: a request holds at most one chunk beyond its ?last window.
const chunk = 1024

// request is a parsed /api/v1/flows query.
type request struct {
	match  filter.Filter // the filters and the time window
	last   int           // -1: every record held
	follow bool
	// since and until bound the records' end times (until excluded); a
	// hub with a history answers them from it, beyond what its ring holds.
	since, until time.Time
}

// rejection is a request refused before anything is written.
type rejection struct {
	reason rejectReason
	status int
	msg    string
}

func (r *rejection) Error() string { return r.msg }

func badRequest(reason rejectReason, format string, args ...any) *rejection {
	return &rejection{reason, http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// queryParams are the query parameters /api/v1/flows knows.
var queryParams = func() []string {
	out := []string{"last", "follow", "since", "until"}
	for _, p := range filter.Params {
		out = append(out, p.Name)
	}
	return out
}()

// parseRequest reads a query: an unknown parameter (a misspelt filter would
// otherwise select everything) or too many filter values is refused before
// any filter is parsed.
func parseRequest(q url.Values, limits Limits, ringCap int, now time.Time) (request, *rejection) {
	for k := range q {
		if !slices.Contains(queryParams, k) {
			return request{}, badRequest(rejectUnknownParameter, "unknown query parameter %q; known: %s", k, strings.Join(queryParams, ", "))
		}
	}
	values := 0
	for _, p := range filter.Params {
		for _, v := range q[p.Name] {
			values += strings.Count(v, ",") + 1
		}
	}
	if values > limits.MaxFilterValues {
		return request{}, badRequest(rejectTooManyFilterValues, "%d filter values in one request, at most %d are served", values, limits.MaxFilterValues)
	}
	match, err := filter.Parse(q)
	if err != nil {
		return request{}, badRequest(rejectInvalidParameter, "%v", err)
	}
	req := request{match: match, last: -1}
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"since", &req.since}, {"until", &req.until}} {
		if v := q.Get(b.name); v != "" {
			if *b.t, err = parseTime(v, now); err != nil {
				return request{}, badRequest(rejectInvalidParameter, "%s=%q: %v", b.name, v, err)
			}
		}
	}
	windowed := !req.since.IsZero() || !req.until.IsZero()
	switch v := q.Get("follow"); v {
	case "", "0", "false":
	case "1", "true":
		req.follow = true
		if !windowed {
			req.last = 0 // from now on; with since, from then on
		}
	default:
		return request{}, badRequest(rejectInvalidParameter, "follow=%q: want 1, true, 0 or false", v)
	}
	if v := q.Get("last"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return request{}, badRequest(rejectInvalidParameter, "last=%q: want a non-negative integer", v)
		}
		// The ring holds no more; a window is read from the history too.
		req.last = min(n, ringCap)
		if windowed {
			req.last = min(n, limits.MaxHistoryRecords)
		}
	}
	switch {
	case !req.since.IsZero() && !req.until.IsZero() && !req.since.Before(req.until):
		return request{}, badRequest(rejectInvalidParameter, "since %s is not before until %s", req.since.Format(time.RFC3339), req.until.Format(time.RFC3339))
	case req.follow && !req.until.IsZero():
		return request{}, badRequest(rejectInvalidParameter, "until with follow: a followed stream has no end")
	}
	if !req.since.IsZero() || !req.until.IsZero() {
		match, since, until := req.match, req.since, req.until
		req.match = func(r *flow.Record) bool {
			return (since.IsZero() || !r.Time.Before(since)) && (until.IsZero() || r.Time.Before(until)) && match(r)
		}
	}
	return req, nil
}

// parseTime reads a point in time as the API takes it: RFC 3339, or a
// duration meaning that long before now ("10m", as in observe --since 10m).
func parseTime(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, errors.New("want a positive duration (that long ago) or an RFC 3339 time")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, errors.New("want an RFC 3339 time or a duration (that long ago)")
	}
	return t, nil
}

// flows writes matching records as JSON lines, oldest first: the last N
// (?last=N; all the ring holds by default), then, with ?follow=1, every new
// one until the client goes away. What is held is what the ring held when
// the request came, read in one snapshot of its bounds: a writer faster
// than the client cannot keep it reading, and following picks up exactly
// there. Records the writer overwrote before they were sent are announced
// by a lost_records line where they would have been.
func (s *Server) flows(w http.ResponseWriter, r *http.Request) {
	req, rej := parseRequest(r.URL.Query(), s.limits, s.ring.Cap(), time.Now())
	if rej == nil && req.follow {
		if s.stats.followers.Add(1) > int64(s.limits.MaxFollowers) {
			rej = &rejection{rejectTooManyFollowers, http.StatusTooManyRequests,
				fmt.Sprintf("%d follow streams are open, the most this agent serves (--max-followers)", s.limits.MaxFollowers)}
		}
		defer s.stats.followers.Add(-1)
	}
	if rej != nil {
		s.stats.reject(rej.reason)
		http.Error(w, rej.msg, rej.status)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	st := &stream{ring: s.ring, w: w, rc: http.NewResponseController(w), timeout: s.limits.WriteTimeout, match: req.match, stats: &s.stats}
	oldest, end := s.ring.Bounds()
	var err error
	switch {
	case s.history != nil && (!req.since.IsZero() || !req.until.IsZero()):
		err = s.writeHistory(r.Context(), st, req, oldest, end)
	case req.last < 0:
		err = s.writeRange(st, oldest, end)
	default:
		err = s.writeLast(st, oldest, end, req.last)
	}
	if err == nil && req.follow {
		err = s.follow(st, r, end)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.stats.slowDropped.Add(1)
		s.log.Debug("dropped a flows client that took no write in time", "remote", r.RemoteAddr, "timeout", s.limits.WriteTimeout)
	}
}

// readRange reads at most a chunk of [from, end): the entries still held,
// and how many of the range were overwritten (the oldest of it).
func (s *Server) readRange(from, end uint64, buf []*ring.Entry) ([]*ring.Entry, uint64) {
	es, lost := s.ring.Read(from, int(min(chunk, end-from)), buf)
	lost = min(lost, end-from)
	// Entries start at from+lost: what lies past end is not this read's.
	n := min(uint64(len(es)), end-from-lost)
	clear(es[n:])
	return es[:n], lost
}

// writeRange writes the matching records of [from, end), chunk by chunk.
func (s *Server) writeRange(st *stream, from, end uint64) error {
	return s.scanRange(from, end, st.lost, st.entries)
}

// scanRange hands each chunk of [from, end) to fn, and to lost how many
// records the ring overwrote before they were read, where they were.
func (s *Server) scanRange(from, end uint64, lost func(uint64) error, fn func([]*ring.Entry) error) error {
	buf := make([]*ring.Entry, 0, chunk)
	for from < end {
		es, gone := s.readRange(from, end, buf[:0])
		if err := lost(gone); err != nil {
			return err
		}
		from += gone + uint64(len(es))
		if err := fn(es); err != nil {
			return err
		}
		clear(es) // hold no overwritten records
	}
	return nil
}

// writeLast writes the last n matching records of [oldest, end), scanning
// back from end chunk by chunk, so `--last 20` reads about 20 records, not
// the ring.
func (s *Server) writeLast(st *stream, oldest, end uint64, n int) error {
	var window []*ring.Entry // newest first
	buf := make([]*ring.Entry, 0, chunk)
	var lost uint64
	for hi := end; hi > oldest && len(window) < n; {
		lo := hi - min(chunk, hi-oldest)
		es, l := s.readRange(lo, hi, buf[:0])
		for i := len(es) - 1; i >= 0 && len(window) < n; i-- {
			if st.match(&es[i].Record) {
				window = append(window, es[i])
			}
		}
		clear(es)
		if l > 0 {
			// Overwritten since the snapshot: nothing older is left.
			lost = lo + l - oldest
			break
		}
		hi = lo
	}
	if len(window) == n {
		lost = 0 // what was overwritten was older than the last n
	}
	if err := st.lost(lost); err != nil {
		return err
	}
	slices.Reverse(window)
	return st.entries(window)
}

// follow writes every matching record from next on as it comes, until the
// client goes away or does not take a write in time.
func (s *Server) follow(st *stream, r *http.Request, next uint64) error {
	if err := st.flush(); err != nil {
		return err
	}
	buf := make([]*ring.Entry, 0, chunk)
	for {
		wake := s.ring.Wait()
		es, lost := s.ring.Read(next, chunk, buf[:0])
		next += lost + uint64(len(es))
		if err := st.lost(lost); err != nil {
			return err
		}
		if err := st.entries(es); err != nil {
			return err
		}
		full := len(es) == chunk
		clear(es)
		if full {
			continue // more is waiting
		}
		if err := st.flush(); err != nil {
			return err
		}
		select {
		case <-wake:
		case <-r.Context().Done():
			return nil
		}
	}
}

// stream writes JSON lines to one client, each batch under a write deadline
// so a client that stops reading cannot hold the request forever.
type stream struct {
	ring    *ring.Ring
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	match   filter.Filter
	stats   *stats
}

func (st *stream) deadline() {
	// Not every ResponseWriter supports deadlines (tests' recorders); the
	// server's do.
	_ = st.rc.SetWriteDeadline(time.Now().Add(st.timeout))
}

func (st *stream) entries(es []*ring.Entry) error {
	st.deadline()
	for _, e := range es {
		if !st.match(&e.Record) {
			continue
		}
		b, err := st.ring.JSON(e)
		if err != nil {
			return err
		}
		if _, err := st.w.Write(b); err != nil {
			return fmt.Errorf("write flows: %w", err)
		}
	}
	return nil
}

func (st *stream) lost(n uint64) error {
	if n == 0 {
		return nil
	}
	st.stats.lost.Add(n)
	b, err := json.Marshal(Lost{&LostRecords{Count: n, Reason: ReasonBehindRing, Time: time.Now().UTC()}})
	if err != nil {
		return fmt.Errorf("encode lost records: %w", err)
	}
	st.deadline()
	if _, err := st.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write flows: %w", err)
	}
	return nil
}

func (st *stream) flush() error {
	st.deadline()
	if err := st.rc.Flush(); err != nil {
		return fmt.Errorf("flush flows: %w", err)
	}
	return nil
}
