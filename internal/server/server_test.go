package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/ring"
	"github.com/flowlens/flowlens/internal/testutil"
)

func record(port uint16, p flow.Protocol) flow.Record {
	return flow.Record{Protocol: p, Destination: flow.Endpoint{Port: port}}
}

var testLimits = DefaultConfig().Limits

func newServer(r *ring.Ring, limits Limits) *Server {
	return New(r, prometheus.NewRegistry(), func() error { return nil }, slog.New(slog.NewTextHandler(io.Discard, nil)), limits)
}

func newTest(t *testing.T, capacity int, limits Limits) (*ring.Ring, *Server, *httptest.Server) {
	r := ring.New(capacity)
	s := newServer(r, limits)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return r, s, ts
}

// line is one line of /api/v1/flows: a record or a lost-records marker.
type line struct {
	flow.Record
	Lost *LostRecords `json:"lost_records"`
}

func decode(t testing.TB, b []byte) line {
	t.Helper()
	var l line
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return l
}

// get reads a whole answer: its records and the records it was told it lost.
func get(t *testing.T, url string) (recs []flow.Record, lost uint64) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: %s %s", url, resp.Status, b)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := decode(t, sc.Bytes()); l.Lost != nil {
			lost += l.Lost.Count
		} else {
			recs = append(recs, l.Record)
		}
	}
	return recs, lost
}

func ports(recs []flow.Record) []uint16 {
	var out []uint16
	for _, r := range recs {
		out = append(out, r.Destination.Port)
	}
	return out
}

// status asks for url and returns the answer's status and body.
func status(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFlowsLastAndFilter(t *testing.T) {
	r, _, ts := newTest(t, 100, testLimits)
	var recs []flow.Record
	for i := range uint16(10) {
		p := flow.TCP
		if i%2 == 1 {
			p = flow.UDP
		}
		recs = append(recs, record(1000+i, p))
	}
	r.Write(recs)
	for q, want := range map[string]string{
		"":                      "[1000 1001 1002 1003 1004 1005 1006 1007 1008 1009]",
		"?last=3":               "[1007 1008 1009]",
		"?last=2&protocol=tcp":  "[1006 1008]", // last counts matching records, not records
		"?last=0":               "[]",
		"?protocol=udp&to-port": "[1001 1003 1005 1007 1009]", // an empty filter selects nothing out
	} {
		got, lost := get(t, ts.URL+"/api/v1/flows"+q)
		if fmt.Sprint(ports(got)) != want || lost != 0 {
			t.Errorf("%s: %v lost %d, want %s", q, ports(got), lost, want)
		}
	}
	if code, _ := status(t, http.DefaultClient, ts.URL+"/api/v1/flows?protocol=sctp"); code != http.StatusBadRequest {
		t.Errorf("bad filter: %d", code)
	}
}

func TestFlowsFollow(t *testing.T) {
	r, _, ts := newTest(t, 100, testLimits)
	r.Write([]flow.Record{record(1, flow.TCP), record(2, flow.UDP)})
	resp, err := http.Get(ts.URL + "/api/v1/flows?follow=1&last=1&protocol=udp")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan uint16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var rec flow.Record
			_ = json.Unmarshal(sc.Bytes(), &rec)
			lines <- rec.Destination.Port
		}
		close(lines)
	}()
	next := func() uint16 {
		select {
		case p := <-lines:
			return p
		case <-time.After(10 * time.Second):
			t.Fatal("no line within 10s")
		}
		return 0
	}
	if p := next(); p != 2 {
		t.Fatalf("first line port %d, want 2", p)
	}
	r.Write([]flow.Record{record(3, flow.TCP), record(4, flow.UDP)})
	if p := next(); p != 4 {
		t.Fatalf("followed line port %d, want 4 (3 is tcp)", p)
	}
}

func TestHealth(t *testing.T) {
	s := New(ring.New(1), prometheus.NewRegistry(), func() error { return errors.New("warming up") },
		slog.New(slog.NewTextHandler(io.Discard, nil)), testLimits)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503} {
		if code, _ := status(t, http.DefaultClient, ts.URL+path); code != want {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}
}

// A read of everything held returns what the ring held when it was asked,
// even while a writer keeps adding faster than it reads: at most the ring's
// capacity, and what the writer overwrote first is announced, not skipped.
func TestFlowsAllEndsUnderAFastWriter(t *testing.T) {
	const capacity = 4 * chunk
	r, _, ts := newTest(t, capacity, testLimits)
	batch := make([]flow.Record, chunk)
	for i := range batch {
		batch[i] = record(uint16(i), flow.UDP)
	}
	for range capacity / chunk {
		r.Write(batch)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // bounded in count: 4M records at most
		defer close(done)
		for range 4 << 20 / chunk {
			select {
			case <-stop:
				return
			default:
				r.Write(batch)
			}
		}
	}()
	recs, lost := get(t, ts.URL+"/api/v1/flows")
	close(stop)
	<-done
	if uint64(len(recs))+lost != capacity {
		t.Fatalf("read %d records and %d lost from a snapshot of %d", len(recs), lost, capacity)
	}
}

