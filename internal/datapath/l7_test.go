package datapath

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
)

// The traffic comes from a child process: the test's own sockets are the
// agent's as far as the kernel side knows, and never sampled.
func TestMain(m *testing.M) {
	switch os.Getenv("FLOWLENS_L7_CHILD") {
	case "http":
		os.Exit(childHTTP(0))
	case "http-slow":
		os.Exit(childHTTP(400 * time.Millisecond))
	case "dns":
		os.Exit(childDNS())
	}
	os.Exit(m.Run())
}

const childRequests = 5

// childHTTP serves and makes childRequests keep-alive requests on loopback,
// pause apart.
func childHTTP(pause time.Duration) int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 1
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	for i := range childRequests {
		time.Sleep(pause)
		resp, err := c.Get(fmt.Sprintf("http://%s/items/%d", ln.Addr(), i))
		if err != nil {
			return 2
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return 0
}

// dnsQuery is a query for example.test A with id 0x1234.
var dnsQuery = []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
	7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1}

// childDNS sends one DNS-shaped datagram to a socket of its own and one
// that is not DNS.
func childDNS() int {
	srv, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 1
	}
	c, err := net.Dial("udp4", srv.LocalAddr().String())
	if err != nil {
		return 1
	}
	c.Write(dnsQuery)
	c.Write([]byte("not dns at all, no"))
	buf := make([]byte, 512)
	for range 2 {
		srv.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := srv.ReadFrom(buf); err != nil {
			return 2
		}
	}
	return 0
}

func runChild(t *testing.T, mode string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FLOWLENS_L7_CHILD="+mode)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child %s: %v %s", mode, err, out)
	}
}

// readL7 collects the samples that arrive within a short while.
func readL7(t *testing.T, d *Datapath, keep func(*L7Sample) bool) []L7Sample {
	t.Helper()
	var got []L7Sample
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		s, err := d.ReadL7(time.Now().Add(200 * time.Millisecond))
		if errors.Is(err, ErrTimeout) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if keep(&s) {
			s.Data = bytes.Clone(s.Data)
			got = append(got, s)
		}
	}
	return got
}

func openL7(t *testing.T) *Datapath {
	return openL7With(t, Config{})
}

func openL7With(t *testing.T, cfg Config) *Datapath {
	d := openWith(t, cfg)
	if !d.L7On() {
		t.Fatal("L7 capture is off by default")
	}
	return d
}

// Every request and response of a keep-alive exchange is sampled on both
// sockets, from the system call's own buffer, with the socket's role. A
// message may come in two reads (Go's server reads one byte ahead while a
// handler runs): the streams, joined, hold each message once.
func TestL7SamplesEachPlaintextMessageOnBothSides(t *testing.T) {
	d := openL7(t)
	runChild(t, "http")
	got := readL7(t, d, func(s *L7Sample) bool { return s.Protocol == flow.TCP && s.Local.Addr().IsLoopback() })
	type side struct {
		role flow.Role
		send bool
	}
	streams := map[side][]byte{}
	for _, s := range got {
		if s.Source != L7Syscall || s.Hint != flow.HTTP || s.Len != len(s.Data) || s.Gap {
			t.Errorf("sample %+v: want a whole syscall sample hinted http, no gap", s)
		}
		k := side{s.Role, s.Send}
		streams[k] = append(streams[k], s.Data...)
	}
	for k, line := range map[side]string{
		{flow.RoleClient, true}: "GET /items/", {flow.RoleServer, false}: "GET /items/",
		{flow.RoleServer, true}: "HTTP/1.1 200 OK", {flow.RoleClient, false}: "HTTP/1.1 200 OK",
	} {
		if n := bytes.Count(streams[k], []byte(line)); n != childRequests {
			t.Errorf("%+v: %q %d times, want %d", k, line, n, childRequests)
		}
	}
}

