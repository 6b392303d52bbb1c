package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/flowlens/flowlens/bench/internal/host"
	"github.com/flowlens/flowlens/bench/internal/procfs"
	"github.com/flowlens/flowlens/bench/internal/promtext"
)

// hubProc is a `flowlens hub` the run started.
type hubProc struct {
	cmd     *exec.Cmd
	addr    string // host:port of its one port: gRPC and JSON
	logPath string
	done    chan struct{}
}

// startHub runs the hub on a free loopback port (with its history in
// dataDir unless empty) and waits until it answers /readyz.
func startHub(ctx context.Context, bin, dir, dataDir string) (*hubProc, error) {
	addr, err := host.FreeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"hub", "--listen", addr, "--interval", "1s"}
	if dataDir != "" {
		args = append(args, "--data-dir", dataDir)
	}
	logPath := filepath.Join(dir, fmt.Sprintf("hub-%s.log", strings.ReplaceAll(addr, ":", "_")))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The hub dies with the run, however the run ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start flowlens hub: %w", err)
	}
	h := &hubProc{cmd: cmd, addr: addr, logPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(h.done) }()
	if err := poll(ctx, 60*time.Second, func() (bool, error) {
		select {
		case <-h.done:
			return false, fmt.Errorf("flowlens hub exited: %s", h.logTail())
		default:
		}
		resp, err := http.Get(h.url("/readyz"))
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		h.stop()
		return nil, err
	}
	return h, nil
}

func (h *hubProc) url(path string) string { return "http://" + h.addr + path }

func (h *hubProc) pid() int { return h.cmd.Process.Pid }

// stop ends the hub with SIGTERM (its last checkpoint) and waits, with
// SIGKILL after 30 s.
func (h *hubProc) stop() {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
}

func (h *hubProc) logTail() string {
	b, _ := os.ReadFile(h.logPath)
	return string(b[max(0, len(b)-2000):])
}

// metrics scrapes the hub's /metrics.
func (h *hubProc) metrics() (promtext.Samples, error) {
	resp, err := http.Get(h.url("/metrics"))
	if err != nil {
		return nil, fmt.Errorf("scrape the hub: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape the hub: %s", resp.Status)
	}
	return promtext.Parse(resp.Body)
}

// memory is the hub's memory at one moment.
type memory struct {
	RSSBytes       uint64  `json:"rss_bytes"`
	HeapInuseBytes float64 `json:"go_heap_inuse_bytes"`
	HeapAllocBytes float64 `json:"go_heap_alloc_bytes"`
	// NextGCBytes is the heap goal the last GC set: with GOGC=100 about
	// twice what it found live.
	NextGCBytes float64 `json:"go_next_gc_bytes"`
}

func (h *hubProc) memory() (memory, error) {
	st, err := procfs.ReadStatus(h.pid())
	if err != nil {
		return memory{}, fmt.Errorf("read the hub's memory: %w", err)
	}
	s, err := h.metrics()
	if err != nil {
		return memory{}, err
	}
	return memory{RSSBytes: st.RSS, HeapInuseBytes: s["go_memstats_heap_inuse_bytes"],
		HeapAllocBytes: s["go_memstats_heap_alloc_bytes"], NextGCBytes: s["go_memstats_next_gc_bytes"]}, nil
}

// cpuSeconds is the hub's CPU time so far (its threads, user and system).
func (h *hubProc) cpuSeconds() (float64, error) {
	c, err := procfs.ReadStat(h.pid())
	if err != nil {
		return 0, fmt.Errorf("read the hub's CPU time: %w", err)
	}
	return c.Seconds(), nil
}

// topologyRecords is how many records the hub's topology took in, by
// outcome, and how many the hub's cap per source kept out of it
// (source_cap): every record pushed ends in one.
func topologyRecords(s promtext.Samples) map[string]float64 {
	out := map[string]float64{"source_cap": s[`flowlens_agent_lost_total{reason="source_cap",stage="api"}`]}
	for k, v := range s.Series("flowlens_topology_records_total") {
		out[strings.TrimSuffix(strings.TrimPrefix(k, `flowlens_topology_records_total{outcome="`), `"}`)] = v
	}
	return out
}

func total(m map[string]float64) float64 {
	var t float64
	for _, v := range m {
		t += v
	}
	return t
}

// poll calls cond until it is true, fails, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func goBuild(ctx context.Context, root, out, pkg string) error {
	logf("building %s", pkg)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// getBody GETs url and returns the body, failing on any status but 200.
func getBody(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return b, nil
}

// readPeak is the hub's RSS high-water mark (VmHWM).
func readPeak(h *hubProc) (uint64, error) {
	st, err := procfs.ReadStatus(h.pid())
	return st.Peak, err
}

func joinArgs(args []string) string { return strings.Join(args, " ") }

// live is the Go heap the last GC found live: the goal it set is that and
// as much again (GOGC=100; stacks and globals, also in the goal, are small
// here).
func (m memory) live() float64 { return m.NextGCBytes / 2 }
