package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flowlens/flowlens/bench/internal/bpfstat"
	"github.com/flowlens/flowlens/bench/internal/host"
	"github.com/flowlens/flowlens/bench/internal/procfs"
	"github.com/flowlens/flowlens/bench/internal/promtext"
	"github.com/flowlens/flowlens/internal/datapath"
)

// agent is the observability agent under test, in a cgroup of its own so
// that its CPU time (children and exited threads included) is read to the
// microsecond.
type agent struct {
	cmd   *exec.Cmd
	pid   int
	api   string // host:port of flowlens' API (/metrics, /readyz); "" for agents without it
	flows string // host:port serving /api/v1/flows: api, or the hub's with -hub
	hub   *agent // -hub: the hub the agent ships to, outside the agent's cgroup
	cg    *cgroup
	log   string
	done  chan struct{}
	once  sync.Once
}

// agentCommand returns the shell command line of the agent and whether it
// serves flowlens' API on listen.
func (e *env) agentCommand(listen string) (string, bool) {
	if e.opts.Agent == "" {
		return shellJoin([]string{e.flowlens, "up", "--listen", listen}), true
	}
	c := strings.ReplaceAll(e.opts.Agent, "{flowlens}", e.flowlens)
	api := strings.Contains(c, "{listen}")
	return strings.ReplaceAll(c, "{listen}", listen), api
}

// startAgent starts the agent; flags are appended to the command line of
// an agent that serves flowlens' API (flowlens itself), sizing it for a
// scenario. With -hub a fresh hub is started first, in a cgroup of its
// own, and the agent's {hub} is its address: the agent's cost is then a
// node agent's alone, and records are read from the hub.
func (e *env) startAgent(ctx context.Context, flags ...string) (*agent, error) {
	listen, err := host.FreeAddr()
	if err != nil {
		return nil, err
	}
	line, api := e.agentCommand(listen)
	if api && len(flags) > 0 {
		if e.opts.Hub != "" {
			return nil, fmt.Errorf("-hub: a scenario that sizes the agent (%s) would need its flags split between agent and hub; run it without -hub", strings.Join(flags, " "))
		}
		line += " " + shellJoin(flags)
	}
	var hub *agent
	if e.opts.Hub != "" {
		addr, err := host.FreeAddr()
		if err != nil {
			return nil, err
		}
		hubLine := strings.NewReplacer("{flowlens}", e.flowlens, "{hub}", addr).Replace(e.opts.Hub)
		if hub, err = e.startProcess(ctx, "hub", hubLine, addr); err != nil {
			return nil, err
		}
		line = strings.ReplaceAll(line, "{hub}", addr)
	}
	ready := ""
	if api {
		ready = listen
	}
	a, err := e.startProcess(ctx, "agent", line, ready)
	if err != nil {
		if hub != nil {
			hub.stop()
		}
		return nil, err
	}
	a.flows, a.hub = a.api, hub
	if hub != nil {
		a.flows = hub.api
	}
	return a, nil
}

