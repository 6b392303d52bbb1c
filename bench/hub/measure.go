package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/flowlens/flowlens/bench/internal/stats"
)

// ringSize is the hub's default --flow-buffer.
const ringSize = 1 << 16

// hubResult is what one hub (with or without its history) measured.
type hubResult struct {
	History bool   `json:"history"`
	Command string `json:"command"`
	Agents  int    `json:"synthetic_agents"`

	Idle memory `json:"memory_idle"`
	// Before is the memory before the edges: after connect → visible and
	// with the flow ring full.
	Before memory `json:"memory_before_edges"`
	// Edges: Edges distinct workload edges, each in Buckets 10 s buckets.
	Edges       int                `json:"edges"`
	Buckets     int                `json:"edge_phase_buckets"`
	EdgeRecords map[string]float64 `json:"edge_phase_topology_outcomes"`
	WithEdges   memory             `json:"memory_with_edges"`

	// Day: the same edges in Spread buckets each, across the last 24 h.
	Spread          int                `json:"day_buckets_per_edge"`
	DayRecords      map[string]float64 `json:"day_phase_topology_outcomes"`
	WithDay         memory             `json:"memory_with_day"`
	StoreEdges      float64            `json:"topology_edges_held"`
	Query24h        query              `json:"query_24h_workload"`
	Query1m         query              `json:"query_1m_workload"`
	IngestRecords   int                `json:"ingest_records"`
	IngestOutcomes  map[string]float64 `json:"ingest_topology_outcomes"`
	IngestCPU       float64            `json:"ingest_hub_cpu_seconds"`
	IngestWall      float64            `json:"ingest_wall_seconds"`
	RecordsPerCore  float64            `json:"ingest_records_per_cpu_second"`
	RecordsPerWall  float64            `json:"ingest_records_per_wall_second"`
	PeakRSSBytes    uint64             `json:"peak_rss_bytes"`
	Checkpoints     float64            `json:"checkpoints_written,omitempty"`
	CheckpointSecs  float64            `json:"checkpoint_seconds_total,omitempty"`
	DataDirBytes    int64              `json:"data_dir_bytes,omitempty"`
	ConnectVisible  *connectResult     `json:"connect_to_visible,omitempty"`
	ConnectError    string             `json:"connect_error,omitempty"`
	HubBusyBatches  float64            `json:"hub_busy_batches"`
	HubResentBatchs float64            `json:"hub_resent_batches"`
}

// query is one topology query repeated: its time from request to the last
// byte of the answer, in milliseconds.
type query struct {
	URL   string        `json:"url"`
	Edges int           `json:"edges"`
	Nodes int           `json:"nodes"`
	Bytes int           `json:"bytes"`
	Milli stats.Summary `json:"ms"`
}

func measureHub(ctx context.Context, o options, tmp string, history bool) (*hubResult, error) {
	dataDir := ""
	if history {
		dataDir = filepath.Join(tmp, "data")
	}
	h, err := startHub(ctx, o.flowlens, tmp, dataDir)
	if err != nil {
		return nil, err
	}
	defer h.stop()
	r := &hubResult{History: history, Command: "flowlens " + joinArgs(h.cmd.Args[1:]), Agents: o.agents,
		Edges: o.edges, Buckets: o.buckets, Spread: o.spread24h, IngestRecords: o.records}
	logf("hub at %s (history: %v)", h.addr, history)
	if err := sleep(ctx, 2*time.Second); err != nil {
		return r, err
	}
	if r.Idle, err = h.memory(); err != nil {
		return r, err
	}
	// Connect → visible first, on the idle hub: its polls of the
	// topology are then not queries over the 10,000 edges. Once, with the
	// history: the hub as it is deployed.
	if o.connectBatches > 0 && history {
		if os.Geteuid() != 0 {
			r.ConnectError = "not root: connect → visible skipped"
		} else if r.ConnectVisible, err = connectToVisible(ctx, o, tmp, h); err != nil {
			r.ConnectError = err.Error()
			logf("connect → visible: %v", err)
		}
	}
	f, err := startFleet(ctx, h.addr, o.agents)
	if err != nil {
		return r, err
	}
	defer f.stop()
	// Fill the hub's flow ring (--flow-buffer, 65,536) first, with records
	// of other edges older than the store's 24 h (its topology counts them
	// too_old): the records that follow only replace ring entries, so what
	// memory grows by is the topology's. A thousand sources, so the hub's
	// cap per source keeps none out.
	logf("warm-up: the flow ring full of records older than 24 h")
	if _, err := pushAndWait(ctx, h, f, o.edges, 1000, ringSize/1000+1, func(int, int) time.Time {
		return time.Now().Add(-25 * time.Hour)
	}); err != nil {
		return r, err
	}
	if r.Before, err = h.memory(); err != nil {
		return r, err
	}

	// Memory: every edge in each of the last buckets.
	now := time.Now()
	logf("memory: %d edges × %d buckets", o.edges, o.buckets)
	if r.EdgeRecords, err = pushAndWait(ctx, h, f, 0, o.edges, o.buckets, func(_, k int) time.Time {
		return now.Add(-time.Duration(k) * 10 * time.Second)
	}); err != nil {
		return r, err
	}
	if r.WithEdges, err = h.memory(); err != nil {
		return r, err
	}

	// A day: every edge in spread buckets, staggered so that every bucket
	// of the 24 h holds some.
	span := int64(24*time.Hour - time.Minute)
	logf("24 h: %d edges × %d buckets across the day", o.edges, o.spread24h)
	if r.DayRecords, err = pushAndWait(ctx, h, f, 0, o.edges, o.spread24h, func(e, k int) time.Time {
		off := (int64(k)*span/int64(o.spread24h) + int64(e)*span/int64(o.edges*o.spread24h)) % span
		return now.Add(-30*time.Second - time.Duration(off))
	}); err != nil {
		return r, err
	}
	if r.WithDay, err = h.memory(); err != nil {
		return r, err
	}
	if s, err := h.metrics(); err == nil {
		r.StoreEdges = s[`flowlens_topology_size{what="edges"}`]
	}
	if r.Query24h, err = timeQuery(ctx, h, "/api/v1/topology?level=workload&window=24h", o.queries); err != nil {
		return r, err
	}
	// The minute the memory phase filled, however long ago that is now.
	minute := "/api/v1/topology?level=workload&window=1m&at=" + url.QueryEscape(now.Format(time.RFC3339Nano))
	if r.Query1m, err = timeQuery(ctx, h, minute, o.queries); err != nil {
		return r, err
	}

	// Ingest: records of now, as fast as the hub takes them.
	if err := r.ingest(ctx, h, f, o); err != nil {
		return r, err
	}
	if history {
		r.DataDirBytes = dirSize(dataDir)
	}
	return r, nil
}

