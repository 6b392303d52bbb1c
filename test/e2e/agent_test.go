package e2e

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/test/peer/result"
)

// startServer runs `peer <mode> -listen addr` in ns and waits until it listens.
func startServer(t *testing.T, ns *testutil.Netns, mode string, addr netip.AddrPort, args ...string) *testutil.Process {
	t.Helper()
	p := testutil.Start(t, ns.Command(peerBin, append([]string{mode, "-listen", addr.String()}, args...)...))
	var ready struct{ Ready bool }
	p.ReadJSON(t, &ready)
	if !ready.Ready {
		t.Fatalf("%s on %s did not become ready", mode, addr)
	}
	return p
}

func randomPair(t *testing.T, v6 bool) *testutil.Pair {
	t.Helper()
	// A random /24 (or /64) inside 10.200.0.0/16 (fd00:f10::/32): parallel
	// runs do not collide and the addresses exist only in these namespaces.
	n := testutil.Prefix()
	x, _ := strconv.ParseUint(n[2:6], 16, 16)
	if v6 {
		return testutil.NewPair(t, netip.MustParsePrefix(fmt.Sprintf("fd00:f10:%x::1/64", x)), netip.MustParsePrefix(fmt.Sprintf("fd00:f10:%x::2/64", x)))
	}
	return testutil.NewPair(t, netip.MustParsePrefix(fmt.Sprintf("10.200.%d.1/24", x%256)), netip.MustParsePrefix(fmt.Sprintf("10.200.%d.2/24", x%256)))
}

// Test 1 and 5: N connections carrying B bytes each are counted exactly, on
// both sides, attributed to the right process and namespace.
func TestTCPConnectionsBothSides(t *testing.T) {
	testutil.RequirePrivileged(t)
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[v6], func(t *testing.T) {
			const n, size, reply = 50, 3000, 700
			p := randomPair(t, v6)
			addr := netip.AddrPortFrom(p.AddrA, 8080)
			server := startServer(t, p.A, "tcp-serve", addr, "-reply", strconv.Itoa(reply))
			client := p.B.Command(peerBin, "tcp-connect", "-addr", addr.String(), "-count", strconv.Itoa(n), "-bytes", strconv.Itoa(size))
			var cres result.Connect
			testutil.Output(t, client, &cres)
			var sres result.Serve
			server.Stop(t, &sres)
			if cres.OK != n || sres.Connections != n || sres.BytesIn != n*size || cres.BytesIn != n*reply {
				t.Fatalf("traffic itself was not as planned: client %+v server %+v", cres, sres)
			}

			wantClient := func(s totals) bool { return s.opened >= n && s.closed >= n }
			cq := fmt.Sprintf("observer=client&from-netns=%d&to-ip=%s&to-port=8080", p.B.Inode, p.AddrA)
			crecs := shared.settled(t, cq, wantClient)
			sq := fmt.Sprintf("observer=server&to-netns=%d&to-ip=%s&to-port=8080", p.A.Inode, p.AddrA)
			srecs := shared.settled(t, sq, wantClient)

			for side, recs := range map[string][]flow.Record{"client": crecs, "server": srecs} {
				s := sum(recs)
				if s.opened != n || s.closed != n || s.bytesToDst != n*size || s.bytesToSrc != n*reply {
					t.Errorf("%s side: opened=%d closed=%d bytes→=%d bytes←=%d, want %d %d %d %d",
						side, s.opened, s.closed, s.bytesToDst, s.bytesToSrc, n, n, n*size, n*reply)
				}
				if s.refused+s.timedOut+s.failedOther != 0 {
					t.Errorf("%s side counted failures: %+v", side, s)
				}
			}
			for _, r := range crecs {
				src := r.Source
				if src.PID != uint32(client.Process.Pid) || src.Command != "peer" || src.Netns != p.B.Inode || src.IP != p.AddrB {
					t.Errorf("client record source %+v, want pid %d peer netns %d ip %s", src, client.Process.Pid, p.B.Inode, p.AddrB)
				}
				if r.Destination.IP != p.AddrA || r.Destination.Port != 8080 || r.IPVersion != map[bool]int{false: 4, true: 6}[v6] {
					t.Errorf("client record destination %+v ip_version %d", r.Destination, r.IPVersion)
				}
			}
			for _, r := range srecs {
				dst := r.Destination
				if dst.PID != uint32(server.Cmd.Process.Pid) || dst.Command != "peer" || dst.Netns != p.A.Inode || dst.IP != p.AddrA {
					t.Errorf("server record destination %+v, want pid %d peer netns %d", dst, server.Cmd.Process.Pid, p.A.Inode)
				}
				if r.Source.IP != p.AddrB || r.Source.PID != 0 {
					t.Errorf("server record source %+v", r.Source)
				}
			}
		})
	}
}

