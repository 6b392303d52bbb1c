package metrics

import (
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/agent"
	"github.com/flowlens/flowlens/internal/flow"
)

type fixedStats agent.Stats

func (f fixedStats) Stats() agent.Stats { return agent.Stats(f) }

func TestDropAndListenerMetrics(t *testing.T) {
	s := agent.Stats{
		DropReasons: map[string]uint64{"netfilter_drop": 20, "no_socket": 2},
		Listeners: []flow.Listener{
			{Netns: 7, Port: 8093, Queue: 5, QueueMax: 4, Drops: 135},
			{Netns: 7, Port: 8093, IPv6: true, Queue: 1, QueueMax: 4, Drops: 1},
			{Netns: 8, Port: 80, QueueMax: 4096},
		},
	}
	got := exposition(t, AgentCollector{Agent: fixedStats(s)})
	want := map[string]float64{
		`flowlens_drops_total{reason="netfilter_drop"}`:        20,
		`flowlens_drops_total{reason="no_socket"}`:             2,
		`flowlens_listen_drops_total{netns="7",port="8093"}`:   136,
		`flowlens_listen_drops_total{netns="8",port="80"}`:     0,
		`flowlens_listen_queue{netns="7",port="8093"}`:         6,
		`flowlens_listen_queue{netns="8",port="80"}`:           0,
		`flowlens_listen_queue_limit{netns="7",port="8093"}`:   8,
		`flowlens_listen_queue_limit{netns="8",port="80"}`:     4096,
		`flowlens_drops_unattributed_total{cause="no_header"}`: 0,
		`flowlens_drops_unattributed_total{cause="no_record"}`: 0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, "flowlens_listen") || strings.HasPrefix(k, "flowlens_drops") {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected series %s", k)
			}
		}
	}
}

// At most maxListeners listeners have series: those with the most drops.
func TestListenerSeriesAreBounded(t *testing.T) {
	var ls []flow.Listener
	for i := range maxListeners + 10 {
		ls = append(ls, flow.Listener{Netns: 1, Port: uint16(i), Drops: uint32(i)})
	}
	top := topListeners(ls)
	if len(top) != maxListeners || top[0].Port != maxListeners+9 || top[maxListeners-1].Port != 10 {
		t.Errorf("%d listeners from port %d to %d, want %d from %d to 10", len(top), top[0].Port, top[len(top)-1].Port, maxListeners, maxListeners+9)
	}
}
