package datapath

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
)

// touchedOnPort reads the changed TCP sockets with port at either end.
func touchedOnPort(t *testing.T, d *Datapath, port uint16) []flow.TCPSocket {
	t.Helper()
	all, err := d.TouchedTCP(nil)
	testutil.Must(t, err, "read touched sockets")
	return onPort(all, port)
}

// A connection is read as touched in the interval it changed, once however
// often it changed, and not while it is idle; its state then is the whole
// of it, as a read of the whole map gives it.
func TestTouchedReadsChangedSocketsOnce(t *testing.T) {
	testutil.RequirePrivileged(t)
	d, err := Open(Config{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	testutil.Must(t, err, "open")
	defer d.Close()
	if !d.CanReadTouched() {
		t.Fatal("this kernel has map element iterators: the touched sets must be readable")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	testutil.Must(t, err, "listen")
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	// Another process's connection (this one's are the agent's, not
	// tracked), which writes 3 bytes for each line it reads.
	child := exec.Command("bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; while read l; do printf abc >&3; done", port))
	stdin, err := child.StdinPipe()
	testutil.Must(t, err, "child stdin")
	testutil.Must(t, child.Start(), "start child")
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	peer, err := ln.Accept()
	testutil.Must(t, err, "accept")
	defer peer.Close()
	r := bufio.NewReader(peer)
	send := func(times int) {
		t.Helper()
		for range times {
			_, err := io.WriteString(stdin, "go\n")
			testutil.Must(t, err, "tell the child")
			_, err = io.ReadFull(r, make([]byte, 3))
			testutil.Must(t, err, "read from the child")
		}
	}

	// Established: touched once, with nothing sent yet.
	got := touchedOnPort(t, d, port)
	if len(got) != 1 || !got[0].Established || got[0].BytesSent != 0 || got[0].Role != flow.RoleClient {
		t.Fatalf("after the connect: %+v, want the child's socket once, established, 0 bytes sent", got)
	}
	cookie := got[0].Cookie
	if got := touchedOnPort(t, d, port); len(got) != 0 {
		t.Fatalf("idle: %+v, want nothing", got)
	}
	send(4)
	got = touchedOnPort(t, d, port)
	if len(got) != 1 || got[0].Cookie != cookie || got[0].BytesSent != 12 {
		t.Fatalf("after 4 writes: %+v, want cookie %d once with 12 bytes sent", got, cookie)
	}
	whole := socketsOnPort(t, d, port)
	if len(whole) != 1 || whole[0].BytesSent != 12 || whole[0].SegsOut != got[0].SegsOut {
		t.Fatalf("whole map: %+v, want what the touched read gave: %+v", whole, got)
	}
	if got := touchedOnPort(t, d, port); len(got) != 0 {
		t.Fatalf("idle again: %+v, want nothing", got)
	}
	send(1)
	if got := touchedOnPort(t, d, port); len(got) != 1 || got[0].BytesSent != 15 {
		t.Fatalf("after one more write: %+v, want 15 bytes sent", got)
	}
	kc, err := d.Counters()
	testutil.Must(t, err, "counters")
	if kc.TouchedFull != 0 || kc.TCPEntries() < 1 {
		t.Errorf("counters %+v: want no lost mark and the child's socket tracked", kc)
	}
}

// BenchmarkTouchedTCP is the kernel side of one interval's read with N
// sockets tracked, all of them changed: the iterator over the touched set
// (lookup, copy, delete) and the decoding, as the agent runs it. The map
// holds made-up sockets, put there by the benchmark.
func BenchmarkTouchedTCP(b *testing.B) {
	testutil.RequirePrivileged(b)
	const n = 100_000
	// Room beside them for the host's own sockets, tracked meanwhile.
	d, err := Open(Config{TCPSockets: n + 4096, TCPPerCgroup: -1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	testutil.Must(b, err, "open")
	defer d.Close()
	keys := make([]uint64, n)
	vals := make([]flowlensTcpState, n)
	marks := make([]uint8, n)
	for i := range keys {
		keys[i] = uint64(0xffff_8880_0000_0000) + uint64(i)*4096
		v := &vals[i]
		v.Tuple.Family, v.Tuple.LocalPort, v.Tuple.RemotePort = afInet, uint16(i), 8080
		v.Role, v.Established, v.Cookie, v.BytesSent = 1, 1, uint64(i+1), 1000
	}
	_, err = d.maps.TcpSocks.BatchUpdate(keys, vals, nil)
	testutil.Must(b, err, "fill tcp_socks")
	var (
		socks []flow.TCPSocket
		cpu   time.Duration // the process's, user and system: the iterator runs in its read()
	)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		set := d.maps.Touched0
		if d.touched.gen&1 == 1 {
			set = d.maps.Touched1
		}
		_, err := set.BatchUpdate(keys, marks, nil)
		testutil.Must(b, err, "mark every socket")
		before := processCPU(b)
		b.StartTimer()
		socks, err = d.TouchedTCP(socks[:0])
		b.StopTimer()
		cpu += processCPU(b) - before
		testutil.Must(b, err, "read touched")
		if len(socks) < n { // and the host's own that changed meanwhile
			b.Fatalf("read %d sockets, want %d", len(socks), n)
		}
	}
	// Wall time includes the wait for running programs (an RCU grace
	// period), which costs no CPU.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "wall-ns/socket")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/n, "cpu-ns/socket")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1e6, "cpu-ms/op")

	// The whole-map read of the same sockets, for comparison: what every
	// interval cost before, and what a whole read costs now.
	cpu = 0
	var whole time.Duration
	for range b.N {
		before := processCPU(b)
		start := time.Now()
		socks, err = d.TCPSockets(socks[:0])
		whole += time.Since(start)
		cpu += processCPU(b) - before
		testutil.Must(b, err, "read tcp_socks")
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/n, "whole-cpu-ns/socket")
	b.ReportMetric(float64(whole.Nanoseconds())/float64(b.N)/n, "whole-wall-ns/socket")
}

func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	testutil.Must(b, unix.Getrusage(unix.RUSAGE_SELF, &ru), "getrusage")
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