// Test 2: refused (RST to SYN) and timed out (SYN dropped) connects are
// counted apart, exactly.
func TestFailedConnects(t *testing.T) {
	testutil.RequirePrivileged(t)
	p := randomPair(t, false)

	t.Run("refused", func(t *testing.T) {
		const n = 7
		var res result.Connect
		testutil.Output(t, p.B.Command(peerBin, "tcp-connect", "-addr", netip.AddrPortFrom(p.AddrA, 8089).String(), "-count", strconv.Itoa(n)), &res)
		if res.Refused != n {
			t.Fatalf("client saw %+v, want %d refused", res, n)
		}
		recs := shared.settled(t, fmt.Sprintf("from-netns=%d&to-ip=%s&to-port=8089", p.B.Inode, p.AddrA), func(s totals) bool { return s.refused >= n })
		s := sum(recs)
		if s.refused != n || s.timedOut != 0 || s.opened != 0 || s.closed != 0 {
			t.Errorf("refused=%d timeout=%d opened=%d closed=%d, want %d 0 0 0", s.refused, s.timedOut, s.opened, s.closed, n)
		}
		for _, r := range recs {
			if r.Verdict != flow.VerdictRefused || r.Observer != "client" {
				t.Errorf("record verdict %s observer %s", r.Verdict, r.Observer)
			}
		}
	})

	t.Run("timeout", func(t *testing.T) {
		const n = 3
		p.A.Exec(t, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "8090", "-j", "DROP")
		// One SYN retransmission: the kernel gives up after about 3 s
		// (ETIMEDOUT) instead of about 2 minutes. Per namespace only.
		p.B.Exec(t, "sysctl", "-q", "-w", "net.ipv4.tcp_syn_retries=1")
		var res result.Connect
		testutil.Output(t, p.B.Command(peerBin, "tcp-connect", "-addr", netip.AddrPortFrom(p.AddrA, 8090).String(),
			"-count", strconv.Itoa(n), "-concurrency", strconv.Itoa(n), "-timeout", "30s"), &res)
		if res.TimedOut != n {
			t.Fatalf("client saw %+v, want %d timed out", res, n)
		}
		recs := shared.settled(t, fmt.Sprintf("from-netns=%d&to-ip=%s&to-port=8090", p.B.Inode, p.AddrA), func(s totals) bool { return s.timedOut >= n })
		s := sum(recs)
		if s.timedOut != n || s.refused != 0 || s.opened != 0 {
			t.Errorf("timeout=%d refused=%d opened=%d, want %d 0 0", s.timedOut, s.refused, s.opened, n)
		}
		for _, r := range recs {
			if r.Verdict != flow.VerdictTimeout {
				t.Errorf("record verdict %s", r.Verdict)
			}
		}
	})
}

