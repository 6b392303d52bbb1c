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
	"strconv"
	"strings"
	"syscall"
	"time"

	mrand "math/rand/v2"

	"github.com/flowlens/flowlens/bench/internal/host"
	"github.com/flowlens/flowlens/bench/internal/procfs"
	"github.com/flowlens/flowlens/bench/internal/stats"
	"github.com/flowlens/flowlens/test/peer/result"
)

// connectResult is connect → visible on the hub's topology: from a batch's
// first (and last) connect() to the poll of /api/v1/topology that first
// showed the whole batch on its edge.
type connectResult struct {
	Batches     int           `json:"batches"`
	Connections int           `json:"connections_per_batch"`
	Agent       string        `json:"agent"`
	PollEvery   string        `json:"poll_every"`
	FirstMilli  stats.Summary `json:"first_connect_to_visible_ms"`
	LastMilli   stats.Summary `json:"last_connect_to_visible_ms"`
}

// connectToVisible runs a real `flowlens agent`, scoped to a cgroup of the
// run's, shipping to h; a server and batches of client connections run in
// that cgroup, in two network namespaces of the run joined by a veth, with
// no route out. Everything is removed at the end, also on failure.
func connectToVisible(ctx context.Context, o options, tmp string, h *hubProc) (*connectResult, error) {
	var undo []func()
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}()
	// Every agent on this kernel sees every test's traffic: take the
	// project's lock for privileged runs, only for this part.
	unlock, err := privilegedLock(ctx)
	if err != nil {
		return nil, err
	}
	undo = append(undo, unlock)
	id := host.RandHex(3)
	peer := o.peer
	if peer == "" {
		root, err := host.ModuleRoot()
		if err != nil {
			return nil, err
		}
		peer = filepath.Join(tmp, "peer")
		if err := goBuild(ctx, root, peer, "./test/peer"); err != nil {
			return nil, err
		}
	}
	// Process names of their own name the edge's two ends (a plain host's
	// topology names ends by process).
	serverBin, clientBin := filepath.Join(tmp, "hbs"+id), filepath.Join(tmp, "hbc"+id)
	for _, b := range []string{serverBin, clientBin} {
		if err := copyFile(peer, b); err != nil {
			return nil, err
		}
	}

	mount, err := procfs.Cgroup2Mount()
	if err != nil {
		return nil, fmt.Errorf("find the cgroup2 mount: %w", err)
	}
	cgName := "/flowlens-hubbench-" + id
	cg := filepath.Join(mount, cgName)
	if err := os.Mkdir(cg, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	undo = append(undo, func() { host.RemoveCgroup(cg) })

	nsA, nsB := "flhb"+id+"-a", "flhb"+id+"-b"
	undo = append(undo, func() {
		for _, ns := range []string{nsA, nsB} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	net3 := 1 + int(id[0])%250
	addrA, addrB := fmt.Sprintf("10.251.%d.1", net3), fmt.Sprintf("10.251.%d.2", net3)
	for _, s := range [][]string{
		{"netns", "add", nsA}, {"netns", "add", nsB},
		{"link", "add", "flhb" + id + "a", "netns", nsA, "type", "veth", "peer", "name", "flhb" + id + "b", "netns", nsB},
		{"-n", nsA, "link", "set", "lo", "up"}, {"-n", nsB, "link", "set", "lo", "up"},
		{"-n", nsA, "addr", "add", addrA + "/24", "dev", "flhb" + id + "a"},
		{"-n", nsB, "addr", "add", addrB + "/24", "dev", "flhb" + id + "b"},
		{"-n", nsA, "link", "set", "flhb" + id + "a", "up"}, {"-n", nsB, "link", "set", "flhb" + id + "b", "up"},
	} {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}

	metricsAddr, err := host.FreeAddr()
	if err != nil {
		return nil, err
	}
	agentArgs := []string{"agent", "--hub", h.addr, "--node", "hubbench-" + id, "--watch-cgroup", cgName, "--metrics-listen", metricsAddr}
	agent := exec.Command(o.flowlens, agentArgs...)
	logFile, err := os.Create(filepath.Join(tmp, "agent-"+id+".log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	agent.Stdout, agent.Stderr = logFile, logFile
	agent.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := agent.Start(); err != nil {
		return nil, fmt.Errorf("start flowlens agent: %w", err)
	}
	undo = append(undo, func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = agent.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = agent.Process.Kill()
			<-done
		}
	})
	if err := poll(ctx, 2*time.Minute, func() (bool, error) {
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		return nil, fmt.Errorf("flowlens agent not ready: %w", err)
	}

	server, err := startInCgroup(cg, "ip", "netns", "exec", nsA, serverBin, "tcp-serve", "-listen", addrA+":8080", "-reply", "100")
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { _ = server.Process.Kill(); _ = server.Wait() })

	res := &connectResult{Batches: o.connectBatches, Connections: o.connectSize, Agent: "flowlens " + joinArgs(agentArgs), PollEvery: "20ms"}
	edge := edgeFinder{hub: h, src: "/" + filepath.Base(clientBin), dst: "/" + filepath.Base(serverBin)}
	var first, last []float64
	// One batch more than measured: the first warms the path up.
	for b := range o.connectBatches + 1 {
		// A batch starts at a random point of the agent's and the hub's
		// 1 s intervals, not just after the tick that showed the last.
		if err := sleep(ctx, time.Duration(mrand.Int64N(int64(2*time.Second)))); err != nil {
			return nil, err
		}
		before, err := edge.opened()
		if err != nil {
			return nil, err
		}
		var c result.Connect
		if err := runInCgroup(cg, &c, "ip", "netns", "exec", nsB, clientBin, "tcp-connect", "-addr", addrA+":8080",
			"-count", strconv.Itoa(o.connectSize), "-bytes", "100"); err != nil {
			return nil, err
		}
		if c.OK != int64(o.connectSize) {
			return nil, fmt.Errorf("batch %d: %d of %d connections succeeded: %+v", b, c.OK, o.connectSize, c)
		}
		var seen time.Time
		if err := poll(ctx, 30*time.Second, func() (bool, error) {
			n, err := edge.opened()
			seen = time.Now()
			return n >= before+uint64(o.connectSize), err
		}); err != nil {
			return nil, fmt.Errorf("batch %d not on the hub's topology: %w", b, err)
		}
		if b == 0 {
			continue
		}
		first = append(first, float64(seen.UnixNano()-c.FirstStart)/1e6)
		last = append(last, float64(seen.UnixNano()-c.LastStart)/1e6)
	}
	res.FirstMilli, res.LastMilli = stats.Summarize(first), stats.Summarize(last)
	return res, nil
}

// edgeFinder reads the connections opened on the edge between two
// processes from the hub's topology.
type edgeFinder struct {
	hub      *hubProc
	src, dst string // suffixes of the ends' node ids
}

func (e edgeFinder) opened() (uint64, error) {
	b, err := getBody(e.hub.url("/api/v1/topology?level=workload&window=10m"))
	if err != nil {
		return 0, err
	}
	var g struct {
		Edges []struct {
			Source, Destination string
			Opened              uint64 `json:"connections_opened"`
		} `json:"edges"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		return 0, fmt.Errorf("decode the topology: %w", err)
	}
	for _, x := range g.Edges {
		if strings.HasSuffix(x.Source, e.src) && strings.HasSuffix(x.Destination, e.dst) {
			return x.Opened, nil
		}
	}
	return 0, nil
}

// startInCgroup starts a command inside cgroup dir (CLONE_INTO_CGROUP: it
// never runs outside it) and waits for its {"ready":true} line.
func startInCgroup(dir string, name string, args ...string) (*exec.Cmd, error) {
	cmd, release, err := inCgroup(dir, name, args...)
	if err != nil {
		return nil, err
	}
	defer release()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	var ready struct{ Ready bool }
	if err != nil || json.Unmarshal([]byte(line), &ready) != nil || !ready.Ready {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s did not become ready: %q %v", strings.Join(args, " "), line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return cmd, nil
}

// runInCgroup runs a command inside cgroup dir to completion and decodes
// its JSON output into v.
func runInCgroup(dir string, v any, name string, args ...string) error {
	cmd, release, err := inCgroup(dir, name, args...)
	if err != nil {
		return err
	}
	defer release()
	// Pdeathsig follows the thread that forked: keep it for the child's life.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return err
	}
	return json.Unmarshal(out, v)
}

func inCgroup(dir string, name string, args ...string) (*exec.Cmd, func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, UseCgroupFD: true, CgroupFD: int(f.Fd())}
	return cmd, func() { f.Close() }, nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// privLock is the lock privileged tests and runs share (see README).
const privLock = "/tmp/flowlens-priv.lock"

// privilegedLock waits for the shared lock (queued in the kernel like the
// tests' flock) and returns its release.
func privilegedLock(ctx context.Context) (func(), error) {
	f, err := os.OpenFile(privLock, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", privLock, err)
	}
	logf("waiting for %s", privLock)
	locked := make(chan error, 1)
	go func() { locked <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-locked:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", privLock, err)
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		// Closing the file drops the lock, should the wait still win it.
		f.Close()
		return nil, ctx.Err()
	}
}
