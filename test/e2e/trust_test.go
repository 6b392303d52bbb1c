package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/test/peer/result"
)

// ownAgent runs a `flowlens up` of the test's own (extra flags), stopped at
// cleanup, and returns its API.
func ownAgent(t *testing.T, extra ...string) api {
	t.Helper()
	cmd, addr, err := startAgent(extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	return api(addr)
}

// testCgroup makes a cgroup of the test's own below the cgroup2 mount,
// removed at cleanup (after the processes started in it, which are stopped
// by cleanups registered later).
func testCgroup(t *testing.T) string {
	t.Helper()
	m, err := cgroup.ReadMount()
	testutil.Must(t, err, "find the cgroup2 mount")
	dir := filepath.Join(m.Dir, "flowlens-e2e-"+testutil.Prefix())
	testutil.Must(t, os.Mkdir(dir, 0o755), "make a test cgroup")
	t.Cleanup(func() { _ = os.Remove(dir) })
	return dir
}

// inCgroup runs cmd with its process moved into the cgroup before it execs,
// so every socket it opens is the cgroup's.
func inCgroup(dir string, cmd *exec.Cmd) *exec.Cmd {
	args := append([]string{"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, dir}, cmd.Args...)
	return exec.Command("sh", args...)
}

// holdConnections starts `peer tcp-hold` and returns once its connections
// are held; release sends the go-ahead and returns what moved after it.
func holdConnections(t *testing.T, cmd *exec.Cmd) (held int, release func() result.Connect) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	testutil.Must(t, err, "stdin of tcp-hold")
	p := testutil.Start(t, cmd)
	var ready struct {
		Ready bool
		Held  int
	}
	p.ReadJSON(t, &ready)
	if !ready.Ready {
		t.Fatal("tcp-hold did not hold its connections")
	}
	return ready.Held, func() result.Connect {
		_, err := io.WriteString(stdin, "go\n")
		testutil.Must(t, err, "release tcp-hold")
		var res result.Connect
		p.ReadJSON(t, &res)
		testutil.Must(t, p.Cmd.Wait(), "tcp-hold")
		return res
	}
}

// A connection open across several intervals names its client's port in
// every record, on both sides: connect() picks the port after the socket
// enters SYN_SENT, where the kernel side first reads it.
func TestOpenConnectionNamesItsClientPort(t *testing.T) {
	testutil.RequirePrivileged(t)
	p := randomPair(t, false)
	addr := netip.AddrPortFrom(p.AddrA, 8082)
	server := startServer(t, p.A, "tcp-serve", addr)
	var cres result.Connect
	testutil.Output(t, p.B.Command(peerBin, "tcp-stream", "-addr", addr.String(), "-duration", "3500ms", "-chunk", "1024", "-pause", "20ms"), &cres)
	var sres result.Serve
	server.Stop(t, &sres)
	done := func(s totals) bool { return s.closed == 1 }
	crecs := shared.settled(t, fmt.Sprintf("observer=client&from-netns=%d&to-ip=%s&to-port=8082", p.B.Inode, p.AddrA), done)
	srecs := shared.settled(t, fmt.Sprintf("observer=server&to-netns=%d&to-ip=%s&to-port=8082", p.A.Inode, p.AddrA), done)
	ports := map[uint16]int{}
	open := 0
	for _, r := range append(crecs, srecs...) {
		ports[r.Source.Port]++
		if r.Verdict == flow.VerdictEstablished {
			open++
		}
	}
	if len(ports) != 1 || ports[0] != 0 {
		t.Errorf("client ports named by the connection's %d records: %v, want one port, not 0", len(crecs)+len(srecs), ports)
	}
	// 3.5 s with 1 s intervals: at least two records per side are of the
	// connection while open, where the port used to be 0.
	if open < 4 {
		t.Errorf("%d records of the open connection, want at least 4", open)
	}
}

// Connections opened before the agent started, then carrying traffic: an
// agent that starts in their middle (every DaemonSet rollout) reports the
// server side as the server, counts only what moved after it started, and
// counts no opening it did not see.
func TestAgentStartedMidConnection(t *testing.T) {
	testutil.RequirePrivileged(t)
	const n, before, after, reply = 20, 200_000, 3000, 500
	p := randomPair(t, false)
	addr := netip.AddrPortFrom(p.AddrA, 8083)
	server := startServer(t, p.A, "tcp-serve", addr, "-reply", strconv.Itoa(reply))
	hold := p.B.Command(peerBin, "tcp-hold", "-addr", addr.String(),
		"-count", strconv.Itoa(n), "-before", strconv.Itoa(before), "-after", strconv.Itoa(after))
	held, release := holdConnections(t, hold)
	if held != n {
		t.Fatalf("held %d connections, want %d", held, n)
	}
	late := ownAgent(t)
	cres := release()
	var sres result.Serve
	server.Stop(t, &sres)
	if cres.OK != n || cres.BytesOut != n*after || cres.BytesIn != n*reply || sres.BytesIn != n*(before+after) {
		t.Fatalf("traffic itself was not as planned: client %+v server %+v", cres, sres)
	}

	done := func(s totals) bool { return s.closed >= n }
	crecs := late.settled(t, fmt.Sprintf("from-netns=%d&to-ip=%s&to-port=8083", p.B.Inode, p.AddrA), done)
	srecs := late.settled(t, fmt.Sprintf("to-netns=%d&to-ip=%s&to-port=8083", p.A.Inode, p.AddrA), done)
	for side, recs := range map[string][]flow.Record{"client": crecs, "server": srecs} {
		s := sum(recs)
		if s.opened != 0 || s.closed != n || s.bytesToDst != n*after || s.bytesToSrc != n*reply {
			t.Errorf("%s side: opened=%d closed=%d bytes→=%d bytes←=%d, want 0 %d %d %d",
				side, s.opened, s.closed, s.bytesToDst, s.bytesToSrc, n, n*after, n*reply)
		}
		var segs uint32
		for _, r := range recs {
			if r.Observer != side {
				t.Errorf("%s socket reported with observer=%s: %s:%d -> %s:%d", side, r.Observer,
					r.Source.IP, r.Source.Port, r.Destination.IP, r.Destination.Port)
			}
			if r.Source.IP != p.AddrB || r.Destination.IP != p.AddrA || r.Source.Port == 0 {
				t.Errorf("%s record names %s:%d -> %s:%d", side, r.Source.IP, r.Source.Port, r.Destination.IP, r.Destination.Port)
			}
			segs += r.SegmentsToDst
		}
		// What moved before the start took at least before/MSS segments
		// per connection (over 130 each); after it, each connection
		// carried one 3,000-byte write, its FIN and the reply's ACKs.
		if segs > n*20 {
			t.Errorf("%s side: %d segments toward the server, more than %d: counted from before the agent started", side, segs, n*20)
		}
	}
	// An adopted socket's process is learnt at its first I/O after the start.
	for _, r := range crecs {
		if r.Source.PID != uint32(hold.Process.Pid) || r.Source.Command != "peer" || r.Source.Netns != p.B.Inode {
			t.Errorf("client record source %+v, want the peer, pid %d netns %d", r.Source, hold.Process.Pid, p.B.Inode)
		}
	}
}

// metrics scrapes an agent's /metrics.
func (a api) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + string(a) + "/metrics")
	testutil.Must(t, err, "get /metrics")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("get /metrics: %s", resp.Status)
	}
	return scrape(t, resp)
}