// Test 3: a long-lived connection shows its bytes in every interval while
// it is open, not only when it closes; the intervals add up exactly.
func TestLongLivedConnectionReportsEveryInterval(t *testing.T) {
	testutil.RequirePrivileged(t)
	p := randomPair(t, false)
	addr := netip.AddrPortFrom(p.AddrA, 8081)
	server := startServer(t, p.A, "tcp-serve", addr)
	var cres result.Connect
	testutil.Output(t, p.B.Command(peerBin, "tcp-stream", "-addr", addr.String(), "-duration", "4500ms", "-chunk", "4096", "-pause", "10ms"), &cres)
	var sres result.Serve
	server.Stop(t, &sres)
	if sres.BytesIn != cres.BytesOut || cres.BytesOut == 0 {
		t.Fatalf("stream: client sent %d, server read %d", cres.BytesOut, sres.BytesIn)
	}
	q := fmt.Sprintf("observer=client&from-netns=%d&to-ip=%s&to-port=8081", p.B.Inode, p.AddrA)
	recs := shared.settled(t, q, func(s totals) bool { return s.closed == 1 })
	s := sum(recs)
	if s.opened != 1 || s.closed != 1 || s.bytesToDst != uint64(cres.BytesOut) {
		t.Errorf("opened=%d closed=%d bytes=%d, want 1 1 %d", s.opened, s.closed, s.bytesToDst, cres.BytesOut)
	}
	open := 0
	for _, r := range recs {
		if r.Verdict == flow.VerdictEstablished && r.BytesToDst > 0 {
			open++
		}
	}
	// 4.5 s of streaming with 1 s intervals: at least 3 intervals end while
	// the connection is open, each with its own bytes.
	if open < 3 {
		t.Errorf("only %d intervals reported bytes while the connection was open (records: %d)", open, len(recs))
	}
}

// Test 4: a UDP request/response exchange (real DNS, from dig) is counted
// per direction, on both sides.
func TestUDPDNSExchange(t *testing.T) {
	testutil.RequirePrivileged(t)
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig is required (Debian package dnsutils; the test setup installs it)")
	}
	p := randomPair(t, false)
	addr := netip.AddrPortFrom(p.AddrA, 53)
	server := startServer(t, p.A, "dns-serve", addr)
	dig := p.B.Command("dig", "@"+p.AddrA.String(), "-p", "53", "+tries=1", "+time=3", "+short",
		"a.flowlens.test", "b.flowlens.test", "c.flowlens.test")
	out, err := dig.CombinedOutput()
	if err != nil {
		t.Fatalf("dig: %v\n%s", err, out)
	}
	var sres result.Serve
	server.Stop(t, &sres)
	if sres.DatagramsIn != 3 || sres.DatagramsOut != 3 {
		t.Fatalf("dns server saw %+v, want 3 queries answered", sres)
	}
	want := func(s totals) bool {
		return int64(s.datagramsToDst) >= sres.DatagramsIn && int64(s.datagramsToSrc) >= sres.DatagramsOut
	}
	crecs := shared.settled(t, fmt.Sprintf("protocol=udp&observer=client&from-netns=%d&to-ip=%s&to-port=53", p.B.Inode, p.AddrA), want)
	srecs := shared.settled(t, fmt.Sprintf("protocol=udp&observer=server&to-netns=%d&to-ip=%s&to-port=53", p.A.Inode, p.AddrA), want)
	for side, recs := range map[string][]flow.Record{"client": crecs, "server": srecs} {
		s := sum(recs)
		if int64(s.datagramsToDst) != sres.DatagramsIn || int64(s.bytesToDst) != sres.BytesIn ||
			int64(s.datagramsToSrc) != sres.DatagramsOut || int64(s.bytesToSrc) != sres.BytesOut {
			t.Errorf("%s side: datagrams %d→ %d← bytes %d→ %d←, want %d %d %d %d", side,
				s.datagramsToDst, s.datagramsToSrc, s.bytesToDst, s.bytesToSrc,
				sres.DatagramsIn, sres.DatagramsOut, sres.BytesIn, sres.BytesOut)
		}
		for _, r := range recs {
			if r.Verdict != flow.VerdictAnswered {
				t.Errorf("%s record verdict %s", side, r.Verdict)
			}
		}
	}
	for _, r := range crecs {
		if r.Source.PID != uint32(dig.Process.Pid) || r.Source.Command != "dig" || r.Source.Netns != p.B.Inode {
			t.Errorf("client record source %+v, want dig pid %d netns %d", r.Source, dig.Process.Pid, p.B.Inode)
		}
	}
	for _, r := range srecs {
		if r.Destination.PID != uint32(server.Cmd.Process.Pid) || r.Destination.Netns != p.A.Inode {
			t.Errorf("server record destination %+v, want pid %d", r.Destination, server.Cmd.Process.Pid)
		}
	}
}
