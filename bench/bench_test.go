package main

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/testutil"
)

// testLog forwards the harness's progress lines to the test log.
type testLog struct {
	t  *testing.T
	mu sync.Mutex
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// The harness, in --short mode, against a real flowlens: every scenario's
// records must add up exactly to what the load generator and the servers
// counted, on both sides, with nothing lost. Speed and timing are reported,
// never asserted.
func TestShortRunIsComplete(t *testing.T) {
	testutil.RequirePrivileged(t) // runs flowlens (eBPF), creates network namespaces and cgroups
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 8*time.Minute) // the hold scenarios run two agents each
	defer cancel()
	out := os.Getenv("BENCH_TEST_OUT") // keep the results of the test run there
	if out == "" {
		out = t.TempDir()
	}
	res, err := run(ctx, options{
		Out: out, Short: true, NoInstall: true,
		Command: "go test ./bench -run TestShortRunIsComplete", Log: &testLog{t: t},
	})
	if res != nil {
		// Last: the failures above the long tables, where an excerpt of
		// the log shows them.
		defer t.Log(res.Text())
	}
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, res, len(defaultScenarios(true)))
}

// A node agent (`flowlens agent`) shipping to a hub of its own, as in a
// cluster, with the bench's -hub: records read from the hub add up exactly
// too, L7 requests included.
func TestShortRunThroughAHub(t *testing.T) {
	testutil.RequirePrivileged(t) // runs flowlens (eBPF), creates network namespaces and cgroups
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	res, err := run(ctx, options{
		Out: t.TempDir(), Short: true, NoInstall: true, NoGoBench: true, Scenarios: []string{"tcp-1k", "http-keepalive"},
		Hub:     "{flowlens} hub --listen {hub}",
		Agent:   "{flowlens} agent --hub {hub} --metrics-listen {listen}",
		Command: "go test ./bench -run TestShortRunThroughAHub", Log: &testLog{t: t},
	})
	if res != nil {
		defer t.Log(res.Text())
	}
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, res, 2)
}

// checkComplete fails unless every scenario of res ran (want of them) and
// each pass that compared records found them exact, with nothing lost.
func checkComplete(t *testing.T, res *Results, want int) {
	t.Helper()
	if len(res.Scenarios) != want {
		t.Fatalf("%d scenarios ran, want %d", len(res.Scenarios), want)
	}
	for _, s := range res.Scenarios {
		for _, e := range s.Errors {
			t.Errorf("%s: %s", s.Name, e)
		}
		checked := 0
		for _, p := range s.Passes {
			checkTraffic(t, s, p)
			if p.Name != "agent" && p.Name != "observe" {
				continue
			}
			c := p.Completeness
			if c == nil {
				t.Errorf("%s/%s: completeness not checked", s.Name, p.Name)
				continue
			}
			if c.Client == nil || c.Server == nil {
				// The API ring wrapped under other traffic on the host
				// before it could be read; the follow pass still checks.
				t.Logf("%s/%s: %s", s.Name, p.Name, c.Note)
				continue
			}
			checked++
			for side, sd := range map[string]*Side{"client": c.Client, "server": c.Server} {
				if !sd.Exact {
					t.Errorf("%s/%s %s side (%s): records add up to %+v, the traffic was %+v (compared: %v)",
						s.Name, p.Name, side, sd.Filter, sd.Got, sd.Expected, sd.Fields)
				}
			}
			// TCP sockets are attributed in the caller's context (connect,
			// listen, first I/O): every record must name its namespace.
			if n := c.Client.Got.Unattributed + c.Server.Got.Unattributed; n > 0 {
				if s.Kind == "dns" {
					t.Logf("%s/%s: %d UDP records without their process (counted, not attributed)", s.Name, p.Name, n)
				} else {
					t.Errorf("%s/%s: %d records without their process and namespace (client %d, server %d)",
						s.Name, p.Name, n, c.Client.Got.Unattributed, c.Server.Got.Unattributed)
				}
			}
			if !c.Exact {
				t.Logf("%s/%s diagnostics:\n%s", s.Name, p.Name, strings.Join(p.Diagnostics, "\n"))
			}
			if !p.LostKnown {
				t.Errorf("%s/%s: no flowlens_agent_lost_total in /metrics", s.Name, p.Name)
			}
			if p.LostWorkload != 0 {
				t.Errorf("%s/%s: lost %v", s.Name, p.Name, p.Lost)
			} else if p.LostTotal != 0 {
				t.Logf("%s/%s: host-wide losses this load cannot cause: %v", s.Name, p.Name, p.Lost)
			}
		}
		if checked == 0 {
			t.Errorf("%s: no pass could check completeness", s.Name)
		}
		// The floor pass: its load went as planned (checkTraffic above,
		// so the empty programs let it through) and they ran.
		if hk := s.pass("hooks"); s.Kind != "hold" && (hk == nil || hk.EmptyHooks == nil || hk.EmptyHooks.Runs == 0) {
			t.Errorf("%s: no hooks pass, or its empty programs never ran", s.Name)
		}
	}
}

// checkTraffic fails when the load itself did not go as planned: then the
// comparison with flowlens would prove nothing.
func checkTraffic(t *testing.T, s *ScenarioResult, p *Pass) {
	t.Helper()
	tr := p.Traffic
	ok := true
	switch s.Kind {
	case "tcp":
		ok = tr.Connections == int64(s.Count) && tr.Failed == 0 && tr.Server.Connections == tr.Connections &&
			tr.BytesOut == tr.Connections*int64(s.Bytes) && tr.Server.BytesIn == tr.BytesOut &&
			tr.BytesIn == tr.Connections*int64(s.Reply) && tr.Server.BytesOut == tr.BytesIn
	case "stream":
		ok = tr.Connections == 1 && tr.BytesOut > 0 && tr.Server.BytesIn == tr.BytesOut
	case "http":
		// Each of the Conc clients keeps one connection; the transport may
		// redial one the server let go (counted: flowlens must see it too).
		ok = tr.Connections >= int64(s.Conc) && tr.Server.Connections == tr.Connections && tr.Requests > 0 &&
			tr.Failed == 0 && tr.Server.Requests == tr.Requests && tr.Server.BytesIn == tr.BytesOut && tr.Server.BytesOut == tr.BytesIn
	case "hold":
		// Bytes when opened and on each send round.
		sends := 0
		if p.Hold != nil {
			sends = p.Hold.Sends
		}
		ok = tr.Connections == int64(s.Count) && tr.Failed == 0 && tr.Server.Connections == tr.Connections &&
			tr.BytesOut == tr.Connections*int64(s.Bytes)*int64(1+sends) && tr.Server.BytesIn == tr.BytesOut &&
			(sends > 0) == s.Active
	case "dns":
		ok = tr.DatagramsOut == int64(s.Count) && tr.DatagramsIn == tr.DatagramsOut && tr.Server.DatagramsIn == tr.DatagramsOut &&
			tr.Server.BytesIn == tr.BytesOut && tr.Server.BytesOut == tr.BytesIn
	}
	if !ok {
		t.Errorf("%s/%s: the traffic was not as planned: %+v", s.Name, p.Name, tr)
	}
}