// A noisy pod that holds thousands of loopback connections and sprays UDP
// to thousands of ports cannot blind the node: it gets its share of the
// kernel maps and no more, a quiet pod beside it is counted exactly, and
// everything the noisy one was refused is counted, named by its cgroup.
func TestNoisyNeighbourCannotBlindTheNode(t *testing.T) {
	testutil.RequirePrivileged(t)
	const (
		mapSize   = 4096 // both kernel maps; a quarter of each per cgroup
		noisyConn = 3000 // 6,000 sockets, both ends in the noisy pod
		noisyUDP  = 6000 // datagrams, one per port
		quietConn = 50
		quietUDP  = 20
	)
	a := ownAgent(t, "--max-tcp-sockets", strconv.Itoa(mapSize), "--max-udp-flows", strconv.Itoa(mapSize), "--flow-buffer", strconv.Itoa(1<<18))

	noisyDir := testCgroup(t)
	noisy := testutil.NewNetns(t, testutil.Prefix()+"-noisy")
	srv := testutil.Start(t, inCgroup(noisyDir, noisy.Command(peerBin, "tcp-serve", "-listen", "127.0.0.1:9000")))
	var ready struct{ Ready bool }
	srv.ReadJSON(t, &ready)
	held, release := holdConnections(t, inCgroup(noisyDir, noisy.Command(peerBin, "tcp-hold", "-addr", "127.0.0.1:9000", "-count", strconv.Itoa(noisyConn))))
	if held != noisyConn {
		t.Fatalf("noisy pod holds %d connections, want %d", held, noisyConn)
	}
	var spray result.Serve
	testutil.Output(t, inCgroup(noisyDir, noisy.Command(peerBin, "udp-send", "-addr", "127.0.0.1:20000",
		"-count", strconv.Itoa(noisyUDP), "-ports", strconv.Itoa(noisyUDP), "-size", "10")), &spray)
	if spray.DatagramsOut != noisyUDP {
		t.Fatalf("noisy pod sent %d datagrams, want %d", spray.DatagramsOut, noisyUDP)
	}

	// The quiet pod, while the noisy one holds everything it could.
	quietDir := testCgroup(t)
	p := randomPair(t, false)
	addr := netip.AddrPortFrom(p.AddrA, 8084)
	qsrv := testutil.Start(t, inCgroup(quietDir, p.A.Command(peerBin, "tcp-serve", "-listen", addr.String(), "-reply", "100")))
	qsrv.ReadJSON(t, &ready)
	sink := testutil.Start(t, inCgroup(quietDir, p.A.Command(peerBin, "udp-sink", "-listen", netip.AddrPortFrom(p.AddrA, 7002).String())))
	sink.ReadJSON(t, &ready)
	var cres result.Connect
	testutil.Output(t, inCgroup(quietDir, p.B.Command(peerBin, "tcp-connect", "-addr", addr.String(), "-count", strconv.Itoa(quietConn), "-bytes", "1000")), &cres)
	var ures result.Serve
	testutil.Output(t, inCgroup(quietDir, p.B.Command(peerBin, "udp-send", "-addr", netip.AddrPortFrom(p.AddrA, 7002).String(), "-count", strconv.Itoa(quietUDP), "-size", "50")), &ures)
	var sres, sinkres result.Serve
	qsrv.Stop(t, &sres)
	sink.Stop(t, &sinkres)
	if cres.OK != quietConn || sres.BytesIn != quietConn*1000 || sinkres.DatagramsIn != quietUDP {
		t.Fatalf("quiet traffic was not as planned: client %+v server %+v sink %+v", cres, sres, sinkres)
	}
	release()

	tcpDone := func(s totals) bool { return s.opened == quietConn && s.closed == quietConn }
	for _, q := range []string{
		fmt.Sprintf("observer=client&from-netns=%d&to-ip=%s&to-port=8084", p.B.Inode, p.AddrA),
		fmt.Sprintf("observer=server&to-netns=%d&to-ip=%s&to-port=8084", p.A.Inode, p.AddrA),
	} {
		s := sum(a.settled(t, q, tcpDone))
		if s.bytesToDst != quietConn*1000 || s.bytesToSrc != quietConn*100 {
			t.Errorf("quiet pod's TCP (%s): bytes %d→ %d←, want %d %d", q, s.bytesToDst, s.bytesToSrc, quietConn*1000, quietConn*100)
		}
	}
	udpDone := func(s totals) bool { return s.datagramsToDst == quietUDP }
	for _, q := range []string{
		fmt.Sprintf("protocol=udp&observer=client&from-netns=%d&to-port=7002", p.B.Inode),
		fmt.Sprintf("protocol=udp&observer=server&to-netns=%d&to-port=7002", p.A.Inode),
	} {
		if s := sum(a.settled(t, q, udpDone)); s.bytesToDst != quietUDP*50 {
			t.Errorf("quiet pod's UDP (%s): %d bytes, want %d", q, s.bytesToDst, quietUDP*50)
		}
	}

	// Everything of the noisy pod is either counted or refused, and the
	// refusals name its cgroup.
	tracked := func(s totals) bool { return s.opened == s.closed && s.opened > 0 }
	cs := sum(a.settled(t, fmt.Sprintf("observer=client&from-netns=%d&to-port=9000", noisy.Inode), tracked))
	ss := sum(a.settled(t, fmt.Sprintf("observer=server&to-netns=%d&to-port=9000", noisy.Inode), tracked))
	us := sum(a.settled(t, fmt.Sprintf("protocol=udp&observer=client&from-netns=%d", noisy.Inode), func(s totals) bool { return s.datagramsToDst > 0 }))
	m := a.metrics(t)
	name := "/" + filepath.Base(noisyDir)
	refusedTCP := m[`flowlens_agent_refused_total{cgroup="`+name+`",map="tcp_socks"}`]
	refusedUDP := m[`flowlens_agent_refused_total{cgroup="`+name+`",map="udp_flows"}`]
	t.Logf("noisy pod: %d+%d sockets tracked, %.0f refused; %d datagrams counted, %.0f refused",
		cs.opened, ss.opened, refusedTCP, us.datagramsToDst, refusedUDP)
	if got := float64(cs.opened+ss.opened) + refusedTCP; got != 2*noisyConn {
		t.Errorf("noisy sockets: %d tracked + %.0f refused = %.0f, want %d", cs.opened+ss.opened, refusedTCP, got, 2*noisyConn)
	}
	if got := float64(us.datagramsToDst) + refusedUDP; got != noisyUDP {
		t.Errorf("noisy datagrams: %d counted + %.0f refused = %.0f, want %d", us.datagramsToDst, refusedUDP, got, noisyUDP)
	}
	if cs.opened+ss.opened > mapSize/4+2 || refusedTCP == 0 || refusedUDP == 0 {
		t.Errorf("the noisy pod was not held to its share (%d of %d): %d sockets tracked, %.0f/%.0f refused",
			mapSize/4, mapSize, cs.opened+ss.opened, refusedTCP, refusedUDP)
	}
	if lost := m[`flowlens_agent_lost_total{reason="tcp_cgroup_share",stage="kernel"}`]; lost != refusedTCP {
		t.Errorf("lost_total{tcp_cgroup_share} = %.0f, want the noisy pod's %.0f", lost, refusedTCP)
	}
	if lost := m[`flowlens_agent_lost_total{reason="udp_cgroup_share",stage="kernel"}`]; lost != refusedUDP {
		t.Errorf("lost_total{udp_cgroup_share} = %.0f, want the noisy pod's %.0f", lost, refusedUDP)
	}
}
