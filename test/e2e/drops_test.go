package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/test/peer/result"
)

// dropTotals sums the drops of records by reason.
func dropTotals(recs []flow.Record) map[string]uint64 {
	out := map[string]uint64{}
	for _, r := range recs {
		for reason, n := range r.Drops {
			out[reason] += n
		}
	}
	return out
}

// A firewall on the server drops every SYN: 20 connects that give up after
// 2.5 s. The client's records show 20 timeouts with their SYN retransmits
// (two each where the first retransmits come at 1 s intervals,
// tcp_syn_linear_timeouts; one where the second waits 2 s), and every SYN
// they sent, first or again, dropped with the netfilter reason, on the
// records whose destination is the server, though no socket on the server
// ever saw them.
func TestDropsNetfilterOnTheFailingConnects(t *testing.T) {
	testutil.RequirePrivileged(t)
	const n = 20
	p := randomPair(t, false)
	p.A.Exec(t, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "8095", "-j", "DROP")
	before := shared.metrics(t)[`flowlens_drops_total{reason="netfilter_drop"}`]
	var res result.Connect
	testutil.Output(t, p.B.Command(peerBin, "tcp-connect", "-addr", netip.AddrPortFrom(p.AddrA, 8095).String(),
		"-count", strconv.Itoa(n), "-concurrency", strconv.Itoa(n), "-timeout", "2500ms"), &res)
	if res.TimedOut != n {
		t.Fatalf("client saw %+v, want %d timed out", res, n)
	}
	q := fmt.Sprintf("observer=client&from-netns=%d&to-ip=%s&to-port=8095", p.B.Inode, p.AddrA)
	recs := shared.settled(t, q, func(s totals) bool { return s.timedOut >= n })
	var syn uint32
	for _, r := range recs {
		syn += r.SYNRetrans
		if r.Verdict != flow.VerdictTimeout || r.Destination.IP != p.AddrA || r.Destination.Port != 8095 {
			t.Errorf("record %s → %s:%d verdict %s", r.Source.IP, r.Destination.IP, r.Destination.Port, r.Verdict)
		}
	}
	s := sum(recs)
	drops := dropTotals(recs)
	// Every connect's first SYN is dropped, and its retransmitted ones as
	// far as they reach the wire: the full suite, under load, once saw 53
	// drops for 20 connects and 40 counted retransmits, the kernel's own
	// node-wide count agreeing, a retransmit racing the connect's timeout.
	if s.timedOut != n || syn < n || len(drops) != 1 || drops["netfilter_drop"] < n || drops["netfilter_drop"] > uint64(n+syn) {
		t.Errorf("%d timeouts, %d SYN retransmits, drops %v; want %d, at least %d, netfilter_drop from %d to %d (every SYN)",
			s.timedOut, syn, drops, n, n, n, n+syn)
	}
	// The same selection through observe's filters.
	if got := sum(shared.flows(t, q+"&verdict=dropped&drop-reason=netfilter")); got.timedOut != n {
		t.Errorf("verdict=dropped&drop-reason=netfilter selects %d timeouts, want %d", got.timedOut, n)
	}
	if got := shared.flows(t, q+"&drop-reason=no_socket"); len(got) != 0 {
		t.Errorf("drop-reason=no_socket selects %d records, want none", len(got))
	}
	// Node-wide, the kernel's count of netfilter drops moved by exactly
	// what these flows were given: no other namespace of the suite has a
	// firewall, and every drop found its flow.
	if after := shared.metrics(t)[`flowlens_drops_total{reason="netfilter_drop"}`]; after-before != float64(drops["netfilter_drop"]) {
		t.Errorf("flowlens_drops_total{reason=netfilter_drop} went from %v to %v, want %d more: the flows' drops", before, after, drops["netfilter_drop"])
	}
}

// netstat reads one TcpExt counter of a namespace's /proc/net/netstat.
func netstat(t *testing.T, ns *testutil.Netns, name string) uint64 {
	t.Helper()
	out, err := ns.Command("cat", "/proc/net/netstat").Output()
	testutil.Must(t, err, "read netstat")
	var header []string
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "TcpExt:" {
			continue
		}
		if header == nil {
			header = fields
			continue
		}
		for i, h := range header {
			if h == name && i < len(fields) {
				v, err := strconv.ParseUint(fields[i], 10, 64)
				testutil.Must(t, err, "parse "+name)
				return v
			}
		}
	}
	t.Fatalf("no TcpExt %s in the namespace's netstat", name)
	return 0
}

