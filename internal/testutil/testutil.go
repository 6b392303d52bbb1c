// Package testutil holds what privileged tests share: the root and -short check,
// network namespaces joined by a veth with no route out, and processes run
// inside them. Everything it creates is removed in t.Cleanup, also when the
// test fails.
package testutil

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RequirePrivileged skips the test in -short mode and unless it runs as
// root: loading eBPF programs and making namespaces and cgroups needs it.
// -short is the project's one switch for "unit tests only" (`make unit`,
// `make race`), which must touch neither the kernel nor an API server even
// when run as root; cluster.StartControlPlane honours it too. CI runs as
// root (`make test` refuses to run otherwise), so these tests run there.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short (make unit): needs root for eBPF, network namespaces or cgroups; `sudo make test` runs it")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads eBPF programs, creates network namespaces or cgroups; `sudo make test` runs it")
	}
}

// Prefix returns a short random name prefix, unique per call, so that
// namespaces and links of parallel or leftover runs never collide.
func Prefix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "fl" + hex.EncodeToString(b)
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// Netns is a network namespace made by a test.
type Netns struct {
	Name  string
	Inode uint32 // what the kernel reports as the socket's netns
}

// NewNetns creates a namespace with loopback up, removed at cleanup.
func NewNetns(t testing.TB, name string) *Netns {
	t.Helper()
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+name, &st); err != nil {
		t.Fatalf("stat netns %s: %v", name, err)
	}
	n := &Netns{Name: name, Inode: uint32(st.Ino)}
	n.Exec(t, "ip", "link", "set", "lo", "up")
	return n
}

// Exec runs a command inside the namespace and fails the test if it fails.
func (n *Netns) Exec(t testing.TB, name string, args ...string) {
	t.Helper()
	Run(t, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Command returns a command that runs inside the namespace. `ip netns exec`
// execs in place, so the process keeps the pid of the returned command.
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Pair is two namespaces joined by a veth pair, each end addressed, with
// no other interface and no default route: nothing can leave them.
type Pair struct {
	A, B         *Netns
	AddrA, AddrB netip.Addr
}

// NewPair creates the namespaces and the link. Pass IPv4 or IPv6 prefixes
// such as 10.200.1.1/24 and 10.200.1.2/24.
func NewPair(t testing.TB, a, b netip.Prefix) *Pair {
	t.Helper()
	p := Prefix()
	na, nb := NewNetns(t, p+"-a"), NewNetns(t, p+"-b")
	Run(t, "ip", "link", "add", p+"a", "netns", na.Name, "type", "veth", "peer", "name", p+"b", "netns", nb.Name)
	for _, side := range []struct {
		ns   *Netns
		dev  string
		addr netip.Prefix
	}{{na, p + "a", a}, {nb, p + "b", b}} {
		args := []string{"addr", "add", side.addr.String(), "dev", side.dev}
		if side.addr.Addr().Is6() {
			args = append(args, "nodad") // usable at once, no duplicate detection wait
		}
		side.ns.Exec(t, "ip", args...)
		side.ns.Exec(t, "ip", "link", "set", side.dev, "up")
	}
	return &Pair{A: na, B: nb, AddrA: a.Addr(), AddrB: b.Addr()}
}

// Process is a long-running command started by a test.
type Process struct {
	Cmd    *exec.Cmd
	Stdout *bufio.Reader
}

// Start starts cmd, stops it (and only it) at cleanup, and returns its
// stdout for reading the JSON lines peers print.
func Start(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return &Process{Cmd: cmd, Stdout: bufio.NewReader(out)}
}

// ReadJSON decodes the next JSON line the process prints, within 30 s.
func (p *Process) ReadJSON(t testing.TB, v any) {
	t.Helper()
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := p.Stdout.ReadString('\n')
		ch <- result{line, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil && r.err != io.EOF {
			t.Fatalf("read from %s: %v", p.Cmd.Path, r.err)
		}
		if err := json.Unmarshal([]byte(r.line), v); err != nil {
			t.Fatalf("decode %q from %s: %v", r.line, p.Cmd.Path, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no output from %s within 30s", p.Cmd.Path)
	}
}

// Stop sends SIGTERM, waits, and decodes the summary line into v.
func (p *Process) Stop(t testing.TB, v any) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signal %s: %v", p.Cmd.Path, err)
	}
	p.ReadJSON(t, v)
	if err := p.Cmd.Wait(); err != nil {
		t.Fatalf("%s: %v", p.Cmd.Path, err)
	}
}

// Output runs cmd to completion and decodes its JSON summary into v.
func Output(t testing.TB, cmd *exec.Cmd, v any) {
	t.Helper()
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
}

// GoBuild builds a package of this module into dir and returns the binary.
func GoBuild(t testing.TB, dir, pkg, name string) string {
	t.Helper()
	bin := dir + "/" + name
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// Eventually polls cond every 200 ms until it returns nil or timeout
// passes, then fails with cond's last error.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Must fails the test on err, with context.
func Must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatal(fmt.Errorf("%s: %w", what, err))
	}
}
