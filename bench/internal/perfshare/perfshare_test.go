package perfshare

import (
	"strings"
	"testing"
)

// Three samples of the workload (one in a program under a cgroup hook with
// the stats clock read, one in a tracepoint's dispatch, one elsewhere) and
// one of another command, in perf script's layout.
const script = `peer 
	ffffffff81309573 sched_clock
	ffffffff815538ae __bpf_prog_run_save_cb
	ffffffff81555f56 __cgroup_bpf_run_filter_skb
	ffffffff82033f50 tcp_v4_rcv

peer 
	ffffffffc0001234 bpf_prog_59f4a931744dcdc6_on_recv
	ffffffff81400000 bpf_trace_run3
	ffffffff81e2bc3b sock_recvmsg

peer 
	ffffffff81309573 sched_clock
	ffffffff81e2bc3b __schedule

swapper 
	ffffffff81555f56 __cgroup_bpf_run_filter_skb
`

func TestParseCountsTheWorkloadsSamplesInEBPF(t *testing.T) {
	s, err := Parse(strings.NewReader(script), "peer")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Share{Samples: 3, BPF: 2, StatsClock: 1}); s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	if got := s.Pct(); got < 66.6 || got > 66.7 {
		t.Fatalf("Pct %v, want 66.67", got)
	}
}
