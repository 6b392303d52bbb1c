package main

import (
	"slices"
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
	for _, c := range []struct {
		count, perPeer int
		want           []int
	}{
		{100_000, 19_488, []int{16_667, 16_667, 16_667, 16_667, 16_666, 16_666}},
		{2000, 19_488, []int{2000}},
		{0, 19_488, []int{0}},
		{120_000, 1 << 20, []int{40_000, 40_000, 40_000}}, // source ports bound a pair too
	} {
		if got := holdShares(c.count, c.perPeer); !slices.Equal(got, c.want) {
			t.Errorf("holdShares(%d, %d) = %v, want %v", c.count, c.perPeer, got, c.want)
		}
	}
	flags := strings.Join(sc.holdAgentFlags(true), " ")
	if want := "--max-tcp-sockets 265536 --max-tcp-sockets-per-cgroup -1 --max-records-per-source -1 --flow-buffer 300000"; flags != want {
		t.Errorf("flags %q, want %q", flags, want)
	}
	if got := sc.holdLimit(); got != 10*time.Second+40*time.Second+2*time.Minute {
		t.Errorf("limit %s", got)
	}
}
