package datapath

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
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
		os.Exit(childHTTP(0, false))
	case "http-slow":
		os.Exit(childHTTP(400*time.Millisecond, false))
	case "http-opened-first":
		os.Exit(childHTTP(0, true))
	case "dns":
		os.Exit(childDNS())
	case "self-connect":
		os.Exit(childSelfConnect())
	}
	os.Exit(m.Run())
}

const childRequests = 5

// childHTTP serves and makes childRequests keep-alive requests on loopback,
// pause apart. openFirst: the connection is opened (one request, not to
// /items/) before it says "ready" and waits for a line on its stdin.
func childHTTP(pause time.Duration, openFirst bool) int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 1
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	if openFirst {
		resp, err := c.Get(fmt.Sprintf("http://%s/open", ln.Addr()))
		if err != nil {
			return 2
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Println("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return 3
		}
	}
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

func childCmd(mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FLOWLENS_L7_CHILD="+mode)
	return cmd
}

// runChild runs a child to its end and returns its pid, which its samples
// carry (the test runs in the initial pid namespace).
func runChild(t *testing.T, mode string) uint32 {
	t.Helper()
	cmd := childCmd(mode)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child %s: %v %s", mode, err, out)
	}
	return uint32(cmd.Process.Pid)
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

type side struct {
	role flow.Role
	send bool
}

// httpStreams joins the samples of each side and way: a message may come
// in two reads (Go's server reads one byte ahead while a handler runs),
// the streams hold each message once. Each sample must be a whole one of
// a system call, hinted HTTP, with no gap.
func httpStreams(t *testing.T, got []L7Sample) map[side][]byte {
	t.Helper()
	streams := map[side][]byte{}
	for _, s := range got {
		if s.Source != L7Syscall || s.Hint != flow.HTTP || s.Len != len(s.Data) || s.Gap {
			t.Errorf("sample %+v: want a whole syscall sample hinted http, no gap", s)
		}
		k := side{s.Role, s.Send}
		streams[k] = append(streams[k], s.Data...)
	}
	return streams
}

// countLines checks how many times each side's stream holds its line of
// the child's requests: the request on the client's sends and server's
// receives, the response on the others.
func countLines(t *testing.T, streams map[side][]byte, client, server int) {
	t.Helper()
	for k, line := range map[side]string{
		{flow.RoleClient, true}: "GET /items/", {flow.RoleServer, false}: "GET /items/",
		{flow.RoleServer, true}: "HTTP/1.1 200 OK", {flow.RoleClient, false}: "HTTP/1.1 200 OK",
	} {
		want := client
		if k.role == flow.RoleServer {
			want = server
		}
		if n := bytes.Count(streams[k], []byte(line)); n != want {
			t.Errorf("%+v: %q %d times, want %d", k, line, n, want)
		}
	}
}

// readEnds collects the ends of pid's connections that arrive within a
// short while.
func readEnds(t *testing.T, d *Datapath, pid uint32) []flow.TCPEnd {
	t.Helper()
	var ends []flow.TCPEnd
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		e, err := d.ReadEnd(time.Now().Add(200 * time.Millisecond))
		if errors.Is(err, ErrTimeout) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Socket.Owner.PID == pid {
			ends = append(ends, e)
		}
	}
	return ends
}

// A connection whose two ends are sockets of this node (loopback here) is
// sampled on its client's end only: every request and response once, each
// sample naming the server's socket, which takes none; the kernel counts
// the pair.
func TestL7SamplesALocalPairOnItsClientEnd(t *testing.T) {
	d := openL7(t)
	before, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	pid := runChild(t, "http")
	got := readL7(t, d, func(s *L7Sample) bool { return s.PID == pid })
	after, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	countLines(t, httpStreams(t, got), childRequests, 0)
	var server []flow.TCPSocket
	for _, e := range readEnds(t, d, pid) {
		if e.Socket.Role == flow.RoleServer {
			server = append(server, e.Socket)
		}
	}
	if len(server) != 1 {
		t.Fatalf("%d server ends of the child's connections, want 1: %+v", len(server), server)
	}
	for _, s := range got {
		if s.PeerCookie != server[0].Cookie || s.PeerNetns != server[0].Owner.Netns || s.Netns != s.PeerNetns {
			t.Errorf("sample of %d names peer %d in netns %d, want the server's socket %d in %d (its own %d)",
				s.Cookie, s.PeerCookie, s.PeerNetns, server[0].Cookie, server[0].Owner.Netns, s.Netns)
		}
	}
	checkStreamPlaces(t, got)
	// The counter is the node's: other pairs may have been made meanwhile.
	if after.L7Paired <= before.L7Paired {
		t.Errorf("pairs counted: %d before, %d after the child's connection", before.L7Paired, after.L7Paired)
	}
}

// checkStreamPlaces checks where the samples of one keep-alive HTTP
// client say they lie in its stream: each send ends its Len bytes after
// the one before, and each receive says the server had read exactly to
// the end of the request it answers, the send sampled before it or, when
// Early, the one sampled next.
func checkStreamPlaces(t *testing.T, got []L7Sample) {
	t.Helper()
	var sent uint32
	sends := 0
	for i, s := range got {
		switch {
		case s.Send:
			if sends > 0 && s.Seq-sent != uint32(s.Len) {
				t.Errorf("send %d ends at %d, %d after the one before, want its length %d", i, s.Seq, s.Seq-sent, s.Len)
			}
			sent = s.Seq
			sends++
		case s.Early:
			next := slices.IndexFunc(got[i:], func(n L7Sample) bool { return n.Send })
			if next < 0 || got[i+next].Seq != s.Seq {
				t.Errorf("early receive %d says %d was read, want the end of the send sampled next", i, s.Seq)
			}
		case sends == 0 || s.Seq != sent:
			t.Errorf("receive %d says %d was read, want %d, the end of the send before (%d sends)", i, s.Seq, sent, sends)
		}
	}
	if sends != childRequests {
		t.Errorf("%d sends, want %d", sends, childRequests)
	}
}

// A connection without a pair entry samples on both ends, as one whose
// client is not on this node does: here one opened before the programs
// were attached, whose server's handshake was not seen (adopted by the
// start-up walk). No sample names a peer.
func TestL7SamplesBothEndsWithoutAPair(t *testing.T) {
	testutil.RequirePrivileged(t)
	cmd := childCmd("http-opened-first")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("child said %q", line)
		}
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		err = errors.New("child not ready in 10 s")
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	d := openL7(t)
	// As the agent does: the walk learns the listener, so the accepted
	// socket is adopted as the server it is.
	if _, err := d.WalkTCP(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "go\n")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	pid := uint32(cmd.Process.Pid)
	got := readL7(t, d, func(s *L7Sample) bool { return s.PID == pid })
	countLines(t, httpStreams(t, got), childRequests, childRequests)
	for _, s := range got {
		if s.PeerCookie != 0 || s.PeerNetns != 0 {
			t.Errorf("sample %+v names a peer", s)
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
	// 5 requests and 5 responses, each written and read once by the
	// client, which samples for both ends of this loopback connection.
	if over == 0 || uint64(len(got))+over < 2*childRequests {
		t.Errorf("%d samples and %d over budget for at least %d messages", len(got), over, 2*childRequests)
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
