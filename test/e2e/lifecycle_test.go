package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/flowlens/flowlens/internal/testutil"
)

// bpfIDs are the ids of every eBPF program, link and map loaded on the host.
type bpfIDs struct{ progs, links, maps map[uint32]bool }

// loadedBPF lists what bpftool sees loaded, and the programs' names (full,
// from BTF, where the kernel's own is cut at 15 characters).
func loadedBPF(t *testing.T) (bpfIDs, map[uint32]string) {
	t.Helper()
	ids := bpfIDs{map[uint32]bool{}, map[uint32]bool{}, map[uint32]bool{}}
	names := map[uint32]string{}
	for kind, set := range map[string]map[uint32]bool{"prog": ids.progs, "link": ids.links, "map": ids.maps} {
		out, err := exec.Command("bpftool", "-j", kind, "show").Output()
		testutil.Must(t, err, "bpftool "+kind+" show")
		var objs []struct {
			ID   uint32 `json:"id"`
			Name string `json:"name"`
		}
		testutil.Must(t, json.Unmarshal(out, &objs), "decode bpftool "+kind+" show")
		for _, o := range objs {
			set[o.ID] = true
			if kind == "prog" {
				names[o.ID] = o.Name
			}
		}
	}
	return ids, names
}

// attachedHooks is what the agent at addr reports attached: program → target.
func attachedHooks(t *testing.T, addr string) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	testutil.Must(t, err, "get /metrics")
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	testutil.Must(t, err, "parse /metrics")
	hooks := map[string]string{}
	for _, m := range families["flowlens_datapath_hook_attached"].GetMetric() {
		if m.GetGauge().GetValue() != 1 {
			continue
		}
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		hooks[labels["program"]] = labels["target"]
	}
	return hooks
}

// Test 6: after `flowlens up` exits — asked to (SIGTERM, SIGINT) or killed
// (SIGKILL) — none of its programs, links or maps is left in the kernel.
// What the agent holds is read from its own descriptors, by id, so the
// package's shared agent, other tests' agents and a developer's own flowlens
// on the host change nothing.
func TestNothingLeftAttachedAfterExit(t *testing.T) {
	testutil.RequirePrivileged(t)
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Fatal("bpftool is required (Debian package bpftool; the test setup installs it)")
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd, addr, err := startAgent()
			testutil.Must(t, err, "start a second agent")
			t.Cleanup(func() {
				if cmd.ProcessState == nil {
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
				}
			})
			held, err := testutil.HeldBPF(cmd.Process.Pid)
			testutil.Must(t, err, "read the agent's descriptors")
			_, names := loadedBPF(t)
			hooks := attachedHooks(t, addr)
			if _, ok := hooks["on_set_state"]; !ok {
				t.Fatalf("the agent reports on_set_state not attached; attached: %v", hooks)
			}

			// It holds one program per hook it reports attached and nothing
			// else, and one link to each but the iterators, which it runs on
			// demand and never attaches (read_touched: one to each touched
			// set, kept; read_udp: one to udp_flows, kept), and the uprobes, attached once per TLS library.
			progs, wantProgs := map[string]int{}, map[string]int{}
			for id := range held.Progs {
				progs[names[id]]++
			}
			links, wantLinks := map[string]int{}, map[string]int{}
			for _, prog := range held.Links {
				if !held.Progs[prog] {
					t.Errorf("a link of the agent attaches program %d (%q), which the agent does not hold", prog, names[prog])
				}
				links[names[prog]]++
			}
			for prog, target := range hooks {
				wantProgs[prog] = 1
				switch {
				case strings.HasPrefix(target, "uprobes"):
					// One link per TLS library file found (per RET
					// instruction, for Go's returns): as many as
					// the host has, counted in flowlens_tls_probed_files.
					delete(links, prog)
				case prog == "read_touched":
					// An iterator kept attached, one link to each
					// touched set, read every interval.
					wantLinks[prog] = 2
				case prog == "read_udp":
					// An iterator kept attached to udp_flows.
					wantLinks[prog] = 1
				case !strings.HasPrefix(target, "iter/"):
					wantLinks[prog] = 1
				}
			}
			if !maps.Equal(progs, wantProgs) {
				t.Errorf("running: programs %v, want %v", progs, wantProgs)
			}
			if !maps.Equal(links, wantLinks) {
				t.Errorf("running: links to %v, want %v", links, wantLinks)
			}
			if len(held.Maps) == 0 {
				t.Error("running: the agent holds no map")
			}

			testutil.Must(t, cmd.Process.Signal(sig), "signal agent")
			err = cmd.Wait()
			if sig != syscall.SIGKILL && err != nil {
				t.Errorf("flowlens up exited with %v on %s", err, sig)
			}
			// Links go with the process's file descriptors at once; the
			// kernel frees programs and maps a moment later. Ids are not
			// reused while the kernel has fresh ones, so one still listed is
			// one of the agent's.
			testutil.Eventually(t, 10*time.Second, func() error {
				loaded, _ := loadedBPF(t)
				var left []string
				for _, o := range []struct {
					kind   string
					held   []uint32
					loaded map[uint32]bool
				}{
					{"program", slices.Collect(maps.Keys(held.Progs)), loaded.progs},
					{"link", slices.Collect(maps.Keys(held.Links)), loaded.links},
					{"map", slices.Collect(maps.Keys(held.Maps)), loaded.maps},
				} {
					for _, id := range o.held {
						if o.loaded[id] {
							left = append(left, fmt.Sprintf("%s %d", o.kind, id))
						}
					}
				}
				if len(left) > 0 {
					return fmt.Errorf("after %s, of the agent's %d programs, %d links and %d maps these are left: %s",
						sig, len(held.Progs), len(held.Links), len(held.Maps), strings.Join(left, ", "))
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
