package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/test/peer/result"
)

// Sockets whose end flowlens does not see as it should — refused by a full
// kernel map when they opened, or tracked but their end event lost to a
// full ring buffer while the agent was stopped — are neither kept forever nor counted twice: once they
// are gone, the kernel map and the agent's table hold what they held before
// them, and every connection that was tracked counts its bytes exactly once
// on each side. The agent reads only changed sockets at most intervals; its
// whole-map reads must find the lost ones.
func TestLostEndsNeitherLeakNorCountTwice(t *testing.T) {
	testutil.RequirePrivileged(t)
	const (
		n       = 100  // connections held: 200 sockets
		mapSize = 64   // so most are refused a place in the kernel map
		before  = 1000 // bytes each client sends while held
	)
	cmd, listen, err := startAgent("--max-tcp-sockets", strconv.Itoa(mapSize), "--max-tcp-sockets-per-cgroup", "-1",
		"--ring-buffer-bytes", "4096") // the smallest ring: 17 end events
	testutil.Must(t, err, "start the agent")
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	a := api(listen)
	p := randomPair(t, false)
	addr := netip.AddrPortFrom(p.AddrA, 8091)
	server := startServer(t, p.A, "tcp-serve", addr)
	gauges := func(m map[string]float64) (kernel, table float64) {
		return m[`flowlens_datapath_map_entries{map="tcp_socks"}`], m[`flowlens_agent_table_entries{kind="tcp"}`]
	}
	base := a.metrics(t)
	baseMap, baseTable := gauges(base)
	if ours := trackedOnPort(t, mapSize, addr.Port()); ours != 0 {
		t.Fatalf("tcp_socks holds %d sockets on port %d before the connections", ours, addr.Port())
	}

	hold := p.B.Command(peerBin, "tcp-hold", "-addr", addr.String(), "-count", strconv.Itoa(n), "-before", strconv.Itoa(before))
	held, _ := holdConnections(t, hold)
	if held != n {
		t.Fatalf("held %d connections, want %d", held, n)
	}
	// Two intervals with every connection open: the tracked ones are read.
	time.Sleep(2500 * time.Millisecond)
	during := a.metrics(t)
	if ours := trackedOnPort(t, mapSize, addr.Port()); ours == 0 {
		t.Fatal("tcp_socks holds no socket of the held connections: trackedOnPort reads the wrong map")
	}
	// The holder's sockets and then the server's end while the agent is
	// stopped: more end events than the ring holds.
	testutil.Must(t, cmd.Process.Signal(syscall.SIGSTOP), "stop the agent")
	testutil.Must(t, hold.Process.Kill(), "kill tcp-hold")
	_ = hold.Wait()
	var sres result.Serve
	server.Stop(t, &sres)
	time.Sleep(time.Second) // the last FINs and their ACKs
	testutil.Must(t, cmd.Process.Signal(syscall.SIGCONT), "resume the agent")
	if sres.BytesIn != n*before {
		t.Fatalf("the server read %d bytes, want %d", sres.BytesIn, n*before)
	}

	// The agent finds the lost ends (a kernel count), reads the whole map
	// twice and lets the sockets the table knew go (vanished). Then nothing
	// of them stays in the kernel map, and the table holds no socket the
	// map does not (other sockets of the host may come and go meanwhile).
	var after map[string]float64
	delta := func(key string) float64 { return after[key] - base[key] }
	const (
		ringFull     = `flowlens_agent_lost_total{reason="ring_buffer_full",stage="kernel"}`
		mapFull      = `flowlens_agent_lost_total{reason="tcp_map_full",stage="kernel"}`
		sockVanished = `flowlens_agent_lost_total{reason="socket_vanished",stage="userspace"}`
	)
	testutil.Eventually(t, 20*time.Second, func() error {
		after = a.metrics(t)
		if delta(ringFull) == 0 || delta(sockVanished) == 0 {
			return fmt.Errorf("%v end events lost, %v sockets found vanished: want both", delta(ringFull), delta(sockVanished))
		}
		if ours := trackedOnPort(t, mapSize, addr.Port()); ours != 0 {
			return fmt.Errorf("tcp_socks holds %d sockets of the connections", ours)
		}
		if k, tb := gauges(after); tb > k {
			return fmt.Errorf("the table holds %v sockets, tcp_socks %v (%v and %v before the connections)", tb, k, baseTable, baseMap)
		}
		return nil
	})
	t.Logf("refused by the full map: %v sockets; end events lost to the full ring: %v; sockets found vanished: %v",
		delta(mapFull), delta(ringFull), delta(sockVanished))
	if delta(mapFull) == 0 {
		t.Fatalf("no socket was refused by the full map (%v entries of %d while held): the test proves nothing", during[`flowlens_datapath_map_entries{map="tcp_socks"}`], mapSize)
	}

	// Each side, per connection (by client port): the bytes of a tracked
	// one exactly once, never twice, and at most the connections held.
	for side, q := range map[string]string{
		"client": fmt.Sprintf("observer=client&from-netns=%d&to-ip=%s&to-port=%d", p.B.Inode, p.AddrA, addr.Port()),
		"server": fmt.Sprintf("observer=server&to-netns=%d&to-ip=%s&to-port=%d", p.A.Inode, p.AddrA, addr.Port()),
	} {
		perConn := map[uint16]uint64{}
		for _, r := range a.flows(t, q) {
			if r.Protocol == flow.TCP {
				perConn[r.Source.Port] += r.BytesToDst
			}
		}
		if len(perConn) == 0 || len(perConn) >= n {
			t.Errorf("%s side: %d connections counted, want some but not all %d (the map held %d sockets)", side, len(perConn), n, mapSize)
		}
		for port, b := range perConn {
			if b != before {
				t.Errorf("%s side, client port %d: %d bytes toward the server, want %d: counted once", side, port, b, before)
			}
		}
	}
}

