package datapath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
)

// The programs load and attach in the real kernel, and a connection made
// by another process is reported with its process, bytes and role; the
// test's own accepted socket (the agent's, as far as the kernel knows) is not.
func TestOpenAttachAndSeeAConnection(t *testing.T) {
	d := openWith(t, Config{})
	// This kernel has every hook: each program must load and attach.
	for _, h := range d.Hooks() {
		if !h.Attached {
			t.Errorf("%s not attached: %s", h.Program, h.Reason)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	got := readOne(ln)
	child := exec.Command("bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; printf hello >&3", port))
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("client: %v %s", err, out)
	}
	if n := <-got; n != 5 {
		t.Fatalf("server read %d bytes, want 5", n)
	}

	var ends []flow.TCPEnd
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ev, err := d.ReadEnd(time.Now().Add(200 * time.Millisecond))
		if errors.Is(err, ErrTimeout) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.Socket.Remote.Port() == uint16(port) || ev.Socket.Local.Port() == uint16(port) {
			ends = append(ends, ev)
		}
	}
	if len(ends) != 1 {
		t.Fatalf("got %d end events for port %d, want 1 (client side only): %+v", len(ends), port, ends)
	}
	s := ends[0].Socket
	if s.Role != flow.RoleClient || !s.Established || ends[0].Failed {
		t.Errorf("role %v established %v failed %v", s.Role, s.Established, ends[0].Failed)
	}
	if s.Owner.PID != uint32(child.Process.Pid) || s.Owner.Command != "bash" {
		t.Errorf("owner %+v, want bash pid %d", s.Owner, child.Process.Pid)
	}
	if s.BytesSent != 5 || s.BytesRecv != 0 || s.SegsOut == 0 {
		t.Errorf("sent %d recv %d segs_out %d, want 5 0 >0", s.BytesSent, s.BytesRecv, s.SegsOut)
	}
	if s.Cookie == 0 || s.Remote.Addr().String() != "127.0.0.1" {
		t.Errorf("cookie %d remote %s", s.Cookie, s.Remote)
	}
}

