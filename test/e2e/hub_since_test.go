package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/ship"
	"github.com/flowlens/flowlens/internal/testutil"
)

// shipToHub sends recs to the hub at addr as agent id does (internal/ship,
// gRPC) and returns once the hub acked every batch; the shipper stops at
// cleanup.
func shipToHub(t *testing.T, addr, id string, recs []flow.Record) {
	t.Helper()
	cfg := ship.DefaultConfig()
	cfg.Hub, cfg.AgentID, cfg.Node, cfg.Version = addr, id, id, "e2e"
	cfg.MaxBacklog = max(cfg.MaxBacklog, len(recs))
	testutil.Must(t, cfg.Validate(), "shipper config")
	s := ship.New(cfg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shipper %s: %v", id, err)
		}
	})
	s.Send(recs)
	batches := uint64((len(recs) + cfg.MaxBatch - 1) / cfg.MaxBatch)
	testutil.Eventually(t, 60*time.Second, func() error {
		if st := s.Stats(); st.Acked != batches || st.Backlog != 0 || st.Dropped+st.Invalid+st.Rejected != 0 {
			return fmt.Errorf("shipper %s: %+v, want %d batches acked, nothing dropped", id, st, batches)
		}
		return nil
	})
}

// metricValue reads one series of a flowlens' /metrics, 0 when absent.
func metricValue(t *testing.T, a api, series string) float64 {
	t.Helper()
	for _, l := range strings.Split(scrapeText(t, a), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			testutil.Must(t, err, "parse "+l)
			return f
		}
	}
	return 0
}

// A hub with a history answers /api/v1/flows?since=…&until=… with exactly
// the records pushed to it whose end falls in [since, until), each once:
// first while they are both saved and in its ring, then, after a SIGKILL
// and a restart that emptied the ring, from its DuckDB history alone.
func TestHubFlowsSince(t *testing.T) {
	testutil.RequirePrivileged(t) // the package builds flowlens as root
	h := startHubProcess(t)
	// Ten connections, one ending every 10 s over the last two minutes.
	base := time.Now().Add(-2 * time.Minute).Truncate(time.Second)
	recs := make([]flow.Record, 10)
	for i := range recs {
		end := base.Add(time.Duration(i) * 10 * time.Second)
		recs[i] = flow.Record{Time: end, Start: end.Add(-time.Second), ConnStart: end.Add(-time.Second), Node: "since-node",
			Observer: "client", Protocol: flow.TCP, IPVersion: 4, Verdict: flow.VerdictClosed, Opened: 1, Closed: 1,
			BytesToDst: uint64(100 + i), BytesToSrc: 7,
			Source:      flow.Endpoint{IP: netip.MustParseAddr("10.77.0.1"), Port: uint16(50000 + i), PID: 42, Command: "since-client"},
			Destination: flow.Endpoint{IP: netip.MustParseAddr("10.77.0.2"), Port: 8080}}
	}
	checkpoints := `flowlens_hub_checkpoints_total{outcome="written"}`
	before := metricValue(t, h.api(), checkpoints)
	shipToHub(t, h.addr, "since-agent", recs)
	// Published by a tick, then saved by the checkpoint after it.
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := metricValue(t, h.api(), "flowlens_flow_ring_written_total"); n != float64(len(recs)) {
			return fmt.Errorf("%v records published, want %d", n, len(recs))
		}
		return nil
	})
	published := metricValue(t, h.api(), checkpoints)
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := metricValue(t, h.api(), checkpoints); n <= published {
			return fmt.Errorf("%v checkpoints (%v before the records), want one after they were published", n, before)
		}
		return nil
	})

	// [record 2's end, record 7's end): records 2 to 6.
	query := "since=" + url.QueryEscape(recs[2].Time.Format(time.RFC3339Nano)) +
		"&until=" + url.QueryEscape(recs[7].Time.Format(time.RFC3339Nano)) + "&from-command=since-client"
	check := func(when string) {
		t.Helper()
		got := h.api().flows(t, query)
		if len(got) != 5 {
			t.Fatalf("%s: %d records, want 5: %+v", when, len(got), got)
		}
		for i, r := range got {
			w := recs[2+i]
			if r.Source.Port != w.Source.Port || !r.Time.Equal(w.Time) || r.Opened != 1 || r.BytesToDst != w.BytesToDst {
				t.Errorf("%s: record %d is %+v, want %+v", when, i, r, w)
			}
		}
	}
	check("saved and in the ring")
	h.kill()
	h.start()
	if n := metricValue(t, h.api(), "flowlens_flow_ring_records"); n != 0 {
		t.Fatalf("the restarted hub's ring holds %v records, want 0", n)
	}
	check("from the history alone, after a SIGKILL")
}
