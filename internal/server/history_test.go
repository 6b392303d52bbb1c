package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/filter"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/ring"
)

// fakeHistory is a hub's saved flows: the first saved records published,
// up to ring position saved, as a checkpoint leaves them.
type fakeHistory struct {
	flows []flow.Record
	saved uint64
	asked []int // the limits Flows was asked with
}

func (f *fakeHistory) Flows(_ context.Context, since, until time.Time, match filter.Filter, limit int) ([]flow.Record, error) {
	f.asked = append(f.asked, limit)
	var out []flow.Record
	for i := range f.flows {
		r := &f.flows[i]
		if (since.IsZero() || !r.Time.Before(since)) && (until.IsZero() || r.Time.Before(until)) && match(r) {
			out = append(out, *r)
		}
	}
	return out[max(0, len(out)-limit):], nil
}

func (f *fakeHistory) Saved() uint64 { return f.saved }

var t0 = time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)

// published is n records as a hub publishes them, one a second from t0:
// port 1000+i, ending at t0+i s, every third one UDP.
func published(n int) []flow.Record {
	recs := make([]flow.Record, n)
	for i := range recs {
		p := flow.TCP
		if i%3 == 2 {
			p = flow.UDP
		}
		recs[i] = record(uint16(1000+i), p)
		recs[i].Time = t0.Add(time.Duration(i) * time.Second)
	}
	return recs
}

// hubTest is a server over a ring of capacity that holds what a hub
// published, of which the first saved are in its history; a time-bounded
// read returns at most maxHistory records.
func hubTest(t *testing.T, capacity, n, saved, maxHistory int) (*fakeHistory, *Server, *httptest.Server) {
	t.Helper()
	r := ring.New(capacity)
	recs := published(n)
	r.Write(recs)
	h := &fakeHistory{flows: recs[:saved], saved: uint64(saved)}
	limits := testLimits
	limits.MaxHistoryRecords = maxHistory
	s := newServer(r, limits)
	s.SetHistory(h)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return h, s, ts
}

func at(s int) string {
	return url.QueryEscape(t0.Add(time.Duration(s) * time.Second).Format(time.RFC3339Nano))
}

// A time-bounded query is answered from the saved records, then the ring's
// records not saved yet: every record of the window once, none missing,
// oldest first; ?last counts across both.
func TestFlowsSinceFromHistoryAndRing(t *testing.T) {
	for _, c := range []struct {
		query string
		want  string
		asked string // the limits the history was asked with
	}{
		{"since=" + at(0), "[1000 1001 1002 1003 1004 1005 1006 1007 1008 1009]", "[96]"},
		{"since=" + at(3) + "&until=" + at(8), "[1003 1004 1005 1006 1007]", "[98]"},
		{"until=" + at(5), "[1000 1001 1002 1003 1004]", "[100]"},
		{"since=" + at(0) + "&last=3", "[1007 1008 1009]", "[]"}, // the ring's tail holds them all
		{"since=" + at(0) + "&last=6", "[1004 1005 1006 1007 1008 1009]", "[2]"},
		{"since=" + at(0) + "&last=6&protocol=udp", "[1002 1005 1008]", "[5]"},
		{"since=" + at(0) + "&last=0", "[]", "[]"},
		{"since=" + at(10), "[]", "[100]"},
	} {
		t.Run(c.query, func(t *testing.T) {
			// 10 published, 6 of them saved: 1006–1009 only in the ring.
			h, _, ts := hubTest(t, 100, 10, 6, 100)
			got, lost := get(t, ts.URL+"/api/v1/flows?"+c.query)
			if fmt.Sprint(ports(got)) != c.want || lost != 0 {
				t.Errorf("%v lost %d, want %s lost 0", ports(got), lost, c.want)
			}
			if fmt.Sprint(h.asked) != c.asked {
				t.Errorf("history asked for %v records, want %s", h.asked, c.asked)
			}
		})
	}
}

// Records published after the last save and already overwritten in the
// ring are in neither: the reader is told how many, never a silent gap.
func TestFlowsSinceTellsWhatNeitherHolds(t *testing.T) {
	// 10 published, 3 saved, the ring holds the last 6: 1003 is in
	// neither until the next checkpoint.
	_, s, ts := hubTest(t, 6, 10, 3, 100)
	got, lost := get(t, ts.URL+"/api/v1/flows?since="+at(0)+"&until="+at(7))
	if want := "[1000 1001 1002 1004 1005 1006]"; fmt.Sprint(ports(got)) != want || lost != 1 {
		t.Errorf("%v lost %d, want %s lost 1", ports(got), lost, want)
	}
	if n := s.Stats().LostRecords; n != 1 {
		t.Errorf("flowlens_api_lost_records_total %d, want 1", n)
	}
	// Where they were: after the saved records, before the ring's.
	resp, err := http.Get(ts.URL + "/api/v1/flows?since=" + at(0) + "&until=" + at(7))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 7 || !strings.Contains(lines[3], `"lost_records"`) {
		t.Errorf("the lost_records line is not between the saved records and the ring's:\n%s", b)
	}
}

