package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/flowlens/flowlens/internal/testutil"
)

// programNames are the eBPF programs flowlens loads (bpftool prints the
// full name from BTF, not the 15-character object name).
var programNames = map[string]bool{
	"on_set_state": true, "on_destroy": true, "on_send": true, "on_recv": true, "on_retransmit": true,
	"on_send_reset": true, "on_receive_reset": true, "udp_egress": true, "udp_ingress": true,
}

// attached counts flowlens programs loaded in the kernel and the links that
// attach them, as bpftool sees them.
func attached(t *testing.T) (progs, links int) {
	t.Helper()
	out, err := exec.Command("bpftool", "-j", "prog", "show").Output()
	testutil.Must(t, err, "bpftool prog show")
	var ps []struct {
		ID   uint32 `json:"id"`
		Name string `json:"name"`
	}
	testutil.Must(t, json.Unmarshal(out, &ps), "decode bpftool prog show")
	ours := map[uint32]bool{}
	for _, p := range ps {
		if programNames[p.Name] {
			ours[p.ID] = true
		}
	}
	out, err = exec.Command("bpftool", "-j", "link", "show").Output()
	testutil.Must(t, err, "bpftool link show")
	var ls []struct {
		ProgID uint32 `json:"prog_id"`
	}
	testutil.Must(t, json.Unmarshal(out, &ls), "decode bpftool link show")
	for _, l := range ls {
		if ours[l.ProgID] {
			links++
		}
	}
	return len(ours), links
}

// Test 6: after `flowlens up` exits — asked to (SIGTERM, SIGINT) or killed
// (SIGKILL) — none of its programs or links is left in the kernel.
func TestNothingLeftAttachedAfterExit(t *testing.T) {
	testutil.RequirePrivileged(t)
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Fatal("bpftool is required (Debian package bpftool; the test setup installs it)")
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			progs0, links0 := attached(t) // the package's shared agent
			cmd, _, err := startAgent()
			testutil.Must(t, err, "start a second agent")
			progs1, links1 := attached(t)
			if progs1 != progs0+len(programNames) || links1 != links0+len(programNames) {
				t.Errorf("running: %d programs %d links, want %d and %d", progs1, links1, progs0+len(programNames), links0+len(programNames))
			}
			testutil.Must(t, cmd.Process.Signal(sig), "signal agent")
			err = cmd.Wait()
			if sig != syscall.SIGKILL && err != nil {
				t.Errorf("flowlens up exited with %v on %s", err, sig)
			}
			// Links go with the process's file descriptors at once; the
			// kernel frees the programs themselves a moment later.
			testutil.Eventually(t, 10*time.Second, func() error {
				if progs2, links2 := attached(t); progs2 != progs0 || links2 != links0 {
					return fmt.Errorf("after %s: %d programs %d links left, want %d and %d", sig, progs2, links2, progs0, links0)
				}
				return nil
			})
		})
	}
}

// The agent's own metrics are valid Prometheus exposition, lint-clean, and
// report no loss for the traffic of this suite.
func TestMetricsExposition(t *testing.T) {
	testutil.RequirePrivileged(t)
	resp, err := http.Get("http://" + string(shared) + "/metrics")
	testutil.Must(t, err, "get /metrics")
	defer resp.Body.Close()
	problems, err := promlint.New(resp.Body).Lint()
	testutil.Must(t, err, "parse exposition")
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "flowlens_") {
			t.Errorf("lint %s: %s", p.Metric, p.Text)
		}
	}
	resp2, err := http.Get("http://" + string(shared) + "/metrics")
	testutil.Must(t, err, "get /metrics")
	defer resp2.Body.Close()
	values := scrape(t, resp2)
	for _, name := range []string{
		`flowlens_agent_lost_total{reason="ring_buffer_full",stage="kernel"}`,
		`flowlens_agent_lost_total{reason="tcp_map_full",stage="kernel"}`,
		`flowlens_agent_lost_total{reason="decode_error",stage="userspace"}`,
		`flowlens_agent_lost_total{reason="socket_vanished",stage="userspace"}`,
	} {
		v, ok := values[name]
		if !ok {
			t.Errorf("%s missing", name)
		} else if v != 0 {
			t.Errorf("%s = %v, want 0", name, v)
		}
	}
	for _, name := range []string{
		`flowlens_datapath_hook_attached{program="on_set_state",target="tp_btf/inet_sock_set_state"}`,
		`flowlens_datapath_map_capacity{map="tcp_socks"}`,
	} {
		if values[name] <= 0 {
			t.Errorf("%s = %v, want > 0", name, values[name])
		}
	}
}