// A server that listens with a backlog of 4 and never accepts, and 50
// clients at once: the accept queue fills and the kernel drops handshakes.
// The listener's drops in /metrics equal the namespace's own
// ListenOverflows (and ListenDrops), its queue and limit what ss shows.
func TestListenOverflowsPerListener(t *testing.T) {
	testutil.RequirePrivileged(t)
	p := randomPair(t, false)
	const port = 8093
	srv := testutil.Start(t, p.A.Command("python3", "-c", fmt.Sprintf(`
import socket, sys, time
s = socket.socket()
s.bind((%q, %d))
s.listen(4)
print('{"ready":true}', flush=True)
time.sleep(120)
`, p.AddrA, port)))
	var ready struct{ Ready bool }
	srv.ReadJSON(t, &ready)
	// bash's /dev/tcp connects without a timeout: timeout(1) bounds each.
	testutil.Run(t, "ip", "netns", "exec", p.B.Name, "bash", "-c", fmt.Sprintf(
		"for i in $(seq 50); do timeout 3 bash -c 'exec 3<>/dev/tcp/%s/%d; sleep 2' & done; wait; true", p.AddrA, port))
	labels := fmt.Sprintf(`{netns="%d",port="%d"}`, p.A.Inode, port)
	type view struct{ overflows, listenDrops, reported, queue, limit, ssQueue, ssLimit uint64 }
	read := func() view {
		m := shared.metrics(t)
		v := view{overflows: netstat(t, p.A, "ListenOverflows"), listenDrops: netstat(t, p.A, "ListenDrops"),
			reported: uint64(m["flowlens_listen_drops_total"+labels]), queue: uint64(m["flowlens_listen_queue"+labels]),
			limit: uint64(m["flowlens_listen_queue_limit"+labels])}
		out, err := p.A.Command("ss", "-Hltn", fmt.Sprintf("sport = :%d", port)).Output()
		testutil.Must(t, err, "ss")
		if f := strings.Fields(string(out)); len(f) >= 3 {
			v.ssQueue, _ = strconv.ParseUint(f[1], 10, 64)
			v.ssLimit, _ = strconv.ParseUint(f[2], 10, 64)
		}
		return v
	}
	got := settle(t, "listener "+labels, 20*time.Second, read, func(v view) bool {
		return v.overflows > 0 && v.reported == v.overflows && v.queue == v.ssQueue
	})
	if got.reported != got.overflows || got.reported != got.listenDrops || got.queue != got.ssQueue || got.limit != got.ssLimit || got.limit != 4 {
		t.Errorf("reported drops %d queue %d/%d; the kernel: ListenOverflows %d ListenDrops %d, ss queue %d/%d, listen(4)",
			got.reported, got.queue, got.limit, got.overflows, got.listenDrops, got.ssQueue, got.ssLimit)
	}
	t.Logf("listener %s: %d overflows, queue %d of %d", labels, got.reported, got.queue, got.limit)
}

// A link whose server side sends through a token bucket that a test burst
// has just filled: every handshake waits behind it. The kernel's connect
// time of each connection (SYN_SENT to ESTABLISHED, inside connect()) is
// at most what the client measured around connect().
func TestConnectLatencyOnADelayedLink(t *testing.T) {
	testutil.RequirePrivileged(t)
	const n = 5
	p := randomPair(t, false)
	const port = 8096
	startServer(t, p.A, "tcp-serve", netip.AddrPortFrom(p.AddrA, port))
	// The namespace's one link beside lo: its end of the veth pair.
	var dev string
	out, err := p.A.Command("ip", "-o", "link", "show").Output()
	testutil.Must(t, err, "list links")
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			if name := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]; name != "lo" {
				dev = name
			}
		}
	}
	// 1 Mbit/s: 50 raw IP packets of 1,000 bytes (protocol 253, for
	// experiments: no flow records) sent at once to the client just before
	// each connect take ≈400 ms to drain, and the SYN-ACK waits behind them.
	p.A.Exec(t, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "1mbit", "burst", "1600", "limit", "100000")
	client := fmt.Sprintf(`
import socket, subprocess, time
FILL = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253)
for _ in range(50):
    s.sendto(bytes(1000), (%q, 0))
"""
for i in range(%d):
    subprocess.run(["ip", "netns", "exec", %q, "python3", "-c", FILL], check=True)
    t0 = time.perf_counter_ns()
    s = socket.create_connection((%q, %d), timeout=10)
    t1 = time.perf_counter_ns()
    print(s.getsockname()[1], (t1 - t0) // 1000, flush=True)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
`, p.AddrB, n, p.A.Name, p.AddrA, port)
	before := shared.metrics(t)
	raw, err := p.B.Command("python3", "-c", client).Output()
	testutil.Must(t, err, "client")
	measured := map[uint16]uint32{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var port uint16
		var us uint32
		if _, err := fmt.Sscan(sc.Text(), &port, &us); err != nil {
			t.Fatalf("client line %q: %v", sc.Text(), err)
		}
		measured[port] = us
	}
	if len(measured) != n {
		t.Fatalf("client measured %d connects, want %d: %s", len(measured), n, raw)
	}
	q := fmt.Sprintf("observer=client&from-netns=%d&to-ip=%s&to-port=%d", p.B.Inode, p.AddrA, port)
	recs := shared.settled(t, q, func(s totals) bool { return s.closed >= n })
	seen := 0
	for _, r := range recs {
		l := r.ConnectLatency
		if l == nil {
			continue
		}
		want, ok := measured[r.Source.Port]
		if !ok {
			t.Errorf("a connect latency on port %d, which the client did not use", r.Source.Port)
			continue
		}
		seen++
		if l.MinMicros != l.MaxMicros || l.MaxMicros == 0 || l.MaxMicros > want {
			t.Errorf("port %d: connect latency %+v µs, want one sample in (0, %d], what the client measured", r.Source.Port, *l, want)
		}
		t.Logf("port %d: kernel %d µs, client %d µs", r.Source.Port, l.MaxMicros, want)
	}
	if seen != n {
		// What tells a connect tracked from connect() from one the kernel
		// side adopted or was refused: the records, and the agent's counts.
		for _, r := range recs {
			t.Logf("record port %d: opened %d closed %d SYN retransmits %d connect latency %+v",
				r.Source.Port, r.Opened, r.Closed, r.SYNRetrans, r.ConnectLatency)
		}
		after := shared.metrics(t)
		for k, v := range after {
			if d := v - before[k]; d != 0 && (strings.Contains(k, "adopted") || strings.Contains(k, "lost")) {
				t.Logf("%s +%v during the test", k, d)
			}
		}
		t.Errorf("%d connections with a connect latency, want %d", seen, n)
	}
}

