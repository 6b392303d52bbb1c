package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlens/flowlens/internal/server"
)

// APISource is what the API collector reads.
type APISource interface {
	Stats() server.Stats
}

var (
	apiFollowers = prometheus.NewDesc("flowlens_api_follow_streams",
		"Follow streams (?follow=1) open now.", nil, nil)
	apiFollowerLimit = prometheus.NewDesc("flowlens_api_follow_streams_limit",
		"Follow streams the API serves at most (--max-followers).", nil, nil)
	apiLost = prometheus.NewDesc("flowlens_api_lost_records_total",
		"Flow records API readers lost because they fell behind the ring; each loss is announced in the reader's stream.", nil, nil)
	apiRejected = prometheus.NewDesc("flowlens_api_requests_rejected_total",
		"API requests refused, by reason.", []string{"reason"}, nil)
	apiSlowDropped = prometheus.NewDesc("flowlens_api_slow_clients_dropped_total",
		"API streams ended because the client took no write within --api-write-timeout.", nil, nil)
)

// APICollector reports what the HTTP API served and refused.
type APICollector struct{ API APISource }

// Describe implements prometheus.Collector.
func (APICollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{apiFollowers, apiFollowerLimit, apiLost, apiRejected, apiSlowDropped} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c APICollector) Collect(ch chan<- prometheus.Metric) {
	s := c.API.Stats()
	ch <- prometheus.MustNewConstMetric(apiFollowers, prometheus.GaugeValue, float64(s.Followers))
	ch <- prometheus.MustNewConstMetric(apiFollowerLimit, prometheus.GaugeValue, float64(s.MaxFollowers))
	ch <- prometheus.MustNewConstMetric(apiLost, prometheus.CounterValue, float64(s.LostRecords))
	ch <- prometheus.MustNewConstMetric(apiSlowDropped, prometheus.CounterValue, float64(s.SlowDropped))
	for reason, n := range s.Rejected {
		ch <- prometheus.MustNewConstMetric(apiRejected, prometheus.CounterValue, float64(n), reason)
	}
}
