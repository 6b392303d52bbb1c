package main

import (
	"strings"
	"testing"
	"time"
)

func TestAgentInterval(t *testing.T) {
	for line, want := range map[string]time.Duration{
		"":                                time.Second,
		"{flowlens} up --listen {listen}": time.Second,
		"/x up --interval 500ms --listen {listen}": 500 * time.Millisecond,
		"/x up --interval=2s":                      2 * time.Second,
		"/x up --interval":                         time.Second, // no value: the default
		"/x up --interval bogus":                   time.Second,
	} {
		if got := agentInterval(line); got != want {
			t.Errorf("agentInterval(%q) = %s, want %s", line, got, want)
		}
	}
}

func TestMeminfo(t *testing.T) {
	text := "MemTotal:       24563748 kB\nSlab:             301234 kB\nSReclaimable:     200000 kB\n"
	if got, err := meminfo(strings.NewReader(text), "Slab"); err != nil || got != 301234<<10 {
		t.Errorf("Slab = %d, %v; want %d", got, err, 301234<<10)
	}
	if _, err := meminfo(strings.NewReader(text), "Percpu"); err == nil {
		t.Error("a missing field read without an error")
	}
}

func TestHoldSizing(t *testing.T) {
	sc := scenario{Count: 100_000, Rate: 10_000, Duration: 10 * time.Second}
	if got := sc.holdPorts(); got != 3 {
		t.Errorf("100k connections on %d ports, want 3 (≈55k source ports per destination)", got)
	}
	if got := (scenario{Count: 2000}).holdPorts(); got != 1 {
		t.Errorf("2,000 connections on %d ports, want 1", got)
	}
	flags := strings.Join(sc.holdAgentFlags(true), " ")
	if want := "--max-tcp-sockets 265536 --max-tcp-sockets-per-cgroup -1 --max-records-per-source -1 --flow-buffer 300000"; flags != want {
		t.Errorf("flags %q, want %q", flags, want)
	}
	if got := sc.holdLimit(); got != 10*time.Second+40*time.Second+2*time.Minute {
		t.Errorf("limit %s", got)
	}
}
