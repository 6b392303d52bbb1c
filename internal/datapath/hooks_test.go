package datapath

import (
	"testing"

	"github.com/cilium/ebpf"
)

func TestPlanSkipsWhatTheKernelLacks(t *testing.T) {
	spec, err := loadFlowlens()
	if err != nil {
		t.Fatal(err)
	}
	older := func(tp string) (bool, error) {
		// A 5.15 kernel: no sock_send_length / sock_recv_length.
		return tp != "sock_send_length" && tp != "sock_recv_length", nil
	}
	hooks := plan(spec, "", older)
	got := map[string]bool{}
	for _, h := range hooks {
		got[h.Program] = h.Attached
		if !h.Attached && h.Reason == "" {
			t.Errorf("%s skipped without a reason", h.Program)
		}
	}
	want := map[string]bool{
		"on_set_state": true, "on_destroy": true, "on_retransmit": true, "on_send_reset": true, "on_receive_reset": true,
		"on_send": false, "on_recv": false, "udp_egress": false, "udp_ingress": false,
	}
	if len(got) != len(want) {
		t.Fatalf("planned %v, want %v", got, want)
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s attached=%v, want %v", p, got[p], w)
		}
	}
	for _, p := range spec.Programs {
		if p.Type != ebpf.Tracing && p.Type != ebpf.CGroupSKB {
			t.Errorf("program %s has type %s the planner does not know", p.Name, p.Type)
		}
	}
}
