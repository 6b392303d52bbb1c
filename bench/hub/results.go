package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flowlens/flowlens/bench/internal/host"
	"github.com/flowlens/flowlens/bench/internal/report"
)

type meta struct {
	Command string `json:"command"`
	host.Facts
	DurationSeconds float64 `json:"duration_seconds"`
}

type results struct {
	Meta   meta         `json:"meta"`
	Hubs   []*hubResult `json:"hubs"`
	Errors []string     `json:"errors,omitempty"`
	began  time.Time
}

func newResults(ctx context.Context, root string, o options) *results {
	r := &results{began: time.Now(), Meta: meta{Command: "go run ./bench/hub " + joinArgs(os.Args[1:]), Facts: host.ReadFacts(ctx, root)}}
	return r
}

// write puts hub.json and hub.md in dir.
func (r *results) write(dir string) error {
	r.Meta.DurationSeconds = time.Since(r.began).Seconds()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"hub.json": append(js, '\n'), "hub.md": []byte(r.markdown())} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
			return err
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return err
		}
	}
	return nil
}

func (r *results) markdown() string {
	var b strings.Builder
	m := r.Meta
	fmt.Fprintf(&b, "# flowlens hub benchmark\n\n`%s` on %s, %d × %s, %s, commit %.12s", m.Command, m.Date, m.Cores, m.CPU, m.Kernel, m.GitCommit)
	if m.GitDirty {
		b.WriteString(" (dirty)")
	}
	fmt.Fprintf(&b, ", %s, %s.\n\nLoad at start: %s\n\n", m.GoVersion, report.Seconds(m.DurationSeconds), m.Uptime)
	b.WriteString("A real `flowlens hub` on loopback, pushed to over gRPC by synthetic agents in the bench process " +
		"(internal/ship, each its own agent id); the hub's CPU from /proc/<pid>/stat, its memory from /proc/<pid>/status " +
		"and its /metrics (Go heap live: half the heap goal its last GC set, GOGC=100). One run, no thresholds; the bench process shares the machine's cores with the hub.\n\n")

	t := report.Table{Header: []string{"", "memory only", "--data-dir"}}
	row := func(name string, f func(h *hubResult) string) {
		cells := []string{name, report.NA, report.NA}
		for _, h := range r.Hubs {
			i := 1
			if h.History {
				i = 2
			}
			cells[i] = f(h)
		}
		t.Add(cells...)
	}
	row("ingest: records/s per core of hub CPU", func(h *hubResult) string { return report.Num(h.RecordsPerCore) })
	row("ingest: records/s wall", func(h *hubResult) string { return report.Num(h.RecordsPerWall) })
	row("ingest: records, hub CPU s, wall s", func(h *hubResult) string {
		return fmt.Sprintf("%s, %s, %s", report.Int(int64(h.IngestRecords)), report.Num(h.IngestCPU), report.Num(h.IngestWall))
	})
	row("idle RSS", func(h *hubResult) string { return report.Bytes(float64(h.Idle.RSSBytes)) })
	row("RSS, Go heap live with the flow ring full (before edges)", func(h *hubResult) string {
		return report.Bytes(float64(h.Before.RSSBytes)) + ", " + report.Bytes(h.Before.live())
	})
	row("10,000 edges × 6 buckets: RSS growth", func(h *hubResult) string {
		return report.Bytes(float64(h.WithEdges.RSSBytes) - float64(h.Before.RSSBytes))
	})
	row("10,000 edges × 6 buckets: Go heap live growth", func(h *hubResult) string {
		return report.Bytes(h.WithEdges.live() - h.Before.live())
	})
	row("24 h phase: RSS growth per edge-bucket", func(h *hubResult) string {
		return report.Bytes((float64(h.WithDay.RSSBytes) - float64(h.WithEdges.RSSBytes)) / float64(h.Edges*h.Spread))
	})
	row("24 h phase: Go heap live growth per edge-bucket", func(h *hubResult) string {
		return report.Bytes((h.WithDay.live() - h.WithEdges.live()) / float64(h.Edges*h.Spread))
	})
	row("RSS, Go heap live with the 24 h store", func(h *hubResult) string {
		return report.Bytes(float64(h.WithDay.RSSBytes)) + ", " + report.Bytes(h.WithDay.live())
	})
	row("peak RSS", func(h *hubResult) string { return report.Bytes(float64(h.PeakRSSBytes)) })
	row("topology 24 h, workload: p50 / p99", func(h *hubResult) string { return queryCell(h.Query24h) })
	row("topology 1 m, workload: p50 / p99", func(h *hubResult) string { return queryCell(h.Query1m) })
	row("connect → visible, first connection: p50 / p99", func(h *hubResult) string {
		if c := h.ConnectVisible; c != nil {
			return fmt.Sprintf("%s / %s ms (%d batches)", report.Num(c.FirstMilli.P50), report.Num(c.FirstMilli.P99), c.FirstMilli.N)
		}
		return report.NA
	})
	row("connect → visible, last connection: p50 / p99", func(h *hubResult) string {
		if c := h.ConnectVisible; c != nil {
			return fmt.Sprintf("%s / %s ms", report.Num(c.LastMilli.P50), report.Num(c.LastMilli.P99))
		}
		return report.NA
	})
	row("checkpoints, their total time", func(h *hubResult) string {
		if !h.History {
			return report.NA
		}
		return fmt.Sprintf("%s, %s", report.Num(h.Checkpoints), report.Seconds(h.CheckpointSecs))
	})
	row("data dir at the end", func(h *hubResult) string {
		if !h.History {
			return report.NA
		}
		return report.Bytes(float64(h.DataDirBytes))
	})
	b.WriteString(t.Markdown())
	b.WriteString("\nWhat the phases pushed, by the topology's outcome (every record ends in one):\n\n")
	for _, h := range r.Hubs {
		fmt.Fprintf(&b, "- %s: `%s`; edges %v, 24 h %v, ingest %v; hub busy refusals %s, resent batches %s",
			map[bool]string{false: "memory only", true: "--data-dir"}[h.History], h.Command, h.EdgeRecords, h.DayRecords,
			h.IngestOutcomes, report.Num(h.HubBusyBatches), report.Num(h.HubResentBatchs))
		if h.ConnectError != "" {
			fmt.Fprintf(&b, "; connect → visible: %s", h.ConnectError)
		}
		if c := h.ConnectVisible; c != nil {
			fmt.Fprintf(&b, "; agent `%s`, %d connections a batch, topology polled every %s", c.Agent, c.Connections, c.PollEvery)
		}
		b.WriteString("\n")
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "\n**Error:** %s\n", e)
	}
	return b.String()
}

func queryCell(q query) string {
	if q.Milli.N == 0 {
		return report.NA
	}
	return fmt.Sprintf("%s / %s ms (%s edges, %s)", report.Num(q.Milli.P50), report.Num(q.Milli.P99),
		report.Int(int64(q.Edges)), report.Bytes(float64(q.Bytes)))
}
