package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/ship"
)

var (
	shipRecords = prometheus.NewDesc("flowlens_agent_hub_records_total",
		"Records given to the stream to the hub: each is acknowledged, lost (flowlens_agent_lost_total{stage=\"hub\"}) or in the backlog.", nil, nil)
	shipBacklog = prometheus.NewDesc("flowlens_agent_hub_backlog_records",
		"Records kept for the hub and not acknowledged yet, in flight included.", nil, nil)
	shipBatches = prometheus.NewDesc("flowlens_agent_hub_batches_total",
		"Batches sent to the hub (resends included), and acknowledged by it.", []string{"state"}, nil)
	shipConnected = prometheus.NewDesc("flowlens_agent_hub_connected",
		"1 while a stream to the hub is open.", nil, nil)
	shipReconnects = prometheus.NewDesc("flowlens_agent_hub_reconnects_total",
		"Streams to the hub started after the first.", nil, nil)
	shipLastAck = prometheus.NewDesc("flowlens_agent_hub_last_ack_timestamp_seconds",
		"When the hub last acknowledged a batch (0: never).", nil, nil)
)

// ShipCollector reports the agent's stream to its hub. Records it could
// not deliver are flowlens_agent_lost_total{stage="hub"}: dropped from a
// full backlog while the hub was away, refused as invalid before sending,
// or in a batch the hub refused.
type ShipCollector struct {
	Ship func() ship.Stats
}

// Describe implements prometheus.Collector; lost is the agent collector's.
func (ShipCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{shipRecords, shipBacklog, shipBatches, shipConnected, shipReconnects, shipLastAck} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c ShipCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.Ship()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(shipRecords, s.Records)
	gauge(shipBacklog, float64(s.Backlog))
	counter(shipBatches, s.Sent, "sent")
	counter(shipBatches, s.Acked, "acked")
	connected := 0.0
	if s.Connected {
		connected = 1
	}
	gauge(shipConnected, connected)
	counter(shipReconnects, s.Reconnects)
	last := 0.0
	if !s.LastAck.IsZero() {
		last = float64(s.LastAck.UnixNano()) / 1e9
	}
	gauge(shipLastAck, last)
	counter(lost, s.Dropped, "hub", "backlog_full")
	counter(lost, s.Invalid, "hub", "invalid")
	counter(lost, s.Rejected, "hub", "rejected")
}
