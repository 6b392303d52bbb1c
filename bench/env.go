package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/bench/internal/host"
	"github.com/flowlens/flowlens/bench/internal/procfs"
)

// options is what a run is asked to do.
type options struct {
	Out       string
	Short     bool
	Agent     string
	Hub       string // hub command line for a node agent: -hub
	Scenarios []string
	Passes    []string // the passes to run; none: all
	Flowlens  string
	Peer      string
	NoGoBench bool
	NoInstall bool
	// NoBPFStats leaves the kernel's BPF stats off: they read the clock
	// twice around every program run, a cost production does not pay.
	NoBPFStats bool
	// Perf samples every CPU with perf during the agent and hooks passes.
	Perf    bool
	Command string    // the command line, for the record
	Log     io.Writer // progress
}

// runs reports whether the pass is selected (-passes).
func (e *env) runs(pass string) bool {
	return len(e.opts.Passes) == 0 || slices.Contains(e.opts.Passes, pass)
}

// env is what a run set up, and how to take it down again.
type env struct {
	opts      options
	root      string // module directory
	tmp       string
	flowlens  string
	peer      string
	cgMount   string
	cgRoot    string // the run's own cgroup; workloads and agents get children
	conntrack bool   // the conntrack tool is there

	mu   sync.Mutex
	undo []func() // run in reverse at close
	seq  int
}

func (e *env) logf(format string, args ...any) {
	if e.opts.Log != nil {
		fmt.Fprintf(e.opts.Log, "bench: "+format+"\n", args...)
	}
}

// onClose registers f to run when the run ends, however it ends.
func (e *env) onClose(f func()) {
	e.mu.Lock()
	e.undo = append(e.undo, f)
	e.mu.Unlock()
}

func (e *env) close() {
	e.mu.Lock()
	undo := e.undo
	e.undo = nil
	e.mu.Unlock()
	for i := len(undo) - 1; i >= 0; i-- {
		undo[i]()
	}
}

func (e *env) next() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	return e.seq
}

func randByte() byte {
	b := make([]byte, 1)
	_, _ = rand.Read(b)
	return b[0]
}

// setup prepares everything but the scenarios. e.close undoes it.
func (e *env) setup(ctx context.Context) error {
	var err error
	if e.root, err = host.ModuleRoot(); err != nil {
		return err
	}
	if e.tmp, err = os.MkdirTemp("", "flowlens-bench-"); err != nil {
		return err
	}
	tmp := e.tmp
	e.onClose(func() { os.RemoveAll(tmp) })

	e.flowlens, e.peer = e.opts.Flowlens, e.opts.Peer
	if e.flowlens == "" && (e.opts.Agent == "" || strings.Contains(e.opts.Agent, "{flowlens}")) {
		e.flowlens = filepath.Join(e.root, "bin", "flowlens")
		if err := e.goBuild(ctx, e.flowlens, "./cmd/flowlens"); err != nil {
			return err
		}
	}
	if e.peer == "" {
		e.peer = filepath.Join(e.tmp, "peer")
		if err := e.goBuild(ctx, e.peer, "./test/peer"); err != nil {
			return err
		}
	}
	for _, tool := range []string{"ip", "ss", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is required (iproute2, procps)", tool)
		}
	}

	if e.cgMount, err = procfs.Cgroup2Mount(); err != nil {
		return fmt.Errorf("find the cgroup2 mount: %w", err)
	}
	e.cgRoot = filepath.Join(e.cgMount, "flowlens-bench-"+host.RandHex(3))
	if err := os.Mkdir(e.cgRoot, 0o755); err != nil {
		return fmt.Errorf("create cgroup: %w", err)
	}
	cg := e.cgRoot
	e.onClose(func() { host.RemoveCgroup(cg) })
	return nil
}

func (e *env) goBuild(ctx context.Context, out, pkg string) error {
	e.logf("building %s", pkg)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = e.root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// enableBPFStats turns on run-time statistics of eBPF programs for the run.
// BPF_ENABLE_STATS holds them on while its descriptor is open, counted per
// holder, so concurrent runs do not switch each other off and a killed run
// leaves nothing behind. Without it, kernel.bpf_stats_enabled is set and
// restored.
func (e *env) enableBPFStats() (string, error) {
	if c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err == nil {
		e.onClose(func() { c.Close() })
		return "BPF_ENABLE_STATS (kernel.bpf_stats_enabled=1 while the run holds it)", nil
	}
	const path = "/proc/sys/kernel/bpf_stats_enabled"
	prev, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return "", fmt.Errorf("enable BPF stats: %w", err)
	}
	e.onClose(func() { _ = os.WriteFile(path, prev, 0o644) })
	return "sysctl kernel.bpf_stats_enabled=1 (previous value " + strings.TrimSpace(string(prev)) + " restored after)", nil
}

