package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/test/peer/result"
)

// A client that resolves through a Service address, DNAT-ed by kube-proxy's
// rule in nat OUTPUT (ClusterFirstWithHostNet DNS), is one answered
// conversation with the Service address: egress sees the backend, the reply
// is translated back before ingress, and both are keyed by what the client
// asked for. No phantom server record, no false "unanswered".
func TestUDPThroughServiceDNAT(t *testing.T) {
	testutil.RequirePrivileged(t)
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig is required (Debian package dnsutils; the test setup installs it)")
	}
	p := randomPair(t, false)
	// A ClusterIP-like address that exists only as a DNAT rule in the
	// client's namespace, routed to the only link it has.
	vip := netip.AddrFrom4([4]byte{10, 201, p.AddrA.As4()[2], 10})
	p.B.Exec(t, "ip", "route", "add", vip.String()+"/32", "via", p.AddrA.String())
	p.B.Exec(t, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", vip.String(), "-p", "udp", "--dport", "53",
		"-j", "DNAT", "--to-destination", p.AddrA.String()+":5353")
	server := startServer(t, p.A, "dns-serve", netip.AddrPortFrom(p.AddrA, 5353))
	dig := p.B.Command("dig", "@"+vip.String(), "-p", "53", "+tries=1", "+time=3", "+short",
		"a.flowlens.test", "b.flowlens.test", "c.flowlens.test")
	if out, err := dig.CombinedOutput(); err != nil {
		t.Fatalf("dig: %v\n%s", err, out)
	}
	var sres result.Serve
	server.Stop(t, &sres)
	if sres.DatagramsIn != 3 || sres.DatagramsOut != 3 {
		t.Fatalf("dns server saw %+v, want 3 queries answered", sres)
	}
	// The namespace and its address: the inode of a namespace another
	// test deleted is reused, and its records are still in the ring.
	recs := shared.settled(t, fmt.Sprintf("protocol=udp&from-netns=%d&from-ip=%s", p.B.Inode, p.AddrB), func(s totals) bool {
		return int64(s.datagramsToDst) >= sres.DatagramsIn && int64(s.datagramsToSrc) >= sres.DatagramsOut
	})
	s := sum(recs)
	if int64(s.datagramsToDst) != sres.DatagramsIn || int64(s.datagramsToSrc) != sres.DatagramsOut ||
		int64(s.bytesToDst) != sres.BytesIn || int64(s.bytesToSrc) != sres.BytesOut {
		t.Errorf("client's namespace: datagrams %d→ %d← bytes %d→ %d←, want %d %d %d %d",
			s.datagramsToDst, s.datagramsToSrc, s.bytesToDst, s.bytesToSrc, sres.DatagramsIn, sres.DatagramsOut, sres.BytesIn, sres.BytesOut)
	}
	for _, r := range recs {
		if r.Observer != "client" || r.Verdict != flow.VerdictAnswered || r.Destination.IP != vip || r.Destination.Port != 53 {
			t.Errorf("record %s %s %s:%d -> %s:%d, want client answered -> %s:53", r.Observer, r.Verdict,
				r.Source.IP, r.Source.Port, r.Destination.IP, r.Destination.Port, vip)
		}
		if r.Source.PID != uint32(dig.Process.Pid) || r.Source.Command != "dig" {
			t.Errorf("record source %+v, want dig pid %d", r.Source, dig.Process.Pid)
		}
	}
	// The reply, de-NATed to come from the Service, used to open a second
	// conversation in which the client's socket looked like a server.
	if phantom := shared.flows(t, fmt.Sprintf("protocol=udp&to-netns=%d&to-ip=%s", p.B.Inode, p.AddrB)); len(phantom) != 0 {
		t.Errorf("%d records with the client's namespace as their destination, e.g. %s %s:%d -> %s:%d", len(phantom),
			phantom[0].Observer, phantom[0].Source.IP, phantom[0].Source.Port, phantom[0].Destination.IP, phantom[0].Destination.Port)
	}
}

// udpExchange sends count datagrams of size bytes from B to a sink on A with
// extra udp-send flags, and checks both sides' records against the sink.
func udpExchange(t *testing.T, p *testutil.Pair, port uint16, count, size int, flags ...string) {
	t.Helper()
	addr := netip.AddrPortFrom(p.AddrA, port)
	sink := startServer(t, p.A, "udp-sink", addr)
	var sent result.Serve
	testutil.Output(t, p.B.Command(peerBin, append([]string{"udp-send", "-addr", addr.String(),
		"-count", strconv.Itoa(count), "-size", strconv.Itoa(size)}, flags...)...), &sent)
	var got result.Serve
	sink.Stop(t, &got)
	if sent.DatagramsOut != int64(count) || got.DatagramsIn != int64(count) || got.BytesIn != int64(count*size) {
		t.Fatalf("traffic itself was not as planned: sent %+v, sink got %+v", sent, got)
	}
	for _, q := range []string{
		fmt.Sprintf("protocol=udp&observer=client&from-netns=%d&to-ip=%s&to-port=%d", p.B.Inode, p.AddrA, port),
		fmt.Sprintf("protocol=udp&observer=server&to-netns=%d&to-ip=%s&to-port=%d", p.A.Inode, p.AddrA, port),
	} {
		s := sum(shared.settled(t, q, func(s totals) bool { return int(s.datagramsToDst) >= count }))
		if int(s.datagramsToDst) != count || int(s.bytesToDst) != count*size {
			t.Errorf("%s: %d datagrams, %d bytes, want %d %d", q, s.datagramsToDst, s.bytesToDst, count, count*size)
		}
	}
}