// startProcess starts one command line of the agent under test (the
// agent, or its hub) in a cgroup of its own, and waits until api answers
// /readyz ("": a few seconds to load and attach).
func (e *env) startProcess(ctx context.Context, name, line, api string) (*agent, error) {
	cg, err := e.newCgroup(name)
	if err != nil {
		return nil, err
	}
	a := &agent{cg: cg, api: api, log: filepath.Join(e.tmp, fmt.Sprintf("%s-%d.log", name, e.next())), done: make(chan struct{})}
	logf, err := os.Create(a.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// The agent runs outside the workload's cgroup, in the host namespace.
	cmd, release, err := e.command(context.Background(), cg, "", "/bin/sh", "-c", "exec "+line)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // Pdeathsig follows the thread that forked
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		release()
		started <- err
		if err == nil {
			_ = cmd.Wait()
			close(a.done)
		}
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s %q: %w", name, line, err)
	}
	a.cmd, a.pid = cmd, cmd.Process.Pid
	e.onClose(a.stop)
	e.logf("%s pid %d: %s", name, a.pid, line)

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-a.done:
			return nil, fmt.Errorf("%s exited during startup: %s", name, a.tail())
		case <-ctx.Done():
			a.stop()
			return nil, ctx.Err()
		default:
		}
		if a.api == "" {
			// No readiness to ask for: give it time to load and attach.
			if err := sleepCtx(ctx, 3*time.Second); err != nil {
				a.stop()
				return nil, err
			}
			return a, nil
		}
		if resp, err := http.Get("http://" + a.api + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a, nil
			}
		}
		if time.Now().After(deadline) {
			a.stop()
			return nil, fmt.Errorf("%s not ready within 60s: %s", name, a.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (a *agent) tail() string {
	b, _ := os.ReadFile(a.log)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}

// stop ends the agent (SIGTERM, then SIGKILL after 10 s) and waits for it,
// then its hub.
func (a *agent) stop() {
	a.once.Do(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			_ = a.cmd.Process.Signal(syscall.SIGKILL)
			<-a.done
		}
		a.cg.close()
		if a.hub != nil {
			a.hub.stop()
		}
	})
}

// cpuSample is the agent's CPU time by both measures.
type cpuSample struct {
	cg   procfs.CgroupCPU // cgroup cpu.stat: µs resolution
	stat procfs.ProcCPU   // /proc/<pid>/stat utime+stime (+ waited-for children)
}

func (a *agent) cpu() (cpuSample, error) {
	var s cpuSample
	var err error
	if s.cg, err = a.cg.cpu(); err != nil {
		return s, err
	}
	s.stat, err = procfs.ReadStat(a.pid)
	return s, err
}

func (a *agent) memory() (procfs.Memory, error) { return procfs.ReadStatus(a.pid) }

// bpf reads the agent's programs and maps with their names. Its
// iterators are left out: they run inside the agent's own reads, so their
// time is already in the agent's CPU.
func (a *agent) bpf(ctx context.Context) (bpfstat.Snapshot, error) {
	s, err := bpfSnapshot(ctx, a.pid)
	if err != nil {
		return s, err
	}
	iters, err := iterators()
	if err != nil {
		return s, err
	}
	for id, p := range s.Progs {
		if slices.Contains(iters, p.Name) {
			delete(s.Progs, id)
		}
	}
	return s, nil
}

// iterators are the agent's iterator programs, read once from its eBPF
// object rather than at every snapshot.
var iterators = sync.OnceValues(datapath.Iterators)

// bpfSnapshot reads the programs and maps a process holds, with their names.
func bpfSnapshot(ctx context.Context, pid int) (bpfstat.Snapshot, error) {
	s, err := bpfstat.Read(pid)
	if err != nil {
		return s, err
	}
	if _, err := exec.LookPath("bpftool"); err == nil {
		progs, _ := exec.CommandContext(ctx, "bpftool", "prog", "show", "-j").Output()
		maps, _ := exec.CommandContext(ctx, "bpftool", "map", "show", "-j").Output()
		_ = s.Names(progs, maps)
	}
	return s, nil
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

func (a *agent) metrics(ctx context.Context) (promtext.Samples, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.api+"/metrics", nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s", resp.Status)
	}
	return promtext.Parse(resp.Body)
}

// record is the part of a flow record the benchmarks compare.
type record struct {
	Time      time.Time `json:"time"`
	ConnStart time.Time `json:"connection_start"`
	Observer  string    `json:"observer"`
	Source    struct {
		Port  uint16 `json:"port"`
		Netns uint32 `json:"netns"`
	} `json:"source"`
	Destination struct {
		Netns uint32 `json:"netns"`
	} `json:"destination"`
	Opened      uint32 `json:"connections_opened"`
	Closed      uint32 `json:"connections_closed"`
	Refused     uint32 `json:"connections_refused"`
	TimedOut    uint32 `json:"connections_timed_out"`
	FailedOther uint32 `json:"connections_failed_other"`
	BytesToDst  uint64 `json:"bytes_to_destination"`
	BytesToSrc  uint64 `json:"bytes_to_source"`
	DgramsToDst uint32 `json:"datagrams_to_destination"`
	DgramsToSrc uint32 `json:"datagrams_to_source"`
}

