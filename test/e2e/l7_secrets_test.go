package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/flowlens/flowlens/internal/testutil"
)

// loggingAgent runs a `flowlens up` of the test's own whose output goes to
// a file, and returns its API and a stop that ends it (also at cleanup)
// and returns everything it logged.
func loggingAgent(t *testing.T) (api, func() []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.log")
	f, err := os.Create(path)
	testutil.Must(t, err, "create the agent's log")
	defer f.Close() // the agent has its own descriptor
	cmd, addr, err := startAgentLogging(f)
	if err != nil {
		t.Fatal(err)
	}
	stop := func() []byte {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
		b, err := os.ReadFile(path)
		testutil.Must(t, err, "read the agent's log")
		return b
	}
	t.Cleanup(func() { stop() })
	return api(addr), stop
}

// get returns the body of an agent's answer to a GET of path.
func (a api) get(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + string(a) + path)
	testutil.Must(t, err, "get "+path)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	testutil.Must(t, err, "read "+path)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("get %s: %s: %s", path, resp.Status, b)
	}
	return b
}

// outputs is everything an agent serves that could carry what it saw:
// its records, the topology at every level a plain host has, its metrics,
// and what `flowlens observe` prints of its records.
func (a api) outputs(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{
		"/api/v1/flows": a.get(t, "/api/v1/flows"),
		"/metrics":      a.get(t, "/metrics"),
	}
	for _, level := range []string{"process", "workload", "external"} {
		path := "/api/v1/topology?window=5m&level=" + level
		out[path] = a.get(t, path)
	}
	for _, format := range []string{"compact", "table", "json"} {
		b, err := exec.Command(flowlensBin, "observe", "--server", string(a), "--last", "65536", "-o", format).Output()
		testutil.Must(t, err, "flowlens observe -o "+format)
		out["flowlens observe -o "+format] = b
	}
	return out
}

// checkNoSecrets fails for every secret any output carries, showing where.
func checkNoSecrets(t *testing.T, agent string, outputs map[string][]byte, secrets []string) {
	t.Helper()
	for name, b := range outputs {
		for _, s := range secrets {
			if i := bytes.Index(b, []byte(s)); i >= 0 {
				t.Errorf("%s agent's %s carries %s: …%q…", agent, name, s, b[max(0, i-120):min(len(b), i+len(s)+40)])
			}
		}
	}
}

// Issue 14, item 5: a cookie, an Authorization header, a query string
// value and a body, in plain HTTP and over TLS, a PostgreSQL INSERT's value
// and a Redis value all pass through the agents (their requests are
// parsed), and none of them appears in anything flowlens outputs: records,
// topology, metrics, observe's lines, or the agent's own log.
func TestL7SecretsNeverLeave(t *testing.T) {
	testutil.RequirePrivileged(t)
	own, stop := loggingAgent(t)
	run := testutil.Prefix() // secrets no earlier run or other test can have left
	secret := func(what string) string { return "SECRET-" + what + "-" + run }
	secrets := []string{secret("COOKIE"), secret("TOKEN"), secret("QUERY"), secret("BODY"), secret("PG"), secret("REDIS")}

	bin := l7Binary(t, "l7peer")
	p := randomPair(t, false)
	const n = 10
	plan := make([]httpRequest, n)
	for i := range plan {
		plan[i] = httpRequest{Method: "POST", Path: "/login?user=alice&password=" + secret("QUERY"),
			Header: map[string]string{"Cookie": "session=" + secret("COOKIE"), "Authorization": "Bearer " + secret("TOKEN")},
			Body:   `{"note":"` + secret("BODY") + `"}`, template: "/login", status: 200}
	}
	own.awaitTLSProbed(t, bin, p, 9443, func(warm netip.AddrPort) error {
		return p.B.Command(bin, "get", "-url", "https://"+warm.String()+"/warmup").Run()
	})
	for _, tc := range []struct {
		port   uint16
		scheme string
	}{{8080, "http"}, {8443, "https"}} {
		addr := netip.AddrPortFrom(p.AddrA, tc.port)
		var args []string
		if tc.scheme == "https" {
			args = []string{"-tls"}
		}
		l7Serve(t, bin, p.A, addr, args...)
		runGoClient(t, bin, p.B, tc.scheme+"://"+addr.String(), plan, 1)
		// The requests were parsed, so their bytes went through the agent.
		own.checkSides(t, p, "", tc.port, wantHTTP(plan, p.AddrA, tc.scheme == "https"))
	}

	pg := startPostgres(t, p.A, p.AddrA, p.AddrB)
	if _, err := pg.local("CREATE TABLE sessions (token text)"); err != nil {
		t.Fatal(err)
	}
	pg.psql(t, p.B, fmt.Sprintf("INSERT INTO sessions VALUES ('%s');\nSELECT token FROM sessions;\n", secret("PG")))
	r := startRedis(t, p.A, p.AddrA)
	r.cli(t, p.B, 1, "SET", "session", secret("REDIS"))
	if got := r.cli(t, p.B, 1, "GET", "session"); got != secret("REDIS")+"\n" {
		t.Fatalf("traffic was not as planned: GET answered %q", got)
	}
	// Their connections' records are complete, so their bytes went
	// through the agent (what it parses of them, TestL7Postgres and
	// TestL7Redis check).
	for port, conns := range map[uint16]uint32{5432: 1, 6379: 2} {
		own.settled(t, fmt.Sprintf("observer=client&from-netns=%d&to-port=%d", p.B.Inode, port),
			func(s totals) bool { return s.closed >= conns })
	}

	checkNoSecrets(t, "the test's", own.outputs(t), secrets)
	checkNoSecrets(t, "the shared", shared.outputs(t), secrets)
	log := stop()
	if !bytes.Contains(log, []byte("flowlens up")) {
		t.Fatalf("the agent's log was not captured: %q", log)
	}
	checkNoSecrets(t, "the test's", map[string][]byte{"log": log}, secrets)
}