// Without ?last a time-bounded query writes at most --max-history-records,
// the newest; ?last reaches past the ring's capacity into the history, up
// to that bound.
func TestFlowsSinceBoundedByMaxHistoryRecords(t *testing.T) {
	h, _, ts := hubTest(t, 4, 10, 8, 4)
	got, lost := get(t, ts.URL+"/api/v1/flows?since="+at(0))
	if want := "[1006 1007 1008 1009]"; fmt.Sprint(ports(got)) != want || lost != 0 {
		t.Errorf("%v lost %d, want %s", ports(got), lost, want)
	}
	if fmt.Sprint(h.asked) != "[2]" {
		t.Errorf("history asked for %v records, want [2]", h.asked)
	}
	h, _, ts = hubTest(t, 4, 10, 8, 100)
	got, _ = get(t, ts.URL+"/api/v1/flows?since="+at(0)+"&last=7")
	if want := "[1003 1004 1005 1006 1007 1008 1009]"; fmt.Sprint(ports(got)) != want {
		t.Errorf("last=7 over a ring of 4: %v, want %s", ports(got), want)
	}
}

// A history that cannot be read gets the client a 500 naming why, not an
// empty answer that reads as "nothing happened".
func TestFlowsSinceHistoryFailureIsAnError(t *testing.T) {
	r := ring.New(10)
	s := newServer(r, testLimits)
	s.SetHistory(failingHistory{})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/v1/flows?since=1h")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(b), "disk on fire") {
		t.Errorf("%s %q, want 500 naming the history's error", resp.Status, b)
	}
}

type failingHistory struct{}

func (failingHistory) Flows(context.Context, time.Time, time.Time, filter.Filter, int) ([]flow.Record, error) {
	return nil, errors.New("disk on fire")
}
func (failingHistory) Saved() uint64 { return 0 }