// listenerSockets reads how many listening sockets the kernel side counts
// on a port of this process's network namespace, by address family.
func listenerSockets(t *testing.T, d *Datapath, port uint16) map[uint16]uint32 {
	t.Helper()
	var (
		k   flowlensListenerKey
		v   flowlensListenInfo
		out = map[uint16]uint32{}
	)
	it := d.maps.Listeners.Iterate()
	for it.Next(&k, &v) {
		if k.Port == port {
			out[k.Family] = v.Sockets
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A v4 and a v6 listener on one port are two listeners, and a listener
// closed by another process than the one that opened it (an inherited
// socket, a handed-over one) is forgotten all the same.
func TestListenersByFamilyAndWhoeverCloses(t *testing.T) {
	testutil.RequirePrivileged(t)
	d, err := Open(Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// Plain TCP: an MPTCP listener (Go's default) is counted through its
	// TCP subflow just the same, but one kind keeps the test simple.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln4, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	testutil.Must(t, err, "listen v4")
	port := uint16(ln4.Addr().(*net.TCPAddr).Port)
	ln6, err := lc.Listen(context.Background(), "tcp6", fmt.Sprintf("[::1]:%d", port))
	testutil.Must(t, err, "listen v6 on the same port")
	if got := listenerSockets(t, d, port); got[afInet] != 1 || got[afInet6] != 1 || len(got) != 2 {
		t.Fatalf("listeners on port %d by family: %v, want one v4 and one v6", port, got)
	}
	testutil.Must(t, ln6.Close(), "close v6 listener")
	if got := listenerSockets(t, d, port); got[afInet] != 1 || len(got) != 1 {
		t.Fatalf("after closing the v6 listener: %v, want the v4 one only", got)
	}

	// A child inherits the v4 listener; this process lets go of it, and the
	// socket closes when the child exits.
	f, err := ln4.(*net.TCPListener).File()
	testutil.Must(t, err, "listener file")
	child := exec.Command("sleep", "30")
	child.ExtraFiles = []*os.File{f}
	testutil.Must(t, child.Start(), "start child")
	f.Close()
	ln4.Close()
	if got := listenerSockets(t, d, port); got[afInet] != 1 {
		t.Fatalf("while the child holds it: %v, want the v4 listener", got)
	}
	testutil.Must(t, child.Process.Kill(), "kill child")
	_ = child.Wait()
	// The kernel may release the socket after the child is reaped.
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := listenerSockets(t, d, port); len(got) != 0 {
			return fmt.Errorf("after the child closed it: %v, want no listener", got)
		}
		return nil
	})
}

// socketsOnPort reads the tracked TCP sockets with port at either end.
func socketsOnPort(t *testing.T, d *Datapath, port uint16) []flow.TCPSocket {
	t.Helper()
	all, err := d.TCPSockets(nil)
	testutil.Must(t, err, "read tcp_socks")
	return onPort(all, port)
}

// onPort keeps the sockets with port at either end.
func onPort(all []flow.TCPSocket, port uint16) []flow.TCPSocket {
	var out []flow.TCPSocket
	for _, s := range all {
		if s.Local.Port() == port || s.Remote.Port() == port {
			out = append(out, s)
		}
	}
	return out
}

// The start-up walk adopts another process's connection that was open
// before the agent, from a baseline and never as opened, and leaves the
// agent's own connections alone: this test process is the agent here.
func TestWalkAdoptsOthersAndSkipsOwnSockets(t *testing.T) {
	testutil.RequirePrivileged(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	testutil.Must(t, err, "listen")
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	own, err := net.Dial("tcp4", ln.Addr().String())
	testutil.Must(t, err, "own connection")
	defer own.Close()
	ownPeer, err := ln.Accept()
	testutil.Must(t, err, "accept own connection")
	defer ownPeer.Close()
	// Another process's connection to this one, held open.
	child := exec.Command("bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; printf x >&3; sleep 30", port))
	testutil.Must(t, child.Start(), "start child")
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	theirs, err := ln.Accept()
	testutil.Must(t, err, "accept the child's connection")
	defer theirs.Close()
	if _, err := io.ReadFull(theirs, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}

	d, err := Open(Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	testutil.Must(t, err, "open")
	defer d.Close()
	w, err := d.WalkTCP()
	testutil.Must(t, err, "walk")
	if w.Namespaces < 1 {
		t.Fatalf("walked %+v", w)
	}
	socks := socketsOnPort(t, d, port)
	if len(socks) != 1 {
		t.Fatalf("tracked %d sockets on port %d, want only the child's: %+v", len(socks), port, socks)
	}
	s := socks[0]
	if !s.Adopted || !s.Established || s.Role != flow.RoleClient || s.Remote.Port() != port || s.BytesSent != 0 || s.SegsOut != 0 {
		t.Errorf("child's socket %+v, want adopted, established, client, counters from zero", s)
	}
}

// A --cgroup-root that is not a cgroup2 mount is refused by name, before
// the kernel's "bad file descriptor" at attach.
func TestOpenRefusesANonCgroup2Root(t *testing.T) {
	testutil.RequirePrivileged(t)
	dir := t.TempDir()
	_, err := Open(Config{CgroupMount: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "is not a cgroup2 mount") {
		t.Errorf("Open with %s as the cgroup root: %v, want it named not a cgroup2 mount", dir, err)
	}
}

// The agent's own connections are never tracked, so none leaves tcp_socks
// without an end event (which the agent would count as a socket vanished):
// neither one accepted on a listener the agent opened before its programs
// were attached (flowlens up opens its API first; the walk learns the
// listener), nor one it dials itself. The kernel sees both handshakes
// before the agent's first I/O on them says whose they are.
func TestOwnConnectionsAreNeverTracked(t *testing.T) {
	testutil.RequirePrivileged(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	testutil.Must(t, err, "listen")
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	d, err := Open(Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	testutil.Must(t, err, "open")
	defer d.Close()
	_, err = d.WalkTCP()
	testutil.Must(t, err, "walk")

	const conns = 3
	for range conns {
		client, err := net.Dial("tcp4", ln.Addr().String())
		testutil.Must(t, err, "dial own listener")
		server, err := ln.Accept()
		testutil.Must(t, err, "accept")
		if socks := socketsOnPort(t, d, port); len(socks) != 0 {
			t.Errorf("before any I/O: tracked %d sockets on port %d, want none: %+v", len(socks), port, socks)
		}
		_, err = client.Write([]byte("x"))
		testutil.Must(t, err, "write")
		_, err = io.ReadFull(server, make([]byte, 1))
		testutil.Must(t, err, "read")
		client.Close()
		server.Close()
	}
	if socks := socketsOnPort(t, d, port); len(socks) != 0 {
		t.Errorf("after closing: tracked %d sockets on port %d, want none: %+v", len(socks), port, socks)
	}
	var ends []flow.TCPEnd
	for {
		ev, err := d.ReadEnd(time.Now())
		if errors.Is(err, ErrTimeout) {
			break
		}
		testutil.Must(t, err, "read end events")
		if ev.Socket.Local.Port() == port || ev.Socket.Remote.Port() == port {
			ends = append(ends, ev)
		}
	}
	if len(ends) != 0 {
		t.Errorf("%d end events on port %d, want none: %+v", len(ends), port, ends)
	}
}

// readOne accepts one connection on ln and sends how many bytes it read
// before the peer closed it (-1: accept failed).
func readOne(ln net.Listener) <-chan int64 {
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		got <- n
	}()
	return got
}

// openWith opens the data path as the agent does, its cgroup programs on
// the host's cgroup2 mount; it is closed when the test ends.
func openWith(t *testing.T, cfg Config) *Datapath {
	testutil.RequirePrivileged(t)
	mount, err := cgroup.ReadMount()
	if err != nil {
		t.Fatal(err)
	}
	cfg.CgroupMount = mount.Dir
	d, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// The end-event ring grows with the sockets tracked, by powers of two,
// never under 2 MiB.
func TestRingBytesFor(t *testing.T) {
	for _, c := range []struct{ sockets, want int }{
		{0, 2 << 20}, {65536, 2 << 20}, {131072, 2 << 20}, {131073, 4 << 20},
		{262144, 4 << 20}, {262145, 8 << 20}, {524288, 8 << 20}, {2_065_536, 32 << 20},
	} {
		if got := ringBytesFor(c.sockets); got != c.want {
			t.Errorf("ringBytesFor(%d) = %d, want %d", c.sockets, got, c.want)
		}
	}
}
