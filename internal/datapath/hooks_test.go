package datapath

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

func TestPlanSkipsWhatTheKernelLacks(t *testing.T) {
	spec, err := loadFlowlens()
	if err != nil {
		t.Fatal(err)
	}
	older := func(typ string) (bool, error) {
		// A 5.15 kernel: no sock_send_length / sock_recv_length; and
		// one built without BPF iterators.
		return typ != "btf_trace_sock_send_length" && typ != "btf_trace_sock_recv_length" && typ != "bpf_iter__tcp", nil
	}
	// and a kfree_skb of Linux 5.17-6.11, without rx_sk.
	args := func(string) (int, error) { return 3, nil }
	hooks := plan(spec, "", older, args)
	got := map[string]bool{}
	for _, h := range hooks {
		if spec.Programs[h.Program].Type == ebpf.Kprobe {
			// Uprobes load wherever the kernel has uprobes; tlsprobe
			// attaches them to the TLS libraries it finds.
			if !h.Attached {
				t.Errorf("uprobe %s not planned: %s", h.Program, h.Reason)
			}
			continue
		}
		got[h.Program] = h.Attached
		if !h.Attached && h.Reason == "" {
			t.Errorf("%s skipped without a reason", h.Program)
		}
	}
	want := map[string]bool{
		"on_set_state": true, "on_destroy": true, "on_retransmit": true, "on_send_reset": true, "on_receive_reset": true,
		"on_send": false, "on_recv": false, "walk_tcp": false, "on_kfree_skb": false, "read_listeners": true,
		"read_touched": true, "read_udp": true,
		// No cgroup2 mount: none of the cgroup programs.
		"udp_egress": false, "udp_ingress": false,
		"udp_sendmsg4": false, "udp_sendmsg6": false, "udp_connect4": false, "udp_connect6": false, "udp_sock_create": false,
		"udp_release": false,
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
		if p.Type != ebpf.Tracing && p.Type != ebpf.Kprobe && p.Type != ebpf.CGroupSKB && p.Type != ebpf.CGroupSockAddr && p.Type != ebpf.CGroupSock {
			t.Errorf("program %s has type %s the planner does not know", p.Name, p.Type)
		}
	}
}

func TestBTFCacheLoadsOnceUntilReleased(t *testing.T) {
	loads := 0
	fail := true
	c := newBTFCache(func() (*btf.Spec, error) {
		loads++
		if fail {
			return nil, errors.New("no BTF")
		}
		return &btf.Spec{}, nil
	})
	if _, err := c.get(); err == nil {
		t.Fatal("get: want the load's error")
	}
	fail = false
	a, err := c.get()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.get()
	if a != b || loads != 2 {
		t.Fatalf("after a failed load and two gets: same spec %v, loads %d; want true, 2", a == b, loads)
	}
	c.release()
	if d, _ := c.get(); d == a || loads != 3 {
		t.Fatalf("after release: a new spec %v, loads %d; want true, 3", d != a, loads)
	}
}
