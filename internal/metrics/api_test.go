package metrics

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/flowlens/flowlens/internal/server"
)

type apiStats server.Stats

func (s apiStats) Stats() server.Stats { return server.Stats(s) }

func TestAPICollector(t *testing.T) {
	c := APICollector{API: apiStats{Followers: 3, MaxFollowers: 64, LostRecords: 1536, SlowDropped: 2,
		Rejected: map[string]uint64{"unknown_parameter": 4, "too_many_followers": 1}}}
	want := `
# HELP flowlens_api_follow_streams Follow streams (?follow=1) open now.
# TYPE flowlens_api_follow_streams gauge
flowlens_api_follow_streams 3
# HELP flowlens_api_follow_streams_limit Follow streams the API serves at most (--max-followers).
# TYPE flowlens_api_follow_streams_limit gauge
flowlens_api_follow_streams_limit 64
# HELP flowlens_api_lost_records_total Flow records API readers lost because they fell behind the ring; each loss is announced in the reader's stream.
# TYPE flowlens_api_lost_records_total counter
flowlens_api_lost_records_total 1536
# HELP flowlens_api_requests_rejected_total API requests refused, by reason.
# TYPE flowlens_api_requests_rejected_total counter
flowlens_api_requests_rejected_total{reason="too_many_followers"} 1
flowlens_api_requests_rejected_total{reason="unknown_parameter"} 4
# HELP flowlens_api_slow_clients_dropped_total API streams ended because the client took no write within --api-write-timeout.
# TYPE flowlens_api_slow_clients_dropped_total counter
flowlens_api_slow_clients_dropped_total 2
`
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&got, mf); err != nil {
			t.Fatal(err)
		}
	}
	if got.String() != strings.TrimPrefix(want, "\n") {
		t.Errorf("exposition:\n%s\nwant:\n%s", got.String(), want)
	}
}
