package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/ring"
)

func record(port uint16, p flow.Protocol) flow.Record {
	return flow.Record{Protocol: p, Destination: flow.Endpoint{Port: port}}
}

func newTest(t *testing.T, ready error) (*ring.Ring, *httptest.Server) {
	r := ring.New(100)
	s := New(r, prometheus.NewRegistry(), func() error { return ready }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return r, ts
}

func get(t *testing.T, url string) []flow.Record {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	var out []flow.Record
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var r flow.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func ports(recs []flow.Record) []uint16 {
	var out []uint16
	for _, r := range recs {
		out = append(out, r.Destination.Port)
	}
	return out
}

func TestFlowsLastAndFilter(t *testing.T) {
	r, ts := newTest(t, nil)
	var recs []flow.Record
	for i := range uint16(10) {
		p := flow.TCP
		if i%2 == 1 {
			p = flow.UDP
		}
		recs = append(recs, record(1000+i, p))
	}
	r.Write(recs)
	if got := ports(get(t, ts.URL+"/api/v1/flows")); len(got) != 10 || got[0] != 1000 || got[9] != 1009 {
		t.Errorf("all: %v", got)
	}
	if got := ports(get(t, ts.URL+"/api/v1/flows?last=3")); len(got) != 3 || got[0] != 1007 || got[2] != 1009 {
		t.Errorf("last=3: %v", got)
	}
	// last counts matching records, not records
	if got := ports(get(t, ts.URL+"/api/v1/flows?last=2&protocol=tcp")); len(got) != 2 || got[0] != 1006 || got[1] != 1008 {
		t.Errorf("last=2 tcp: %v", got)
	}
	resp, err := http.Get(ts.URL + "/api/v1/flows?protocol=sctp")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad filter: %s", resp.Status)
	}
}

func TestFlowsFollow(t *testing.T) {
	r, ts := newTest(t, nil)
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
	_, ts := newTest(t, errors.New("warming up"))
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// A read of everything held returns what the ring held when it was asked,
// even while a writer keeps adding faster than it reads: at most the ring's
// capacity, plus one chunk if the writer overtook the reader.
func TestFlowsAllEndsUnderAFastWriter(t *testing.T) {
	const capacity = 4 * chunk
	r := ring.New(capacity)
	ts := httptest.NewServer(New(r, prometheus.NewRegistry(), func() error { return nil },
		slog.New(slog.NewTextHandler(io.Discard, nil))).Handler())
	t.Cleanup(ts.Close)
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
	recs := get(t, ts.URL+"/api/v1/flows")
	close(stop)
	<-done
	if len(recs) > capacity+chunk {
		t.Fatalf("read %d records from a ring of %d: it kept chasing the writer", len(recs), capacity)
	}
}