// UDP segmentation offload hands the kernel 8 datagrams per send: each
// counts, on the side that sends the super-packet and on the side that
// receives its segments.
func TestUDPSegmentationOffloadCountsEachDatagram(t *testing.T) {
	testutil.RequirePrivileged(t)
	udpExchange(t, randomPair(t, false), 7003, 40, 200, "-gso", "8")
}

// IPv6 datagrams behind a hop-by-hop options header are counted, not lost
// as unparsed.
func TestIPv6HopByHopHeaderCounted(t *testing.T) {
	testutil.RequirePrivileged(t)
	udpExchange(t, randomPair(t, true), 7004, 10, 100, "-hopopts")
}

// follower streams the records matching a query from an agent and sums
// them as they come.
type follower struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	sum    totals
	lost   []string // lost-records markers: the sums are short
}

func (a api) follow(t *testing.T, query string) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+string(a)+"/api/v1/flows?follow=1&"+query, nil)
	testutil.Must(t, err, "follow request")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("follow %s: %v", query, err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("follow %s: %s", query, resp.Status)
	}
	f := &follower{cancel: cancel, done: make(chan struct{})}
	t.Cleanup(f.stop)
	go func() {
		defer close(f.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct {
				flow.Record
				Lost json.RawMessage `json:"lost_records"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				continue
			}
			f.mu.Lock()
			if line.Lost != nil {
				f.lost = append(f.lost, string(line.Lost))
			} else {
				f.sum = f.sum.plus(&line.Record)
			}
			f.mu.Unlock()
		}
	}()
	return f
}

func (f *follower) totals() (totals, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sum, append([]string(nil), f.lost...)
}

func (f *follower) stop() {
	f.cancel()
	<-f.done
}

// A resolver that opens a socket per query at 1,000 queries/s, for longer
// than the connection table remembers released conversations (60 s), is
// counted exactly on both sides. FLOWLENS_DNS_SECONDS sets the duration
// (default 75; the measurement ran 300).
func TestSustainedDNSStaysExact(t *testing.T) {
	testutil.RequirePrivileged(t)
	seconds := 75
	if v := os.Getenv("FLOWLENS_DNS_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		testutil.Must(t, err, "FLOWLENS_DNS_SECONDS")
		seconds = n
	}
	const rate = 1000
	p := randomPair(t, false)
	addr := netip.AddrPortFrom(p.AddrA, 5354)
	a := ownAgent(t)
	client := a.follow(t, fmt.Sprintf("protocol=udp&observer=client&from-netns=%d&to-port=5354", p.B.Inode))
	server := a.follow(t, fmt.Sprintf("protocol=udp&observer=server&to-netns=%d&to-port=5354", p.A.Inode))
	dns := startServer(t, p.A, "dns-serve", addr)
	start := time.Now()
	var load struct {
		Queries, Answers, Timeouts, Errors int64
	}
	testutil.Output(t, p.B.Command(peerBin, "dns-load", "-addr", addr.String(), "-count", strconv.Itoa(seconds*rate),
		"-rate", strconv.Itoa(rate), "-concurrency", "64", "-duration", fmt.Sprintf("%ds", seconds+60)), &load)
	took := time.Since(start)
	var sres result.Serve
	dns.Stop(t, &sres)
	t.Logf("%d queries in %s (%.0f/s), %d answered, %d timeouts, %d errors", load.Queries, took.Round(time.Millisecond),
		float64(load.Queries)/took.Seconds(), load.Answers, load.Timeouts, load.Errors)
	if sres.DatagramsIn != load.Queries || load.Queries != int64(seconds*rate) {
		t.Fatalf("traffic itself was not as planned: load %+v, server %+v", load, sres)
	}
	// Conversations are released after 5 s idle: wait until both sides
	// settle with every answer counted, then compare exactly.
	settle(t, "the followers' sums", 30*time.Second, func() [2]totals {
		cs, _ := client.totals()
		ss, _ := server.totals()
		return [2]totals{cs, ss}
	}, func(v [2]totals) bool {
		return int64(v[0].datagramsToSrc) >= sres.DatagramsOut && int64(v[1].datagramsToSrc) >= sres.DatagramsOut
	})
	for side, f := range map[string]*follower{"client": client, "server": server} {
		s, lost := f.totals()
		if len(lost) > 0 {
			t.Errorf("%s follower was told it lost records: %v", side, lost)
		}
		if int64(s.datagramsToDst) != sres.DatagramsIn || int64(s.datagramsToSrc) != sres.DatagramsOut ||
			int64(s.bytesToDst) != sres.BytesIn || int64(s.bytesToSrc) != sres.BytesOut {
			t.Errorf("%s side: datagrams %d→ %d← bytes %d→ %d←, want %d %d %d %d", side,
				s.datagramsToDst, s.datagramsToSrc, s.bytesToDst, s.bytesToSrc,
				sres.DatagramsIn, sres.DatagramsOut, sres.BytesIn, sres.BytesOut)
		}
	}
	m := a.metrics(t)
	lost, per := floodLost(m)
	if lost != 0 {
		t.Errorf("the agent lost %v", per)
	}
}