// A DNS-shaped datagram is sampled as it leaves and as it arrives; one
// that is not DNS is not.
func TestL7SamplesDNSDatagramsOnly(t *testing.T) {
	d := openL7(t)
	runChild(t, "dns")
	got := readL7(t, d, func(s *L7Sample) bool { return s.Protocol == flow.UDP && s.Local.Addr().IsLoopback() })
	sends, recvs := 0, 0
	for _, s := range got {
		if !bytes.Equal(s.Data, dnsQuery) {
			continue
		}
		if s.Source != L7UDP || s.Hint != flow.DNS || s.Len != len(dnsQuery) {
			t.Errorf("sample %+v: want a whole UDP sample hinted dns", s)
		}
		if s.Send {
			sends++
		} else {
			recvs++
		}
	}
	if sends != 1 || recvs != 1 || len(got) != 2 {
		t.Errorf("%d sends, %d receives of the query in %d samples; want 1, 1 in 2", sends, recvs, len(got))
	}
}

// Past the per-second budget, messages are not captured but counted, and
// the next sample of the socket says there was a gap: the parser drops
// what it was matching instead of pairing the wrong messages.
func TestL7BudgetSamplesAndSaysSo(t *testing.T) {
	testutil.RequirePrivileged(t)
	mount, err := cgroup.ReadMount()
	if err != nil {
		t.Fatal(err)
	}
	// Room for about one sample per CPU and second, and requests spread
	// over two seconds: some messages are refused, later ones taken.
	d, err := Open(Config{CgroupMount: mount.Dir, L7BudgetBytes: 400 * runtimeCPUs(t)},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	before, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	runChild(t, "http-slow")
	got := readL7(t, d, func(s *L7Sample) bool { return s.Protocol == flow.TCP && s.Local.Addr().IsLoopback() })
	after, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	gaps := 0
	for _, s := range got {
		if s.Gap {
			gaps++
		}
	}
	over := after.L7OverBudget - before.L7OverBudget
	// 5 requests and 5 responses, each written once and read once.
	if over == 0 || uint64(len(got))+over < 4*childRequests {
		t.Errorf("%d samples and %d over budget for at least %d messages", len(got), over, 4*childRequests)
	}
	if gaps == 0 {
		t.Errorf("no sample reported the gap the budget left (%d samples, %d over budget)", len(got), over)
	}
}

func runtimeCPUs(t *testing.T) int {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// WaitL7 returns once the kernel wakes the ring's readers (a quarter full:
// 4 KiB of this 16 KiB ring, fewer bytes than the child's 20 samples
// make), NextL7 then empties the ring without waiting, and Close ends a
// WaitL7 with ringbuf.ErrClosed.
func TestL7WaitWakesAndNextDrains(t *testing.T) {
	d := openL7With(t, Config{L7RingBytes: 16 << 10})
	woke := make(chan error, 1)
	go func() { woke <- d.WaitL7() }()
	runChild(t, "http")
	select {
	case err := <-woke:
		if err != nil {
			t.Fatalf("WaitL7: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitL7 not woken by a ring past its wakeup mark")
	}
	// Every record is whole by now; the ring holds at most 16 KiB of them.
	n := 0
	for ; n < 1000; n++ {
		s, ok, err := d.NextL7()
		if err != nil {
			t.Fatalf("NextL7: %v", err)
		}
		if !ok {
			break
		}
		if len(s.Data) > s.Len {
			t.Fatalf("sample of %d bytes from a %d-byte call", len(s.Data), s.Len)
		}
	}
	if n == 0 {
		t.Error("NextL7 read nothing from a ring that woke its reader")
	}
	if _, ok, err := d.NextL7(); ok || err != nil {
		t.Errorf("NextL7 after the ring emptied: %v, %v; want nothing", ok, err)
	}
	go func() { woke <- d.WaitL7() }()
	d.Close()
	select {
	case err := <-woke:
		if !errors.Is(err, ringbuf.ErrClosed) {
			t.Errorf("WaitL7 after Close: %v, want ringbuf.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("WaitL7 not ended by Close")
	}
}
