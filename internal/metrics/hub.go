package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/history"
	"github.com/flowlens/flowlens/internal/hub"
	ingestsvc "github.com/flowlens/flowlens/internal/ingest"
	"github.com/flowlens/flowlens/internal/publish"
	"github.com/flowlens/flowlens/internal/topology"
)

var (
	hubBatches = prometheus.NewDesc("flowlens_hub_batches_total",
		"Agents' batches by outcome: counted, resent (received again after a lost ack, not counted again), busy (refused while too many records waited for a tick; the agent resends).", []string{"outcome"}, nil)
	hubRecords = prometheus.NewDesc("flowlens_hub_records_total",
		"Flow records in the batches the hub counted.", nil, nil)
	hubPending = prometheus.NewDesc("flowlens_hub_pending_records",
		"Records received and waiting for the hub's next tick.", nil, nil)
	hubAgents = prometheus.NewDesc("flowlens_hub_agents",
		"Agents the hub has heard from since it started, by whether their stream is open.", []string{"state"}, nil)
	hubTicks = prometheus.NewDesc("flowlens_hub_ticks_total",
		"Intervals the hub closed.", nil, nil)
	hubLogAppends = prometheus.NewDesc("flowlens_hub_log_appends_total",
		"Appends to the ingest log: batches and ticks arriving together share one.", nil, nil)
	hubLogErrors = prometheus.NewDesc("flowlens_hub_log_errors_total",
		"Inputs whose append to the ingest log failed: a batch was refused (the agent resends), or a tick went unlogged.", nil, nil)
	hubCheckpoints = prometheus.NewDesc("flowlens_hub_checkpoints_total",
		"History checkpoints, by outcome (a failed one is retried with the next).", []string{"outcome"}, nil)
	hubCheckpointSeconds = prometheus.NewDesc("flowlens_hub_checkpoint_seconds_total",
		"Time spent writing checkpoints.", nil, nil)
	ingestStreams = prometheus.NewDesc("flowlens_hub_ingest_streams",
		"Agent streams open now.", nil, nil)
	ingestRejected = prometheus.NewDesc("flowlens_hub_ingest_rejected_total",
		"Agent streams ended by a refusal, by reason.", []string{"reason"}, nil)
	topoRecords = prometheus.NewDesc("flowlens_topology_records_total",
		"Records the topology took, by outcome: counted, deduplicated (the other side of a connection counted once), or dropped (too_old, too_new, over_edge_limit).", []string{"outcome"}, nil)
	topoUndeduplicated = prometheus.NewDesc("flowlens_topology_records_undeduplicated_total",
		"Records counted without dedup because the connection index was full: both sides of their connections may count.", nil, nil)
	topoHeld = prometheus.NewDesc("flowlens_topology_held_records",
		"Server records waiting for their client's record.", nil, nil)
	topoSize = prometheus.NewDesc("flowlens_topology_size",
		"What the topology store holds: connections in its dedup index, buckets, distinct edges.", []string{"what"}, nil)
	historyBytes = prometheus.NewDesc("flowlens_history_bytes",
		"The history database: bytes on disk (file and WAL), and the bytes in use the disk budget bounds.", []string{"what"}, nil)
	historyRows = prometheus.NewDesc("flowlens_history_rows",
		"Rows the history holds, by table.", []string{"table"}, nil)
	historyDeleted = prometheus.NewDesc("flowlens_history_deleted_rows_total",
		"Rows deleted from the history: past their retention, or early to keep within the disk budget.", []string{"table", "reason"}, nil)
)

// HubCollector reports the hub: ingest, its pipeline, the topology store
// and the history. A nil source is a part that is not running.
type HubCollector struct {
	Hub      func() hub.Stats
	Publish  func() publish.Stats // the hub's join
	Topology func() topology.Stats
	Ingest   func() ingestsvc.Stats
	History  func() history.Stats
}

// Describe implements prometheus.Collector. Losses and the join are
// reported under flowlens_agent_lost_total and the join's names, whose
// descriptors the agent's collectors own where they run (a registry takes
// each descriptor once); up sets no Publish here, its node's publisher
// reports them.
func (HubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{hubBatches, hubRecords, hubPending, hubAgents, hubTicks, hubLogAppends, hubLogErrors, hubCheckpoints,
		hubCheckpointSeconds, ingestStreams, ingestRejected, topoRecords, topoUndeduplicated, topoHeld, topoSize,
		historyBytes, historyRows, historyDeleted} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c HubCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.Hub != nil {
		s := c.Hub()
		counter(hubBatches, s.Batches, "counted")
		counter(hubBatches, s.Resent, "resent")
		counter(hubBatches, s.Busy, "busy")
		counter(hubRecords, s.Records)
		gauge(hubPending, float64(s.Pending))
		gauge(hubAgents, float64(s.Connected), "connected")
		gauge(hubAgents, float64(s.Agents-s.Connected), "disconnected")
		counter(hubTicks, s.Ticks)
		counter(hubLogAppends, s.LogAppends)
		counter(hubLogErrors, s.LogErrors)
		counter(hubCheckpoints, s.Checkpoints, "written")
		counter(hubCheckpoints, s.CheckpointErrors, "failed")
		ch <- prometheus.MustNewConstMetric(hubCheckpointSeconds, prometheus.CounterValue, s.CheckpointTime.Seconds())
		counter(lost, s.Unsaved, "history", "unsaved_flows")
		counter(lost, s.Capped, "api", "source_cap")
	}
	if c.Publish != nil {
		s := c.Publish()
		counter(joined, s.Join.Matched, "matched")
		counter(joined, s.Unmatched, "unmatched")
		gauge(joinBackends, float64(s.Join.Backends))
		counter(lost, s.Join.Dropped, "join", "backend_index_full")
	}
	if c.Topology != nil {
		s := c.Topology()
		counter(topoRecords, s.RecordsCounted, "counted")
		counter(topoRecords, s.RecordsDeduplicated, "deduplicated")
		counter(topoRecords, s.RecordsTooOld, "too_old")
		counter(topoRecords, s.RecordsTooNew, "too_new")
		counter(topoRecords, s.RecordsOverEdgeLimit, "over_edge_limit")
		counter(topoUndeduplicated, s.RecordsUndeduplicated)
		gauge(topoHeld, float64(s.RecordsHeld))
		gauge(topoSize, float64(s.Connections), "connections")
		gauge(topoSize, float64(s.Buckets), "buckets")
		gauge(topoSize, float64(s.Edges), "edges")
	}
	if c.Ingest != nil {
		s := c.Ingest()
		gauge(ingestStreams, float64(s.Streams))
		for reason, n := range s.Rejected {
			counter(ingestRejected, n, reason)
		}
	}
	if c.History != nil {
		s := c.History()
		gauge(historyBytes, float64(s.DiskBytes), "disk")
		gauge(historyBytes, float64(s.UsedBytes), "used")
		gauge(historyRows, float64(s.Events), "events")
		gauge(historyRows, float64(s.LogRecords), "log_records")
		gauge(historyRows, float64(s.Flows), "flows")
		gauge(historyRows, float64(s.EdgeRows), "edges")
		counter(historyDeleted, s.FlowsExpired, "flows", "retention")
		counter(historyDeleted, s.EdgeRowsExpired, "edges", "retention")
		counter(historyDeleted, s.FlowsOverBudget, "flows", "disk_budget")
		counter(historyDeleted, s.EdgeRowsOverBudget, "edges", "disk_budget")
		counter(historyDeleted, s.LogEventsTrimmed, "events", "log_window")
	}
}