// ?since with ?follow starts from the history, then follows.
func TestFlowsSinceThenFollow(t *testing.T) {
	_, _, ts := hubTest(t, 100, 10, 6, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/api/v1/flows?follow=1&since="+at(7), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var got []flow.Record
	for len(got) < 3 && sc.Scan() {
		got = append(got, decode(t, sc.Bytes()).Record)
	}
	if fmt.Sprint(ports(got)) != "[1007 1008 1009]" {
		t.Errorf("since then follow: %v, want [1007 1008 1009] first", ports(got))
	}
}

// Without a history (an agent, `up`, a hub without --data-dir) since and
// until bound what the ring holds.
func TestFlowsSinceFromRingAlone(t *testing.T) {
	r, _, ts := newTest(t, 100, testLimits)
	r.Write(published(10))
	for q, want := range map[string]string{
		"since=" + at(7):                     "[1007 1008 1009]",
		"until=" + at(2):                     "[1000 1001]",
		"since=" + at(2) + "&until=" + at(4): "[1002 1003]",
		"since=" + at(2) + "&last=2":         "[1008 1009]",
		"since=" + at(20):                    "[]",
	} {
		got, lost := get(t, ts.URL+"/api/v1/flows?"+q)
		if fmt.Sprint(ports(got)) != want || lost != 0 {
			t.Errorf("%s: %v lost %d, want %s", q, ports(got), lost, want)
		}
	}
}

// A duration means that long before now; an RFC 3339 time is taken as it is.
func TestFlowsSinceDuration(t *testing.T) {
	r, _, ts := newTest(t, 100, testLimits)
	now := time.Now()
	recs := []flow.Record{record(1, flow.TCP), record(2, flow.TCP), record(3, flow.TCP)}
	recs[0].Time, recs[1].Time, recs[2].Time = now.Add(-2*time.Hour), now.Add(-30*time.Minute), now.Add(-time.Minute)
	r.Write(recs)
	for q, want := range map[string]string{
		"since=1h":              "[2 3]",
		"since=10m":             "[3]",
		"since=3h&until=20m":    "[1 2]",
		"until=90m":             "[1]",
		"since=1h30m&until=15m": "[2]",
	} {
		got, _ := get(t, ts.URL+"/api/v1/flows?"+q)
		if fmt.Sprint(ports(got)) != want {
			t.Errorf("%s: %v, want %s", q, ports(got), want)
		}
	}

	at := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Time{
		"10m":                            at.Add(-10 * time.Minute),
		"0s":                             at,
		"1h2m3s":                         at.Add(-(time.Hour + 2*time.Minute + 3*time.Second)),
		"2026-11-29T19:00:00Z":           at.Add(-time.Hour),
		"2026-11-29T21:00:00.5+02:00":    at.Add(-time.Hour + 500*time.Millisecond),
		"2026-11-29T19:59:59.123456789Z": at.Add(-time.Second + 123456789),
	} {
		got, err := parseTime(v, at)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
}

// Every bad since or until is refused with 400 naming it, counted, before
// anything is written.
func TestFlowsSinceRefusals(t *testing.T) {
	_, s, ts := hubTest(t, 100, 10, 6, 100)
	cases := []struct{ query, msg string }{
		{"since=" + at(5) + "&until=" + at(5), "is not before until"},
		{"since=" + at(6) + "&until=" + at(5), "is not before until"},
		{"since=5m&until=10m", "is not before until"},
		{"until=" + at(5) + "&follow=1", "until with follow"},
		{"since=yesterday", `since="yesterday": want an RFC 3339 time or a duration`},
		{"since=-5m", `since="-5m": want a positive duration`},
		{"until=2026-13-01T00:00:00Z", `until="2026-13-01T00:00:00Z": want an RFC 3339 time`},
		{"until=2026-11-29", `until="2026-11-29": want an RFC 3339 time`},
		{"since=", ""}, // empty: no bound, answered
	}
	want := 0
	for _, c := range cases {
		code, body := status(t, http.DefaultClient, ts.URL+"/api/v1/flows?"+c.query)
		if c.msg == "" {
			if code != http.StatusOK {
				t.Errorf("%s: %d %s, want 200", c.query, code, body)
			}
			continue
		}
		want++
		if code != http.StatusBadRequest || !strings.Contains(body, c.msg) {
			t.Errorf("%s: %d %q, want 400 saying %q", c.query, code, body, c.msg)
		}
	}
	if n := s.Stats().Rejected["invalid_parameter"]; n != uint64(want) {
		t.Errorf("%d requests counted as invalid_parameter, want %d", n, want)
	}
}

// A refused since or until is refused by parseRequest itself, whatever
// the ring; a good one bounds the match.
func TestParseRequestTimeBounds(t *testing.T) {
	now := t0.Add(time.Hour)
	req, rej := parseRequest(url.Values{"since": {"30m"}, "until": {"2026-11-29T20:45:00Z"}}, testLimits, 100, now)
	if rej != nil {
		t.Fatal(rej)
	}
	if !req.since.Equal(t0.Add(30*time.Minute)) || !req.until.Equal(t0.Add(45*time.Minute)) {
		t.Fatalf("since %v until %v", req.since, req.until)
	}
	for _, c := range []struct {
		at   time.Duration
		want bool
	}{{29 * time.Minute, false}, {30 * time.Minute, true}, {44 * time.Minute, true}, {45 * time.Minute, false}} {
		r := record(1, flow.TCP)
		r.Time = t0.Add(c.at)
		if got := req.match(&r); got != c.want {
			t.Errorf("a record ending at t0+%s matches: %v, want %v", c.at, got, c.want)
		}
	}
	_, rej = parseRequest(url.Values{"follow": {"1"}, "until": {"1m"}}, testLimits, 100, now)
	if rej == nil || rej.status != http.StatusBadRequest || rej.reason != rejectInvalidParameter {
		t.Errorf("until with follow: %+v", rej)
	}
}

// FuzzParseRequestTimes: no since or until crashes the parser, and one it
// takes is a window that is not empty.
func FuzzParseRequestTimes(f *testing.F) {
	for _, s := range []string{"10m", "2026-11-29T20:00:00Z", "-1s", "", "1e9h", "2026-11-29T20:00:00.999999999+14:00"} {
		f.Add(s, "5m", false)
	}
	now := t0
	f.Fuzz(func(t *testing.T, since, until string, follow bool) {
		q := url.Values{"since": {since}, "until": {until}}
		if follow {
			q.Set("follow", "1")
		}
		req, rej := parseRequest(q, testLimits, 100, now)
		if rej != nil {
			if rej.status != http.StatusBadRequest {
				t.Fatalf("refused with %d", rej.status)
			}
			return
		}
		if !req.since.IsZero() && !req.until.IsZero() && !req.since.Before(req.until) {
			t.Fatalf("since %v until %v taken", req.since, req.until)
		}
		if req.follow && !req.until.IsZero() {
			t.Fatal("until with follow taken")
		}
	})
}