// One snapshot of the ring's bounds: while a writer fills the ring, a read
// of the last record always gets exactly one (two reads under two locks used
// to compute a start past the head and answer nothing).
func TestPlainReadNeverEmptyUnderWrites(t *testing.T) {
	r, _, ts := newTest(t, 1<<22, testLimits)
	r.Write([]flow.Record{record(1, flow.TCP), record(2, flow.TCP)})
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		one := []flow.Record{record(3, flow.TCP)}
		for !stop.Load() && r.Next() < 1<<22-10 {
			r.Write(one)
		}
	}()
	defer func() { stop.Store(true); <-done }()
	for i := range 300 {
		if got, lost := get(t, ts.URL+"/api/v1/flows?last=1"); len(got) != 1 || lost != 0 {
			t.Fatalf("request %d: %d records, %d lost, want 1 record", i, len(got), lost)
		}
	}
}

// A follower starts at the head it saw, never past it: the first matching
// record written after it connected reaches it, however busy the writer.
func TestFollowerStartsAtHead(t *testing.T) {
	for try := range 30 {
		r, _, ts := newTest(t, 1<<20, testLimits)
		r.Write([]flow.Record{record(1, flow.TCP)})
		var stop atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			one := []flow.Record{record(3, flow.TCP)}
			for !stop.Load() && r.Next() < 1<<18 {
				r.Write(one)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/v1/flows?follow=1&to-port=9", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		stop.Store(true)
		<-done
		r.Write([]flow.Record{record(9, flow.TCP)})
		sc := bufio.NewScanner(resp.Body)
		ok := sc.Scan()
		cancel()
		resp.Body.Close()
		if !ok {
			t.Fatalf("try %d: the follower never saw the record written after it connected: %v", try, sc.Err())
		}
		if l := decode(t, sc.Bytes()); l.Lost != nil || l.Destination.Port != 9 {
			t.Fatalf("try %d: first line %s, want the record to port 9", try, sc.Bytes())
		}
	}
}

// A follower that falls behind is told, in the stream, exactly how many
// records it lost where they were: every gap in the sequence it receives is
// announced by a lost_records line of the gap's size, and what it received
// plus what it was told it lost is what was written.
func TestFollowerLossIsAnnounced(t *testing.T) {
	r, s, ts := newTest(t, 1024, testLimits)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/v1/flows?follow=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// 200k records numbered by Opened, written while nobody reads: more
	// than socket buffers hold, so the follower falls behind the ring.
	const total = 200_001
	batch := make([]flow.Record, 1000)
	for b := range 200 {
		for i := range batch {
			batch[i] = flow.Record{Opened: uint32(b*1000 + i), Protocol: flow.TCP}
		}
		r.Write(batch)
	}
	r.Write([]flow.Record{{Opened: total - 1}})
	sc := bufio.NewScanner(resp.Body)
	var received, lost, markers, pending uint64
	expect := uint64(0) // the Opened the next record must carry
	for sc.Scan() {
		l := decode(t, sc.Bytes())
		if l.Lost != nil {
			if l.Lost.Reason != ReasonBehindRing || l.Lost.Count == 0 {
				t.Fatalf("marker %s", sc.Bytes())
			}
			markers++
			lost += l.Lost.Count
			pending += l.Lost.Count
			continue
		}
		if got := uint64(l.Opened); got != expect+pending {
			t.Fatalf("record %d after %d announced lost, want %d: a silent gap", got, pending, expect+pending)
		}
		received++
		expect, pending = uint64(l.Opened)+1, 0
		if l.Opened == total-1 {
			break
		}
	}
	if received+lost != total || markers == 0 {
		t.Fatalf("received %d + lost %d (in %d markers), want %d with a loss", received, lost, markers, total)
	}
	if st := s.Stats(); st.LostRecords != lost {
		t.Errorf("lost records counted %d, announced %d", st.LostRecords, lost)
	}
	t.Logf("received %d, lost %d in %d markers", received, lost, markers)
}

// Records the writer overwrites during a plain read are announced where
// they were, for every way of reading.
func TestOverwrittenDuringReadIsAnnounced(t *testing.T) {
	r := ring.New(4)
	s := newServer(r, testLimits)
	r.Write([]flow.Record{record(0, flow.TCP), record(1, flow.TCP), record(2, flow.TCP), record(3, flow.TCP)})
	oldest, end := r.Bounds()
	r.Write([]flow.Record{record(4, flow.TCP), record(5, flow.TCP)}) // 0 and 1 are gone
	for _, tc := range []struct {
		name string
		read func(st *stream) error
		want string
	}{
		{"all", func(st *stream) error { return s.writeRange(st, oldest, end) }, "lost 2, 2, 3"},
		{"last 3", func(st *stream) error { return s.writeLast(st, oldest, end, 3) }, "lost 2, 2, 3"},
		{"last 2", func(st *stream) error { return s.writeLast(st, oldest, end, 2) }, "2, 3"},
	} {
		w := httptest.NewRecorder()
		st := &stream{ring: r, w: w, rc: http.NewResponseController(w), timeout: time.Second, match: func(*flow.Record) bool { return true }, stats: &s.stats}
		if err := tc.read(st); err != nil {
			t.Fatal(err)
		}
		var got []string
		for l := range strings.Lines(w.Body.String()) {
			if d := decode(t, []byte(l)); d.Lost != nil {
				got = append(got, fmt.Sprintf("lost %d", d.Lost.Count))
			} else {
				got = append(got, fmt.Sprint(d.Destination.Port))
			}
		}
		if strings.Join(got, ", ") != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, strings.Join(got, ", "), tc.want)
		}
	}
}