// ensureConntrack installs the conntrack tool if it is missing and allowed.
func (e *env) ensureConntrack(ctx context.Context) bool {
	if _, err := exec.LookPath("conntrack"); err == nil {
		return true
	}
	if e.opts.NoInstall {
		return false
	}
	e.logf("installing conntrack (apt-get)")
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "conntrack")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		e.logf("apt-get install conntrack failed (the conntrack baseline is skipped): %v %s", err, lastLine(out))
		return false
	}
	_, err := exec.LookPath("conntrack")
	return err == nil
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// --- cgroups ---

// cgroup is a cgroup v2 directory the run created.
type cgroup struct{ dir string }

func (e *env) newCgroup(prefix string) (*cgroup, error) {
	dir := filepath.Join(e.cgRoot, fmt.Sprintf("%s%d", prefix, e.next()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	e.onClose(func() { host.RemoveCgroup(dir) })
	return &cgroup{dir}, nil
}

func (c *cgroup) cpu() (procfs.CgroupCPU, error) { return procfs.ReadCgroupCPU(c.dir) }

func (c *cgroup) close() { host.RemoveCgroup(c.dir) }

// command returns a command that starts inside cg (CLONE_INTO_CGROUP: it
// never runs outside it) and, with ns set, inside that network namespace.
// The child is killed if the run dies first.
func (e *env) command(ctx context.Context, cg *cgroup, ns string, name string, args ...string) (*exec.Cmd, func(), error) {
	if ns != "" {
		args = append([]string{"netns", "exec", ns, name}, args...)
		name = "ip"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	release := func() {}
	if cg != nil {
		f, err := os.Open(cg.dir)
		if err != nil {
			return nil, nil, err
		}
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(f.Fd())
		release = func() { f.Close() }
	}
	return cmd, release, nil
}

// runJSON runs a command to completion and decodes its last stdout line.
func (e *env) runJSON(ctx context.Context, cg *cgroup, ns string, v any, name string, args ...string) error {
	cmd, release, err := e.command(ctx, cg, ns, name, args...)
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// A thread that exits kills the children it started (Pdeathsig):
	// keep this one alive until the child is done.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	out, err := cmd.Output()
	release()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	line := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), v); err != nil {
		return fmt.Errorf("%s: decode %q: %w", cmd.Args[0], line, err)
	}
	return nil
}

// server is a long-running peer that prints {"ready":true}, then a summary
// when it gets SIGTERM.
type server struct {
	cmd    *exec.Cmd
	in     io.WriteCloser // commands, for the peers that take them
	out    *bufio.Reader
	stderr *strings.Builder
	done   chan struct{}
	once   sync.Once
}

func (e *env) startServer(ctx context.Context, cg *cgroup, ns string, args ...string) (*server, error) {
	cmd, release, err := e.command(ctx, cg, ns, e.peer, args...)
	if err != nil {
		return nil, err
	}
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		release()
		return nil, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		release()
		return nil, err
	}
	s := &server{cmd: cmd, in: in, out: bufio.NewReader(pipe), stderr: &strings.Builder{}, done: make(chan struct{})}
	cmd.Stderr = s.stderr
	started := make(chan error, 1)
	// Start and Wait on a locked thread that lives as long as the child
	// (Pdeathsig is tied to the thread that forked).
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		release()
		started <- err
		if err == nil {
			<-s.done
		}
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", args[0], err)
	}
	e.onClose(s.kill)
	var ready struct {
		Ready bool `json:"ready"`
	}
	if err := s.readJSON(30*time.Second, &ready); err != nil || !ready.Ready {
		s.kill()
		return nil, fmt.Errorf("%s did not become ready: %v %s", args[0], err, s.stderr.String())
	}
	return s, nil
}

