package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
)

// postgres is a PostgreSQL server the test runs in a namespace, as the
// postgres user, from a data directory of its own.
type postgres struct {
	dir  string // holds the data directory and the unix socket
	addr netip.Addr
}

// startPostgres initdbs a cluster into a temporary directory, lets the
// client's address in with trust auth, and runs the server on addr:5432
// in ns until the test ends.
func startPostgres(t *testing.T, ns *testutil.Netns, addr, client netip.Addr) *postgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		t.Fatal("PostgreSQL is required (Debian package postgresql; hack/setup.sh installs it)")
	}
	slices.Sort(bins)
	bin := filepath.Dir(bins[len(bins)-1])
	u, err := user.Lookup("postgres")
	testutil.Must(t, err, "look up the postgres user")
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "flowlens-pg-")
	testutil.Must(t, err, "make the data directory")
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	testutil.Must(t, os.Chown(dir, uid, gid), "give the data directory to postgres")
	// The server insists on not running as root: setpriv drops to postgres
	// and execs in place, so the process started is the postmaster.
	asPostgres := func(name string, args ...string) []string {
		return append([]string{"setpriv", "--reuid=" + u.Uid, "--regid=" + u.Gid, "--clear-groups", filepath.Join(bin, name)}, args...)
	}
	data := filepath.Join(dir, "data")
	initdb := asPostgres("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	if out, err := exec.Command(initdb[0], initdb[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	testutil.Must(t, err, "open pg_hba.conf")
	_, err = fmt.Fprintf(hba, "host all postgres %s/32 trust\n", client)
	testutil.Must(t, err, "let the client in")
	testutil.Must(t, hba.Close(), "close pg_hba.conf")
	server := asPostgres("postgres", "-D", data, "-c", "listen_addresses="+addr.String(), "-c", "port=5432",
		"-c", "unix_socket_directories="+dir, "-c", "fsync=off")
	proc := testutil.Start(t, ns.Command(server[0], server[1:]...))
	// Before testutil's kill: a fast shutdown, in which the postmaster
	// ends its own children.
	t.Cleanup(func() {
		if proc.Cmd.ProcessState == nil {
			_ = proc.Cmd.Process.Signal(syscall.SIGINT)
			done := make(chan struct{})
			go func() { _ = proc.Cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = proc.Cmd.Process.Kill()
				<-done
			}
		}
	})
	pg := &postgres{dir: dir, addr: addr}
	testutil.Eventually(t, 30*time.Second, func() error {
		_, err := pg.local("SELECT 1")
		return err
	})
	return pg
}

// local runs SQL over the server's unix socket, which flowlens does not
// see, and returns psql's unaligned output.
func (pg *postgres) local(sql string) (string, error) {
	out, err := exec.Command("psql", "-h", pg.dir, "-U", "postgres", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql -c %q: %w: %s", sql, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// psql runs a script from ns over TCP, as the test's client, and returns
// what psql printed on stderr (errors, with their SQLSTATE).
func (pg *postgres) psql(t *testing.T, ns *testutil.Netns, script string) string {
	t.Helper()
	cmd := ns.Command("psql", "-h", pg.addr.String(), "-U", "postgres", "-d", "postgres", "-X", "-q",
		"-v", "VERBOSITY=verbose", "-f", writeFile(t, "script.sql", script))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err != nil {
		t.Fatalf("psql: %v\n%s%s", err, out, stderr.String())
	}
	return stderr.String()
}

// redis is a redis-server the test runs in a namespace.
type redis struct{ addr netip.Addr }

func startRedis(t *testing.T, ns *testutil.Netns, addr netip.Addr) *redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is required (Debian package redis-server; hack/setup.sh installs it)")
	}
	testutil.Start(t, ns.Command("redis-server", "--bind", addr.String(), "--port", "6379", "--save", "",
		"--appendonly", "no", "--protected-mode", "no", "--daemonize", "no", "--dir", t.TempDir(), "--loglevel", "warning"))
	r := &redis{addr: addr}
	testutil.Eventually(t, 10*time.Second, func() error {
		out, err := ns.Command("redis-cli", "-h", addr.String(), "PING").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "PONG" {
			return fmt.Errorf("redis-cli PING: %v %s", err, out)
		}
		return nil
	})
	return r
}

