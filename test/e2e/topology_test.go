package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/internal/topology"
	"github.com/flowlens/flowlens/test/peer/result"
)

// topology asks the agent for the graph of query.
func (a api) topology(query string) (topology.Graph, error) {
	resp, err := http.Get("http://" + string(a) + "/api/v1/topology?" + query)
	if err != nil {
		return topology.Graph{}, fmt.Errorf("get topology: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return topology.Graph{}, fmt.Errorf("read topology: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return topology.Graph{}, fmt.Errorf("topology?%s: %s: %s", query, resp.Status, b)
	}
	var g topology.Graph
	if err := json.Unmarshal(b, &g); err != nil {
		return topology.Graph{}, fmt.Errorf("decode topology %q: %w", b, err)
	}
	return g, nil
}

// peerAs is a copy of the peer binary under a name of its own, so the
// processes it runs have a command (and a process node) no other test's
// has.
func peerAs(t *testing.T, prefix string) (path, command string) {
	t.Helper()
	b, err := os.ReadFile(peerBin)
	testutil.Must(t, err, "read peer")
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	command = prefix + hex.EncodeToString(suffix) // within the 15 characters of a comm
	path = filepath.Join(t.TempDir(), command)
	testutil.Must(t, os.WriteFile(path, b, 0o755), "copy peer")
	return path, command
}

// processTraffic makes n connections of size bytes, answered with reply
// bytes each, between two processes in two namespaces, each with a command
// of its own (prefix + "c", prefix + "s" and a random suffix), and returns
// the client's and the server's commands.
func processTraffic(t *testing.T, prefix string, n, size, reply int) (clientCmd, serverCmd string) {
	t.Helper()
	p := randomPair(t, false)
	serverBin, serverCmd := peerAs(t, prefix+"s")
	clientBin, clientCmd := peerAs(t, prefix+"c")
	addr := netip.AddrPortFrom(p.AddrA, 8080)
	server := testutil.Start(t, p.A.Command(serverBin, "tcp-serve", "-listen", addr.String(), "-reply", strconv.Itoa(reply)))
	var ready struct{ Ready bool }
	server.ReadJSON(t, &ready)
	if !ready.Ready {
		t.Fatalf("server on %s did not become ready", addr)
	}
	var cres result.Connect
	testutil.Output(t, p.B.Command(clientBin, "tcp-connect", "-addr", addr.String(), "-count", strconv.Itoa(n), "-bytes", strconv.Itoa(size)), &cres)
	var sres result.Serve
	server.Stop(t, &sres)
	if cres.OK != int64(n) || sres.Connections != int64(n) {
		t.Fatalf("traffic itself was not as planned: client %+v server %+v", cres, sres)
	}
	return clientCmd, serverCmd
}

// N connections between two processes observed on both sides are one
// edge of the process graph, counted once: N opened, N closed, and no edge
// from the server's own records.
func TestTopologyProcessEdgeCountedOnce(t *testing.T) {
	testutil.RequirePrivileged(t)
	const n, size, reply = 20, 1000, 300
	clientCmd, serverCmd := processTraffic(t, "topo", n, size, reply)

	host, err := os.Hostname()
	testutil.Must(t, err, "hostname")
	clientID, serverID := "process:"+host+"/"+clientCmd, "process:"+host+"/"+serverCmd
	// What reached the server's process, whoever the store says sent it:
	// a connection counted from both sides would show twice, or as a
	// second edge from the client's address.
	type intoServer struct {
		edges          int
		source         string
		opened, closed uint64
		bytesToDst     uint64
		bytesToSrc     uint64
	}
	read := func() intoServer {
		g, err := shared.topology("level=process&window=5m")
		if err != nil {
			t.Fatal(err)
		}
		var in intoServer
		for _, e := range g.Edges {
			if e.Destination == serverID || e.Source == serverID {
				in.edges++
				in.source = e.Source
				in.opened += e.ConnectionsOpened
				in.closed += e.ConnectionsClosed
				in.bytesToDst += e.BytesToDestination
				in.bytesToSrc += e.BytesToSource
			}
		}
		return in
	}
	// Settled: unchanged over two polls, so a server side counted late (it
	// waits for its client a few intervals) would have shown.
	got := settle(t, "topology edge into "+serverID, 30*time.Second, read, func(in intoServer) bool {
		return in.opened >= n && in.closed >= n
	})
	want := intoServer{edges: 1, source: clientID, opened: n, closed: n, bytesToDst: n * size, bytesToSrc: n * reply}
	if got != want {
		t.Fatalf("edges touching %s: %+v, want %+v", serverID, got, want)
	}

	// The command shows the same edge.
	out, err := exec.Command(flowlensBin, "topology", "--server", string(shared), "--level", "process", "--window", "5m").CombinedOutput()
	if err != nil {
		t.Fatalf("flowlens topology: %v\n%s", err, out)
	}
	row := fmt.Sprintf("%s %s %d %d 0", clientID, serverID, n, n)
	found := false
	for _, l := range strings.Split(string(out), "\n") {
		found = found || strings.HasPrefix(strings.Join(strings.Fields(l), " "), row)
	}
	if !found {
		t.Fatalf("flowlens topology printed no row %q:\n%s", row, out)
	}
}

// A query the API cannot answer is refused with its reason.
func TestTopologyRefusesBadQueries(t *testing.T) {
	testutil.RequirePrivileged(t)
	for query, want := range map[string]string{
		"level=galaxy": `level: unknown level "galaxy"`,
		"window=15s":   "window 15s: want a multiple of the resolution 10s",
		"since=now":    `since="now": want an RFC 3339 time`,
	} {
		_, err := shared.topology(query)
		if err == nil || !strings.Contains(err.Error(), "400 Bad Request: "+want) {
			t.Errorf("topology?%s: %v, want 400 with %q", query, err, want)
		}
	}
}
