package datapath

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
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
	testutil.RequirePrivileged(t)
	mount, err := cgroup.ReadMount()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Open(Config{CgroupMount: mount.Dir}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
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