// ?last=N never holds more than the ring: a huge N is the ring's size.
func TestLastCappedAtRing(t *testing.T) {
	req, rej := parseRequest(url.Values{"last": {"1000000000"}}, testLimits, 100, time.Now())
	if rej != nil || req.last != 100 {
		t.Fatalf("last=1000000000 on a ring of 100: %d %v, want 100", req.last, rej)
	}
	r, _, ts := newTest(t, 100, testLimits)
	batch := make([]flow.Record, 250)
	for i := range batch {
		batch[i] = record(uint16(i), flow.TCP)
	}
	r.Write(batch)
	if got, _ := get(t, ts.URL+"/api/v1/flows?last=1000000000"); len(got) != 100 || got[0].Destination.Port != 150 {
		t.Errorf("last=1000000000: %d records from port %v, want the 100 held from 150", len(got), ports(got[:1]))
	}
}

func TestRequestBounds(t *testing.T) {
	limits := testLimits
	limits.MaxFilterValues = 3
	_, s, ts := newTest(t, 10, limits)
	for _, tc := range []struct {
		query string
		code  int
		body  string
	}{
		{"to_port=53", 400, `unknown query parameter "to_port"`}, // misspelt: must not select everything
		{"from-ip=10.0.0.1,10.0.0.2&to-port=1", 200, ""},
		{"from-ip=10.0.0.1,10.0.0.2&to-port=1&to-port=2", 400, "4 filter values in one request, at most 3 are served"},
		{"follow=yes", 400, `follow="yes"`},
		{"last=-1", 400, `last="-1"`},
	} {
		code, body := status(t, http.DefaultClient, ts.URL+"/api/v1/flows?"+tc.query)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %q, want %d with %q", tc.query, code, body, tc.code, tc.body)
		}
	}
	st := s.Stats()
	if st.Rejected["unknown_parameter"] != 1 || st.Rejected["too_many_filter_values"] != 1 || st.Rejected["invalid_parameter"] != 2 {
		t.Errorf("rejections counted %v", st.Rejected)
	}
}

// follow opens a follow stream and returns it once the server answered.
func follow(t *testing.T, base string) (*http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/flows?follow=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return resp, func() { cancel(); resp.Body.Close() }
}

func TestFollowerCap(t *testing.T) {
	limits := testLimits
	limits.MaxFollowers = 2
	_, s, ts := newTest(t, 10, limits)
	_, stop1 := follow(t, ts.URL)
	defer stop1()
	_, stop2 := follow(t, ts.URL)
	defer stop2()
	third, stop3 := follow(t, ts.URL)
	b, _ := io.ReadAll(third.Body)
	stop3()
	if third.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "2 follow streams are open") {
		t.Fatalf("third follower: %s %q, want 429", third.Status, b)
	}
	// A plain read is not a follower.
	if code, _ := status(t, http.DefaultClient, ts.URL+"/api/v1/flows"); code != 200 {
		t.Errorf("plain read beside 2 followers: %d", code)
	}
	stop1()
	testutil.Eventually(t, 10*time.Second, func() error { return followers(s, 1) })
	fourth, stop4 := follow(t, ts.URL)
	defer stop4()
	if fourth.StatusCode != 200 {
		t.Errorf("follower after one left: %s", fourth.Status)
	}
	if st := s.Stats(); st.Rejected["too_many_followers"] != 1 {
		t.Errorf("rejections %v", st.Rejected)
	}
}

func followers(s *Server, want int) error {
	if n := s.Stats().Followers; n != want {
		return fmt.Errorf("%d followers open, want %d", n, want)
	}
	return nil
}

// A client that stops reading is dropped after the write timeout, not held
// forever.
func TestStuckReaderIsDropped(t *testing.T) {
	limits := testLimits
	limits.WriteTimeout = 200 * time.Millisecond
	r, s, ts := newTest(t, 1<<14, limits)
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET /api/v1/flows?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error { return followers(s, 1) })
	batch := make([]flow.Record, 1000)
	for i := range batch {
		batch[i] = flow.Record{Node: strings.Repeat("n", 200)}
	}
	// Never read from c: once the socket buffers are full, the server's
	// write waits, and the deadline ends it. Bounded: 2000 batches.
	for i := 0; i < 2000 && s.Stats().SlowDropped == 0; i++ {
		r.Write(batch)
		time.Sleep(5 * time.Millisecond)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if st := s.Stats(); st.SlowDropped != 1 {
			return fmt.Errorf("%d stuck followers dropped, want 1", st.SlowDropped)
		}
		return followers(s, 0)
	})
}
