package e2e

import (
	"fmt"
	"net/netip"
	"strconv"
	"testing"

	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/test/peer/result"
)

// A server whose first SYN of every connection is dropped: each connect
// needs exactly one SYN retransmit and waits out the initial SYN timeout
// (1 s, TCP_TIMEOUT_INIT) before it is established; the client's records
// say both. Clean connects beside them need none.
func TestConnectLatencyAndSYNRetransmits(t *testing.T) {
	testutil.RequirePrivileged(t)
	const n = 4
	p := randomPair(t, false)
	for _, port := range []uint16{8085, 8086} {
		startServer(t, p.A, "tcp-serve", netip.AddrPortFrom(p.AddrA, port))
	}
	// Every second SYN to 8086, starting with the first: connects made one
	// at a time lose their first SYN and get through with the second.
	p.A.Exec(t, "iptables", "-A", "INPUT", "-p", "tcp", "--syn", "--dport", "8086",
		"-m", "statistic", "--mode", "nth", "--every", "2", "--packet", "0", "-j", "DROP")
	for _, port := range []uint16{8085, 8086} {
		var res result.Connect
		testutil.Output(t, p.B.Command(peerBin, "tcp-connect", "-addr", netip.AddrPortFrom(p.AddrA, port).String(), "-count", strconv.Itoa(n),
			"-concurrency", "1", "-timeout", "10s"), &res)
		if res.OK != n {
			t.Fatalf("port %d: client %+v, want %d connections", port, res, n)
		}
	}
	for port, wantSYN := range map[uint16]uint32{8085: 0, 8086: n} {
		recs := shared.settled(t, fmt.Sprintf("observer=client&from-netns=%d&to-ip=%s&to-port=%d", p.B.Inode, p.AddrA, port),
			func(s totals) bool { return s.closed == n })
		var syn, latencies uint32
		for _, r := range recs {
			syn += r.SYNRetrans
			if l := r.ConnectLatency; l != nil {
				latencies++
				// The retransmitted SYN leaves after the initial 1 s timeout
				// at the earliest: a lower bound from the protocol.
				if wantSYN > 0 && l.MinMicros < 1_000_000 {
					t.Errorf("port %d: connect latency %+v µs, below the 1 s a dropped SYN costs", port, *l)
				}
				if l.MinMicros > l.AvgMicros || l.AvgMicros > l.MaxMicros || l.MinMicros == 0 {
					t.Errorf("port %d: connect latency %+v µs is not a min ≤ avg ≤ max of real samples", port, *l)
				}
			}
		}
		if syn != wantSYN || latencies == 0 {
			t.Errorf("port %d: %d SYN retransmits over %d records with a connect latency, want %d and some", port, syn, latencies, wantSYN)
		}
	}
}
