package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/test/peer/result"
)

// The flood's limits: small enough that a test can exceed them for sure.
const (
	floodMapCapacity = 512     // --max-tcp-sockets
	floodRingBytes   = 1 << 16 // --ring-buffer-bytes: a power of two and a page multiple
	// floodFlowBuffer keeps every record of the run in the API ring (about
	// two per flood connection, client and server, plus a second one for a
	// connection that spans an interval boundary), so that one read sees all
	// of them; the test checks the ring did not wrap before relying on it.
	floodFlowBuffer = 1 << 19
	floodCount      = 100_000 // connections of the flood
	floodBytes      = 100     // bytes each flood connection sends
	// floodHeld connections (2*floodHeld sockets, both ends on this host)
	// are held open at once during the flood: more sockets than the kernel
	// map holds.
	floodHeld = 400
)

// floodLost sums flowlens_agent_lost_total over every stage and reason, and
// returns the series one by one for the log.
func floodLost(m map[string]float64) (float64, map[string]float64) {
	var total float64
	per := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, "flowlens_agent_lost_total{") {
			total += v
			per[strings.TrimPrefix(k, "flowlens_agent_lost_total")] = v
		}
	}
	return total, per
}

// floodPeakRSS reads a process's peak resident set (VmHWM) from /proc.
func floodPeakRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err.Error()
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// floodHold opens n loopback connections from this process to itself and
// returns them (both ends) once every one is accepted, i.e. established on
// both sides, with the port they go to; closing them is the caller's.
func floodHold(t *testing.T, n int) ([]net.Conn, uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testutil.Must(t, err, "listen for held connections")
	defer ln.Close()
	accepted := make(chan net.Conn, n)
	acceptErr := make(chan error, 1)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()
	conns := make([]net.Conn, 0, 2*n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	d := net.Dialer{Timeout: 10 * time.Second}
	for range n {
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("held connection %d of %d: %v", len(conns)+1, n, err)
		}
		conns = append(conns, c)
	}
	for range n {
		select {
		case c := <-accepted:
			conns = append(conns, c)
		case err := <-acceptErr:
			t.Fatalf("accept held connection: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatalf("held connections not accepted within 30s")
		}
	}
	return conns, uint16(ln.Addr().(*net.TCPAddr).Port)
}

// A flood of 100,000 short connections against an agent with small limits:
// the kernel map is driven past its capacity for sure, and the agent keeps
// running, keeps every table within its bound, accounts every connection as
// either counted or lost, and counts exactly again once the flood is over.
func TestFloodStaysWithinLimits(t *testing.T) {
	testutil.RequirePrivileged(t)

	// The whole flood comes from this test's cgroup: without a per-cgroup
	// share it drives the map itself past capacity (the shares have their
	// own test, TestNoisyNeighbourCannotBlindTheNode).
	cmd, addr, err := startAgent("--max-tcp-sockets", strconv.Itoa(floodMapCapacity), "--max-tcp-sockets-per-cgroup=-1",
		"--ring-buffer-bytes", strconv.Itoa(floodRingBytes), "--flow-buffer", strconv.Itoa(floodFlowBuffer))
	testutil.Must(t, err, "start the flood agent")
	agentPID := cmd.Process.Pid
	stopped := false
	t.Cleanup(func() {
		if stopped {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("flood agent exited with %v on SIGTERM", err)
		}
	})
	a := api(addr)

	p := randomPair(t, false)
	// The clients close first and keep TIME_WAIT sockets for a minute: the
	// 28,232 ports of the default range would run out before 100,000
	// connections. A wider range and reuse of TIME_WAIT ports older than a
	// second (per namespace) let the flood make every connection.
	p.B.Exec(t, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65535")
	p.B.Exec(t, "sysctl", "-q", "-w", "net.ipv4.tcp_tw_reuse=1")
	floodAddr := netip.AddrPortFrom(p.AddrA, 8080)
	afterAddr := netip.AddrPortFrom(p.AddrA, 8081)
	floodServer := startServer(t, p.A, "tcp-serve", floodAddr)
	afterServer := startServer(t, p.A, "tcp-serve", afterAddr)

	before := a.metrics(t)
	if c := before[`flowlens_datapath_map_capacity{map="tcp_socks"}`]; c != floodMapCapacity {
		t.Fatalf("tcp_socks capacity %v, want %d (--max-tcp-sockets)", c, floodMapCapacity)
	}
	lostBefore, _ := floodLost(before)
	mapFullBefore := before[`flowlens_agent_lost_total{reason="tcp_map_full",stage="kernel"}`]

	// The flood, bounded in count and time, in the background.
	flood := p.B.Command(peerBin, "tcp-connect", "-addr", floodAddr.String(), "-count", strconv.Itoa(floodCount),
		"-concurrency", "16", "-bytes", strconv.Itoa(floodBytes), "-duration", "75s")
	var floodOut bytes.Buffer
	flood.Stdout, flood.Stderr = &floodOut, os.Stderr
	testutil.Must(t, flood.Start(), "start the flood")
	floodDone := make(chan error, 1)
	go func() { floodDone <- flood.Wait() }()
	t.Cleanup(func() {
		if flood.ProcessState == nil {
			_ = flood.Process.Kill()
			<-floodDone
		}
	})

	// Sample the agent's bounds every 500 ms while the flood runs. About
	// 1.5 s in, hold floodHeld connections open for about 3 s: with both
	// ends on this host that is 2*floodHeld sockets alive at once, more than
	// the map can hold, whatever else runs.
	var (
		samples, peakMap, peakTable int
		mapWhileHeld                float64
		held                        []net.Conn
		heldPort                    uint16
		heldDone                    bool
		floodErr                    error
	)
	const tableBound = 2 * floodMapCapacity
	sample := func() map[string]float64 {
		m := a.metrics(t)
		samples++
		entries := m[`flowlens_datapath_map_entries{map="tcp_socks"}`]
		capacity := m[`flowlens_datapath_map_capacity{map="tcp_socks"}`]
		table := m[`flowlens_agent_table_entries{kind="tcp"}`]
		peakMap, peakTable = max(peakMap, int(entries)), max(peakTable, int(table))
		// The kernel map is a hash map of fixed size; a read of it while
		// sockets come and go can see one that left and the one that took
		// its place (seen: 513 of 512 under the full suite), never more
		// than those replaced during the read.
		if entries > capacity*1.05 {
			t.Errorf("sample %d: tcp_socks holds %v entries, capacity %v", samples, entries, capacity)
		}
		// The user-space table adds a socket only from a map read and
		// drops it once two reads in a row miss it (or its end event
		// arrives): it never holds more than the last two reads, each at
		// most the map's capacity. (Its own limit, 1<<17, is far above.)
		if table > tableBound {
			t.Errorf("sample %d: table holds %v TCP sockets, bound %d (two map reads)", samples, table, tableBound)
		}
		return m
	}
	release := func() {
		for _, c := range held {
			c.Close()
		}
		held, heldDone = nil, true
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	holdAt, releaseAt := 3, 9 // in samples
sampling:
	for {
		select {
		case floodErr = <-floodDone:
			break sampling
		case <-tick.C:
		}
		sample()
		switch {
		case samples == holdAt:
			held, heldPort = floodHold(t, floodHeld)
			// Read the map only once an interval has passed with every
			// held socket open.
			time.Sleep(1200 * time.Millisecond)
			mapWhileHeld = sample()[`flowlens_datapath_map_entries{map="tcp_socks"}`]
		case samples >= releaseAt && !heldDone:
			release()
		}
	}
	if heldPort == 0 {
		// The flood ended before the hold: overflow the map now.
		held, heldPort = floodHold(t, floodHeld)
		time.Sleep(1200 * time.Millisecond)
		mapWhileHeld = sample()[`flowlens_datapath_map_entries{map="tcp_socks"}`]
	}
	if !heldDone {
		release()
	}
	if floodErr != nil {
		t.Fatalf("flood: %v\n%s", floodErr, floodOut.String())
	}
	rssAfterFlood := floodPeakRSS(agentPID)
	var made result.Connect
	testutil.Must(t, json.Unmarshal(floodOut.Bytes(), &made), "decode the flood's result")
	t.Logf("flood: %+v", made)
	if made.OK == 0 {
		t.Fatalf("the flood made no connection: %+v", made)
	}

	// After the flood: exactly 10 more connections are counted exactly,
	// on both sides. The end events of their client sockets enter the
	// kernel ring buffer after every flood client socket's (each was
	// destroyed before the flood's process exited), and the agent consumes
	// it in order: once they are counted, so is everything of the flood's
	// clients. The flood's server side is read once it stopped changing.
	const after = 10
	var ares result.Connect
	testutil.Output(t, p.B.Command(peerBin, "tcp-connect", "-addr", afterAddr.String(), "-count", strconv.Itoa(after),
		"-bytes", strconv.Itoa(floodBytes)), &ares)
	if ares.OK != after {
		t.Fatalf("follow-up connections: %+v, want %d ok", ares, after)
	}
	done := func(s totals) bool { return s.opened >= after && s.closed >= after }
	for side, q := range map[string]string{
		"client": fmt.Sprintf("observer=client&from-netns=%d&to-ip=%s&to-port=%d", p.B.Inode, p.AddrA, afterAddr.Port()),
		"server": fmt.Sprintf("observer=server&to-netns=%d&to-ip=%s&to-port=%d", p.A.Inode, p.AddrA, afterAddr.Port()),
	} {
		s := sum(a.settled(t, q, done))
		if s.opened != after || s.closed != after || s.bytesToDst != after*floodBytes ||
			s.refused+s.timedOut+s.failedOther != 0 {
			t.Errorf("follow-up after the flood, %s side: %+v, want %d opened and closed, %d bytes, no failure",
				side, s, after, after*floodBytes)
		}
	}
	var served, afterServed result.Serve
	floodServer.Stop(t, &served)
	afterServer.Stop(t, &afterServed)

	// Everything the flood was counted for, on each side, and what the
	// held connections were counted for (both sides, one port). The
	// queries name the address, random per run, as well as the namespace:
	// a namespace's inode is reused once it is deleted, and other tests on
	// this host may have used ours (and port 8080) since the agent started.
	clientQ := fmt.Sprintf("observer=client&from-netns=%d&to-ip=%s&to-port=%d", p.B.Inode, p.AddrA, floodAddr.Port())
	serverQ := fmt.Sprintf("observer=server&to-netns=%d&to-ip=%s&to-port=%d", p.A.Inode, p.AddrA, floodAddr.Port())
	countedClient := sum(a.flows(t, clientQ))
	countedServer := sum(a.settled(t, serverQ, func(totals) bool { return true }))
	heldRecs := sum(a.flows(t, fmt.Sprintf("to-ip=127.0.0.1&to-port=%d", heldPort)))
	end := sample()
	if w, c := end["flowlens_flow_ring_written_total"], end["flowlens_flow_ring_capacity"]; w > c {
		t.Fatalf("the API ring wrapped (%v records written, capacity %v): the reads above missed records; raise floodFlowBuffer", w, c)
	}
	lostAfter, perReason := floodLost(end)
	lost := lostAfter - lostBefore
	mapFull := end[`flowlens_agent_lost_total{reason="tcp_map_full",stage="kernel"}`] - mapFullBefore

	var reasons []string
	_, perBefore := floodLost(before)
	for k, v := range perReason {
		if d := v - perBefore[k]; d != 0 {
			reasons = append(reasons, fmt.Sprintf("%s +%v", k, d))
		}
	}
	sort.Strings(reasons)
	t.Logf("made %d (server accepted %d); counted: client side %d opened %d closed %d bytes, server side %d opened %d closed %d bytes",
		made.OK, served.Connections, countedClient.opened, countedClient.closed, countedClient.bytesToDst,
		countedServer.opened, countedServer.closed, countedServer.bytesToDst)
	t.Logf("lost %v: %s", lost, strings.Join(reasons, ", "))
	t.Logf("held: %d sockets, %d counted opened, %d closed", 2*floodHeld, heldRecs.opened, heldRecs.closed)
	t.Logf("%d samples: peak tcp_socks entries %d of %d (%v while %d connections were held), peak table entries %d",
		samples, peakMap, floodMapCapacity, mapWhileHeld, floodHeld, peakTable)
	t.Logf("flood agent peak RSS (VmHWM): %s after the flood, %s after reading its records back; %v records written to the API ring",
		rssAfterFlood, floodPeakRSS(agentPID), end["flowlens_flow_ring_written_total"])

	// The map was overflowed for sure. A held socket that is tracked stays
	// in the map until it is destroyed, and none is tracked later (no I/O
	// on them, closing tracks nothing): the held sockets ever tracked were
	// all in the map at once, so there are at most floodMapCapacity of
	// them (and at most that many counted as opened). Each of the others
	// failed at least one insert.
	if heldRecs.opened > floodMapCapacity {
		t.Errorf("%d held sockets counted as opened, more than the map holds (%d)", heldRecs.opened, floodMapCapacity)
	}
	if want := 2*floodHeld - floodMapCapacity; mapFull < float64(want) {
		t.Errorf("tcp_map_full rose by %v, want at least %d (%d held sockets, map capacity %d)", mapFull, want, 2*floodHeld, floodMapCapacity)
	}
	// Each held socket not counted as opened was not tracked (a failed
	// insert) or lost its end event before any map read saw it (a full
	// ring buffer): either way it added at least one to lost.
	uncountedHeld := 2*floodHeld - int(heldRecs.opened)

	// Completeness. Each socket of the flood, client or server, is counted
	// once (opened, under its own namespace), or was lost somewhere the
	// agent counts it: it did not fit the map, its end event did not fit
	// the ring buffer, ... Each such socket adds at least one to lost, and
	// so does each uncounted held socket; losses of other sockets on the
	// host only add more, never to these namespaces' counts. A connection
	// the client gave up on (timed out, failed) may still have been
	// established in the kernel: it may be counted without being made.
	if countedClient.opened == 0 || countedServer.opened == 0 {
		t.Errorf("the flood was not counted: %d client and %d server sockets", countedClient.opened, countedServer.opened)
	}
	if int64(countedClient.opened) > made.OK+made.TimedOut+made.Failed {
		t.Errorf("counted %d client connections, more than the %d the flood made (%d timed out, %d failed)",
			countedClient.opened, made.OK, made.TimedOut, made.Failed)
	}
	if int64(countedServer.opened) > served.Connections {
		t.Errorf("counted %d server connections, more than the %d the server accepted", countedServer.opened, served.Connections)
	}
	if float64(countedClient.opened)+lost < float64(made.OK) {
		t.Errorf("counted %d + lost %v < made %d: client connections vanished without being counted as lost",
			countedClient.opened, lost, made.OK)
	}
	counted := int64(countedClient.opened) + int64(countedServer.opened)
	if want := made.OK + served.Connections + int64(uncountedHeld); float64(counted)+lost < float64(want) {
		t.Errorf("counted %d sockets + lost %v < %d flood sockets (%d client, %d server) + %d uncounted held ones",
			counted, lost, want, made.OK, served.Connections, uncountedHeld)
	}

	// Still alive and ready.
	resp, err := http.Get("http://" + addr + "/readyz")
	testutil.Must(t, err, "get /readyz after the flood")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz after the flood: %s", resp.Status)
	}

	stopped = true
	testutil.Must(t, cmd.Process.Signal(syscall.SIGTERM), "stop the flood agent")
	if err := cmd.Wait(); err != nil {
		t.Errorf("flood agent exited with %v on SIGTERM", err)
	}
}
