package datapath

import (
	"net"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/testutil"
)

// The empty programs sit on exactly the hooks the agent attaches its
// programs to (its iterators and uprobes aside), they run, and they let
// every packet, socket and connect through: a wrong verdict on the host's
// cgroup root would cut this test's own loopback traffic.
func TestAttachEmptyMirrorsTheAgentsHooksAndPassesTraffic(t *testing.T) {
	testutil.RequirePrivileged(t)
	mount, err := cgroup.ReadMount()
	if err != nil {
		t.Fatal(err)
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF stats: %v", err)
	}
	defer stats.Close()
	e, err := AttachEmpty(mount.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	d := openWith(t, Config{})
	// The agent links every attached hook but its iterators (run on
	// demand) and uprobes (linked per TLS library by tlsprobe).
	if len(e.links) != len(d.links) {
		t.Errorf("%d empty programs linked, the agent links %d", len(e.links), len(d.links))
	}
	want := map[string]bool{}
	for _, h := range d.Hooks() {
		if p := d.coll.Programs[h.Program]; h.Attached && h.attach != ebpf.AttachTraceIter && p.Type() != ebpf.Kprobe {
			want[h.Program] = true
		}
	}
	got := map[string]bool{}
	for _, h := range e.Attached {
		got[h.Program] = true
	}
	for p := range want {
		if !got[p] {
			t.Errorf("agent hook %s has no empty program", p)
		}
	}
	for p := range got {
		if !want[p] {
			t.Errorf("empty program on %s, where the agent attaches nothing", p)
		}
	}
	d.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	read := readOne(ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("connect through the empty hooks: %v", err)
	}
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := <-read; n != 1000 {
		t.Fatalf("server read %d bytes through the empty hooks, want 1000", n)
	}

	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	uc, err := net.Dial("udp", u.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if _, err := uc.Write([]byte("datagram")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _, err := u.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "datagram" {
		t.Fatalf("UDP through the empty hooks: %q, %v", buf[:n], err)
	}

	// Each program on this test's path ran: the hooks are live, not only attached.
	for i, p := range e.progs {
		name := e.Attached[i].Program
		switch name {
		case "on_set_state", "on_send", "on_recv", "udp_egress", "udp_ingress", "udp_sock_create", "udp_connect4":
		default:
			continue
		}
		st, err := p.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.RunCount == 0 {
			t.Errorf("empty %s never ran", name)
		}
	}
}

// The iterators are the programs the agent runs inside its own reads.
func TestIterators(t *testing.T) {
	got, err := Iterators()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"read_listeners", "read_touched", "read_udp", "walk_tcp"}; !slices.Equal(got, want) {
		t.Fatalf("iterators %v, want %v", got, want)
	}
}