// trackedOnPort counts the entries with port at either end in the tcp_socks
// map of maxEntries entries (a test agent's own size), as bpftool reads it:
// struct tcp_state's l4_tuple is at tcpStateTuple, and its ports follow the
// two 16-byte addresses.
func trackedOnPort(t *testing.T, maxEntries int, port uint16) int {
	// The counters every send/recv touches (48 bytes, bpf/flowlens.h) come
	// before the tuple.
	const tcpStateTuple = 48
	const ports = tcpStateTuple + 32
	t.Helper()
	out, err := exec.Command("bpftool", "-j", "map", "show").Output()
	testutil.Must(t, err, "bpftool map show")
	var maps []struct {
		ID         uint32 `json:"id"`
		Name       string `json:"name"`
		MaxEntries int    `json:"max_entries"`
	}
	testutil.Must(t, json.Unmarshal(out, &maps), "decode bpftool map show")
	id := uint32(0)
	for _, m := range maps {
		if m.Name == "tcp_socks" && m.MaxEntries == maxEntries {
			if id != 0 {
				t.Fatalf("two tcp_socks maps of %d entries: which is the test agent's?", maxEntries)
			}
			id = m.ID
		}
	}
	if id == 0 {
		t.Fatalf("no tcp_socks map of %d entries", maxEntries)
	}
	out, err = exec.Command("bpftool", "-j", "map", "dump", "id", strconv.Itoa(int(id))).Output()
	testutil.Must(t, err, "bpftool map dump")
	var entries []struct {
		Value []string `json:"value"`
	}
	testutil.Must(t, json.Unmarshal(out, &entries), "decode bpftool map dump")
	n := 0
	for _, e := range entries {
		if len(e.Value) < ports+4 {
			t.Fatalf("tcp_socks value of %d bytes", len(e.Value))
		}
		b := make([]byte, 4)
		for i := range b {
			v, err := strconv.ParseUint(e.Value[ports+i], 0, 8)
			testutil.Must(t, err, "parse bpftool byte")
			b[i] = byte(v)
		}
		if binary.LittleEndian.Uint16(b) == port || binary.LittleEndian.Uint16(b[2:]) == port {
			n++
		}
	}
	return n
}