// cli runs one redis-cli from ns: the command repeat times over one
// connection (-r). Given arguments, redis-cli sends only them (without,
// it asks the server for COMMAND DOCS first).
func (r *redis) cli(t *testing.T, ns *testutil.Netns, repeat int, args ...string) string {
	t.Helper()
	out, err := ns.Command("redis-cli", append([]string{"-h", r.addr.String(), "-r", strconv.Itoa(repeat)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// commandStats is the server's own count of calls and failed calls per
// command, from INFO commandstats.
func (r *redis) commandStats(t *testing.T, ns *testutil.Netns) map[string][2]int {
	t.Helper()
	out, err := ns.Command("redis-cli", "-h", r.addr.String(), "INFO", "commandstats").Output()
	testutil.Must(t, err, "redis-cli INFO commandstats")
	stats := map[string][2]int{}
	for _, line := range strings.Split(string(out), "\n") {
		name, fields, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var calls, failed int
		for _, f := range strings.Split(fields, ",") {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "calls":
				calls, _ = strconv.Atoi(v)
			case "failed_calls":
				failed, _ = strconv.Atoi(v)
			}
		}
		stats[strings.TrimPrefix(name, "cmdstat_")] = [2]int{calls, failed}
	}
	return stats
}

// Issue 14, item 4: psql's statements to a real PostgreSQL are counted
// exactly per kind, with the failing one's SQLSTATE, on both sides.
func TestL7Postgres(t *testing.T) {
	testutil.RequirePrivileged(t)
	p := randomPair(t, false)
	pg := startPostgres(t, p.A, p.AddrA, p.AddrB)
	if _, err := pg.local("CREATE TABLE items (id int, name text)"); err != nil {
		t.Fatal(err)
	}
	const inserts, selects = 4, 6
	var script strings.Builder
	for i := range inserts {
		fmt.Fprintf(&script, "INSERT INTO items VALUES (%d, 'item %d');\n", i, i)
	}
	for i := range selects {
		fmt.Fprintf(&script, "SELECT name FROM items WHERE id = %d;\n", i)
	}
	script.WriteString("SELECT * FROM missing_table;\n")
	stderr := pg.psql(t, p.B, script.String())
	if n := strings.Count(stderr, "ERROR:"); n != 1 || !strings.Contains(stderr, "ERROR:  42P01:") {
		t.Fatalf("traffic was not as planned: psql said %q, want exactly one 42P01 error", stderr)
	}
	if n, err := pg.local("SELECT count(*) FROM items"); err != nil || n != strconv.Itoa(inserts) {
		t.Fatalf("traffic was not as planned: %s rows inserted (%v), want %d", n, err, inserts)
	}
	shared.checkSides(t, p, "", 5432, l7Groups{
		{Protocol: flow.Postgres, Method: "INSERT"}:                 {Count: inserts},
		{Protocol: flow.Postgres, Method: "SELECT"}:                 {Count: selects},
		{Protocol: flow.Postgres, Method: "SELECT", Error: "42P01"}: {Count: 1, Failed: 1},
	})
}

// Issue 14, item 4: redis-cli's commands to a real redis-server are
// counted exactly per command, with the error reply's first word, on
// both sides.
func TestL7Redis(t *testing.T) {
	testutil.RequirePrivileged(t)
	p := randomPair(t, false)
	r := startRedis(t, p.A, p.AddrA)
	const sets, gets, incrs = 5, 7, 3
	r.cli(t, p.B, sets, "SET", "greeting", "hello")
	r.cli(t, p.B, gets, "GET", "greeting")
	r.cli(t, p.B, incrs, "INCR", "counter")
	if out := r.cli(t, p.B, 1, "INCR", "greeting"); !strings.HasPrefix(out, "ERR value is not an integer") {
		t.Fatalf("traffic was not as planned: INCR of a string answered %q", out)
	}
	stats := r.commandStats(t, p.A)
	for cmd, want := range map[string][2]int{"set": {sets, 0}, "get": {gets, 0}, "incr": {incrs + 1, 1}} {
		if stats[cmd] != want {
			t.Fatalf("traffic was not as planned: the server counted %s %v (calls, failed), want %v; all: %v", cmd, stats[cmd], want, stats)
		}
	}
	shared.checkSides(t, p, "", 6379, l7Groups{
		{Protocol: flow.Redis, Method: "SET"}:                {Count: sets},
		{Protocol: flow.Redis, Method: "GET"}:                {Count: gets},
		{Protocol: flow.Redis, Method: "INCR"}:               {Count: incrs},
		{Protocol: flow.Redis, Method: "INCR", Error: "ERR"}: {Count: 1, Failed: 1},
	})
}