// totals is what a set of records counts.
type totals struct {
	Records     int64 `json:"records"`
	Opened      int64 `json:"connections_opened"`
	Closed      int64 `json:"connections_closed"`
	Failed      int64 `json:"connections_failed"`
	BytesToDst  int64 `json:"bytes_to_destination"`
	BytesToSrc  int64 `json:"bytes_to_source"`
	DgramsToDst int64 `json:"datagrams_to_destination"`
	DgramsToSrc int64 `json:"datagrams_to_source"`
	// Unattributed records do not name the observing side's network
	// namespace (and so its process): counted, but not attributed.
	Unattributed int64 `json:"unattributed_records"`
}

// selection is a filter and the namespace its records must be attributed to.
type selection struct {
	filter string
	netns  uint32 // of the observing socket
}

func (t *totals) add(r *record, netns uint32) {
	t.Records++
	observed := r.Source.Netns
	if r.Observer == "server" {
		observed = r.Destination.Netns
	}
	if observed != netns {
		t.Unattributed++
	}
	t.Opened += int64(r.Opened)
	t.Closed += int64(r.Closed)
	t.Failed += int64(r.Refused + r.TimedOut + r.FailedOther)
	t.BytesToDst += int64(r.BytesToDst)
	t.BytesToSrc += int64(r.BytesToSrc)
	t.DgramsToDst += int64(r.DgramsToDst)
	t.DgramsToSrc += int64(r.DgramsToSrc)
}

// query sums every record the agent holds that matches the filter.
func (a *agent) query(ctx context.Context, sel selection) (totals, error) {
	var t totals
	filter := sel.filter
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.flows+"/api/v1/flows?"+filter, nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		return t, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return t, fmt.Errorf("flows?%s: %s %s", filter, resp.Status, b)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var r record
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			return t, nil
		} else if err != nil {
			return t, err
		}
		t.add(&r, sel.netns)
	}
}

// arrival is when a record of a source port reached the reader.
type arrival struct {
	at        time.Time
	connStart time.Time
}

// follower streams ?follow=1 records as they are emitted, summing them
// and, for latency, noting when each source port first showed up.
type follower struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	t      totals
	ports  map[uint16][]arrival
	err    error
	byPort bool
}

func (a *agent) follow(ctx context.Context, sel selection, byPort bool) (*follower, error) {
	filter := sel.filter
	ctx, cancel := context.WithCancel(ctx)
	f := &follower{cancel: cancel, done: make(chan struct{}), ports: map[uint16][]arrival{}, byPort: byPort}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.flows+"/api/v1/flows?follow=1&"+filter, nil)
	resp, err := http.DefaultClient.Do(req) // no timeout: it streams
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("follow %s: %s", filter, resp.Status)
	}
	go func() {
		defer close(f.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			now := time.Now()
			var r record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				f.mu.Lock()
				f.err = err
				f.mu.Unlock()
				return
			}
			f.mu.Lock()
			f.t.add(&r, sel.netns)
			if f.byPort {
				f.ports[r.Source.Port] = append(f.ports[r.Source.Port], arrival{now, r.ConnStart})
			}
			f.mu.Unlock()
		}
		if err := sc.Err(); err != nil && ctx.Err() == nil {
			f.mu.Lock()
			f.err = err
			f.mu.Unlock()
		}
	}()
	return f, nil
}

func (f *follower) totals() (totals, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t, f.err
}

func (f *follower) stop() {
	f.cancel()
	<-f.done
}