func (s *server) readJSON(timeout time.Duration, v any) error {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		l, err := s.out.ReadString('\n')
		ch <- result{l, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil && r.line == "" {
			return r.err
		}
		return json.Unmarshal([]byte(r.line), v)
	case <-time.After(timeout):
		return fmt.Errorf("no output within %s", timeout)
	}
}

// stop sends SIGTERM and decodes the summary.
func (s *server) stop(v any) error {
	defer s.kill()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := s.readJSON(15*time.Second, v); err != nil {
		return fmt.Errorf("server summary: %w %s", err, s.stderr.String())
	}
	return nil
}

// kill ends the server (ours: we hold its pid as our child) if it still runs.
func (s *server) kill() {
	s.once.Do(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Signal(syscall.SIGKILL)
			_ = s.cmd.Wait()
		}
		close(s.done)
	})
}

// --- network namespaces ---

// pair is two namespaces joined by a veth, each end addressed, with no
// other interface and no route out: traffic cannot leave them.
type pair struct {
	a, b         string // namespace names: a serves, b connects
	inoA, inoB   uint32
	addrA, addrB string
}

func runCmd(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newWorkload makes a fresh pair of namespaces and a workload cgroup for
// one pass; done removes both.
func (e *env) newWorkload() (pr *pair, cg *cgroup, done func(), err error) {
	if pr, err = e.newPair(); err != nil {
		return nil, nil, nil, err
	}
	if cg, err = e.newCgroup("workload"); err != nil {
		pr.close()
		return nil, nil, nil, err
	}
	return pr, cg, func() { cg.close(); pr.close() }, nil
}

func (e *env) newPair() (*pair, error) {
	id := host.RandHex(3)
	// A random /24 of 10.250.0.0/16: records of concurrent runs do not mix.
	net3 := 1 + int(randByte())%250
	p := &pair{
		a: "flb" + id + "-a", b: "flb" + id + "-b",
		addrA: fmt.Sprintf("10.250.%d.1", net3), addrB: fmt.Sprintf("10.250.%d.2", net3),
	}
	for _, ns := range []string{p.a, p.b} {
		if err := runCmd("ip", "netns", "add", ns); err != nil {
			p.close()
			return nil, err
		}
	}
	e.onClose(p.close)
	va, vb := "flb"+id+"a", "flb"+id+"b"
	steps := [][]string{
		// IPv4 only: no IPv6 link-local chatter (MLD reports carry a
		// hop-by-hop header, which flowlens counts as unparsed UDP).
		{"ip", "netns", "exec", p.a, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"},
		{"ip", "netns", "exec", p.b, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"},
		{"ip", "link", "add", va, "netns", p.a, "type", "veth", "peer", "name", vb, "netns", p.b},
		{"ip", "-n", p.a, "link", "set", "lo", "up"},
		{"ip", "-n", p.b, "link", "set", "lo", "up"},
		{"ip", "-n", p.a, "addr", "add", p.addrA + "/24", "dev", va},
		{"ip", "-n", p.b, "addr", "add", p.addrB + "/24", "dev", vb},
		{"ip", "-n", p.a, "link", "set", va, "up"},
		{"ip", "-n", p.b, "link", "set", vb, "up"},
		// Many short connections from one address to one port: a wide
		// port range, and TIME_WAIT ports reusable after 1 s (client
		// side; per namespace). Deep accept queues on the server side.
		{"ip", "netns", "exec", p.b, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=10000 65000", "net.ipv4.tcp_tw_reuse=1"},
		{"ip", "netns", "exec", p.a, "sysctl", "-q", "-w", "net.core.somaxconn=8192", "net.ipv4.tcp_max_syn_backlog=8192"},
	}
	for _, s := range steps {
		if err := runCmd(s[0], s[1:]...); err != nil {
			p.close()
			return nil, err
		}
	}
	for _, x := range []struct {
		name string
		ino  *uint32
	}{{p.a, &p.inoA}, {p.b, &p.inoB}} {
		var st syscall.Stat_t
		if err := syscall.Stat("/run/netns/"+x.name, &st); err != nil {
			p.close()
			return nil, err
		}
		*x.ino = uint32(st.Ino)
	}
	return p, nil
}

// close deletes both namespaces (and with them the veth); idempotent.
func (p *pair) close() {
	for _, ns := range []string{p.a, p.b} {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	}
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