// A datagram to a closed UDP port and a SYN to a closed TCP port are
// dropped with no socket to take them: the senders' records say so. A
// clean run of 1,000 connections beside them reports no drop. (The
// datagram goes from A to B: a later test's client namespace, which may
// get B's inode, then meets no UDP record of this one.)
func TestDropsNoSocketAndNoneOnACleanRun(t *testing.T) {
	testutil.RequirePrivileged(t)
	p := randomPair(t, false)
	var ures struct{ Sent int64 }
	testutil.Output(t, p.A.Command(peerBin, "udp-send", "-addr", netip.AddrPortFrom(p.AddrB, 8097).String(), "-count", "1"), &ures)
	var tres result.Connect
	testutil.Output(t, p.B.Command(peerBin, "tcp-connect", "-addr", netip.AddrPortFrom(p.AddrA, 8098).String(), "-count", "1"), &tres)
	if tres.Refused != 1 {
		t.Fatalf("TCP client saw %+v, want 1 refused", tres)
	}
	for _, c := range []struct {
		query string
		done  func(totals) bool
	}{
		{fmt.Sprintf("protocol=udp&observer=client&from-netns=%d&to-ip=%s&to-port=8097", p.A.Inode, p.AddrB),
			func(s totals) bool { return s.datagramsToDst >= 1 }},
		{fmt.Sprintf("protocol=tcp&observer=client&from-netns=%d&to-ip=%s&to-port=8098", p.B.Inode, p.AddrA),
			func(s totals) bool { return s.refused >= 1 }},
	} {
		var drops map[string]uint64
		settle(t, c.query, 20*time.Second, func() string {
			recs := shared.flows(t, c.query)
			if !c.done(sum(recs)) {
				return ""
			}
			drops = dropTotals(recs)
			return fmt.Sprint(drops)
		}, func(s string) bool { return s == fmt.Sprint(map[string]uint64{"no_socket": 1}) })
		if len(drops) != 1 || drops["no_socket"] != 1 {
			t.Errorf("%s: drops %v, want no_socket 1", c.query, drops)
		}
	}

	const n = 1000
	addr := netip.AddrPortFrom(p.AddrA, 8099)
	startServer(t, p.A, "tcp-serve", addr, "-reply", "100")
	var cres result.Connect
	testutil.Output(t, p.B.Command(peerBin, "tcp-connect", "-addr", addr.String(), "-count", strconv.Itoa(n),
		"-concurrency", "8", "-bytes", "100"), &cres)
	if cres.OK != n {
		t.Fatalf("clean run: client %+v, want %d connections", cres, n)
	}
	q := fmt.Sprintf("to-ip=%s&to-port=8099", p.AddrA)
	recs := shared.settled(t, q, func(s totals) bool { return s.closed >= 2*n })
	if s := sum(recs); s.closed != 2*n {
		t.Errorf("clean run: %d closed over both sides, want %d", s.closed, 2*n)
	}
	if drops := dropTotals(recs); len(drops) != 0 {
		t.Errorf("clean run: drops %v, want none", drops)
	}
	if got := shared.flows(t, q+"&verdict=dropped"); len(got) != 0 {
		t.Errorf("clean run: verdict=dropped selects %d records", len(got))
	}
}