// ingest pushes o.records records and measures the hub's CPU from the first
// sent until the topology counted the last and, with a history, a
// checkpoint saved them.
func (r *hubResult) ingest(ctx context.Context, h *hubProc, f *fleet, o options) error {
	perEdge := max(1, o.records/o.edges)
	r.IngestRecords = perEdge * o.edges
	logf("ingest: %d records", r.IngestRecords)
	cpu0, err := h.cpuSeconds()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if r.IngestOutcomes, err = pushAndWait(ctx, h, f, 0, o.edges, perEdge, func(int, int) time.Time { return time.Now() }); err != nil {
		return err
	}
	if r.History {
		s, err := h.metrics()
		if err != nil {
			return err
		}
		written := s[`flowlens_hub_checkpoints_total{outcome="written"}`]
		if err := poll(ctx, time.Minute, func() (bool, error) {
			s, err := h.metrics()
			return err == nil && s[`flowlens_hub_checkpoints_total{outcome="written"}`] > written, err
		}); err != nil {
			return fmt.Errorf("wait for a checkpoint: %w", err)
		}
	}
	cpu1, err := h.cpuSeconds()
	if err != nil {
		return err
	}
	r.IngestWall = time.Since(t0).Seconds()
	r.IngestCPU = cpu1 - cpu0
	r.RecordsPerCore = stats.Ratio(float64(r.IngestRecords), r.IngestCPU)
	r.RecordsPerWall = stats.Ratio(float64(r.IngestRecords), r.IngestWall)
	s, err := h.metrics()
	if err != nil {
		return err
	}
	r.Checkpoints = s[`flowlens_hub_checkpoints_total{outcome="written"}`]
	r.CheckpointSecs = s["flowlens_hub_checkpoint_seconds_total"]
	r.HubBusyBatches = s[`flowlens_hub_batches_total{outcome="busy"}`]
	r.HubResentBatchs = s[`flowlens_hub_batches_total{outcome="resent"}`]
	if m, err := readPeak(h); err == nil {
		r.PeakRSSBytes = m
	}
	return nil
}

// timeQuery asks path n times and summarises the times.
func timeQuery(ctx context.Context, h *hubProc, path string, n int) (query, error) {
	q := query{URL: path}
	var ms []float64
	for range n {
		if ctx.Err() != nil {
			return q, ctx.Err()
		}
		start := time.Now()
		b, err := getBody(h.url(path))
		if err != nil {
			return q, err
		}
		ms = append(ms, float64(time.Since(start).Microseconds())/1000)
		var g struct {
			Nodes []json.RawMessage `json:"nodes"`
			Edges []json.RawMessage `json:"edges"`
		}
		if err := json.Unmarshal(b, &g); err != nil {
			return q, fmt.Errorf("decode %s: %w", path, err)
		}
		q.Edges, q.Nodes, q.Bytes = len(g.Edges), len(g.Nodes), len(b)
	}
	q.Milli = stats.Summarize(ms)
	return q, nil
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
