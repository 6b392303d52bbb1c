package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/hub"
)

// GET /api/v1/agents answers {"agents":[…]} with what the hub lists, each
// agent with every documented field, and refuses any parameter.
func TestAgentsList(t *testing.T) {
	since := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	list := []hub.AgentStatus{
		{ID: "node-a", Node: "node-a", Version: "abc123", Incarnation: "00000000000000ff", Address: "10.0.0.1:41000",
			Connected: true, Since: since, LastBatch: since.Add(time.Minute), LagSeconds: 1.5, Sequence: 7, Batches: 7,
			Records: 12000, ResentBatches: 1, DroppedRecords: 300, Backlog: 40},
		{ID: "node-b", Node: "node-b", Incarnation: "0000000000000001", Since: since, LastError: "stream reset"},
	}
	calls := 0
	s := newServer(nil, testLimits)
	s.SetAgents(func() any { calls++; return list })
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)

	resp, err := http.Get(ts.URL + "/api/v1/agents")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	var got map[string][]map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got["agents"]) != 2 || calls != 1 {
		t.Fatalf("answer %v after %d calls, want {\"agents\":[two]} from one", got, calls)
	}
	a := got["agents"][0]
	want := map[string]any{"id": "node-a", "node": "node-a", "version": "abc123", "incarnation": "00000000000000ff",
		"address": "10.0.0.1:41000", "connected": true, "since": "2026-11-29T20:00:00Z", "last_batch": "2026-11-29T20:01:00Z",
		"lag_seconds": 1.5, "sequence": 7.0, "batches": 7.0, "records": 12000.0, "resent_batches": 1.0,
		"dropped_records": 300.0, "backlog_records": 40.0}
	if len(a) != len(want) {
		t.Errorf("agent has %d fields, want %d: %v", len(a), len(want), a)
	}
	for k, v := range want {
		if a[k] != v {
			t.Errorf("agents[0].%s = %#v, want %#v", k, a[k], v)
		}
	}
	// Empty optional fields are left out; the error of a broken stream shows.
	b := got["agents"][1]
	for _, k := range []string{"version", "address"} {
		if _, ok := b[k]; ok {
			t.Errorf("agents[1] has %s: %v", k, b)
		}
	}
	if b["connected"] != false || b["last_error"] != "stream reset" {
		t.Errorf("agents[1] = %v", b)
	}

	for _, q := range []string{"?id=node-a", "?follow=1", "?"} {
		code, body := status(t, http.DefaultClient, ts.URL+"/api/v1/agents"+q)
		if q == "?" {
			// No parameter at all: a bare "?" is no parameter.
			if code != http.StatusOK {
				t.Errorf("%s: %d %s", q, code, body)
			}
			continue
		}
		if code != http.StatusBadRequest || !strings.Contains(body, "takes no query parameters") {
			t.Errorf("%s: %d %q, want 400", q, code, body)
		}
	}
	if n := s.Stats().Rejected["unknown_parameter"]; n != 2 {
		t.Errorf("%d refusals counted as unknown_parameter, want 2", n)
	}
	if calls != 2 {
		t.Errorf("the list was read %d times, want 2: never for a refused request", calls)
	}
}

// No agents to list (an agent's own API, `up`): no such endpoint.
func TestAgentsListOnlyOnAHub(t *testing.T) {
	_, _, ts := newTest(t, 10, testLimits)
	if code, _ := status(t, http.DefaultClient, ts.URL+"/api/v1/agents"); code != http.StatusNotFound {
		t.Errorf("GET /api/v1/agents without a hub: %d, want 404", code)
	}
}

// An empty hub lists an empty array, not null.
func TestAgentsListEmpty(t *testing.T) {
	s := newServer(nil, testLimits)
	h, err := hub.New(t.Context(), hub.Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetAgents(func() any { return h.Agents() })
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	code, body := status(t, http.DefaultClient, ts.URL+"/api/v1/agents")
	if code != http.StatusOK || body != "{\"agents\":[]}\n" {
		t.Errorf("%d %q, want 200 {\"agents\":[]}", code, body)
	}
}
