package postgres

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/l7test"
)

// summary is "METHOD" or "METHOD:SQLSTATE" per request, "!" when never
// answered (l7test.Outcome).
func summary(t *testing.T, rs []l7.Request) []string {
	t.Helper()
	var out []string
	for _, r := range rs {
		out = append(out, l7test.Outcome(t, flow.Postgres, r))
	}
	return out
}

func repeat(n int, s ...string) []string {
	var out []string
	for range n {
		out = append(out, s...)
	}
	return out
}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// The recordings of hack/l7capture/record.sh against Debian's PostgreSQL 15.
var recorded = map[string][]string{
	// psql, simple protocol: 3 INSERT, 5 SELECT, 1 failing SELECT (42P01),
	// BEGIN/UPDATE/COMMIT, DELETE, a WITH (its main statement: SELECT),
	// two statements in one Query (one request), a 100 kB result.
	"psql-1": cat(repeat(3, "INSERT"), repeat(5, "SELECT"), []string{"SELECT:42P01", "BEGIN", "UPDATE", "COMMIT", "DELETE", "SELECT", "SELECT", "SELECT"}),
	// pgbench -M prepared: P_0 and P_1 parsed once, each executed 5 times.
	"pgbench-prepared-2": repeat(5, "SELECT", "INSERT"),
	// pgbench -M extended: unnamed statements parsed every time.
	"pgbench-extended-2": repeat(5, "SELECT", "INSERT"),
	// The Parse fails (its Sync batch is the request); pgbench still binds
	// the statement that does not exist, and the server says so.
	"pgbench-prepared-fail-2": {"SELECT:42P01", "SELECT:26000"},
	// Parse, Bind, Execute, Sync in one call: the Execute fails.
	"pgbench-extended-fail-2": {"SELECT:42P01"},
	// pgbench's first connection only checks the server.
	"pgbench-prepared-1": nil,
}

func TestRecorded(t *testing.T) {
	for name, want := range recorded {
		t.Run(name, func(t *testing.T) {
			ms := l7test.Load(t, "testdata/"+name+".samples")
			if !(Protocol{}).Detect(ms[0]) {
				t.Fatal("startup not detected")
			}
			// Whole, capped as the kernel samples, and re-split by the byte.
			for _, v := range l7test.Shapes(ms, 7) {
				rs, err := l7test.Replay(Protocol{}.New(), v.Messages)
				if err != nil {
					t.Fatalf("%s: %v", v.Name, err)
				}
				if got := summary(t, rs); !reflect.DeepEqual(got, want) {
					t.Errorf("%s:\n got %v\nwant %v", v.Name, got, want)
				}
			}
		})
	}
}

// msg builds a typed message.
func msg(typ byte, body ...string) []byte {
	b := strings.Join(body, "")
	out := append([]byte{typ}, binary.BigEndian.AppendUint32(nil, uint32(4+len(b)))...)
	return append(out, b...)
}

func call(dir l7.Dir, ns uint64, parts ...[]byte) l7.Message {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return l7.Message{Dir: dir, NS: ns, Len: len(b), Data: b}
}

func untyped(code uint32, body string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(body)))
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, body...)
}

var (
	ready    = msg('Z', "I")
	complete = msg('C', "SELECT 1\x00")
	startup  = untyped(codeStartup, "user\x00u\x00\x00")
)

func errorResponse(code string) []byte {
	return msg('E', "SERROR\x00C"+code+"\x00Mboom\x00\x00")
}

func TestSSLRequest(t *testing.T) {
	c, s := l7.FromClient, l7.FromServer
	ms := []l7.Message{
		call(c, 1, untyped(codeSSL, "")),
		call(s, 2, []byte("N")),
		call(c, 3, startup),
		call(s, 4, msg('R', "\x00\x00\x00\x00"), msg('S', "a\x00b\x00"), msg('K', "12345678"), ready),
		call(c, 5, msg('Q', "select 1\x00")),
		call(s, 6, msg('T', "x"), msg('D', "y"), complete, ready),
	}
	rs, err := l7test.Replay(Protocol{}.New(), ms)
	if err != nil || !reflect.DeepEqual(summary(t, rs), []string{"SELECT"}) || rs[0].StartNS != 5 || rs[0].ResponNS != 6 {
		t.Fatalf("%v %+v", err, rs)
	}
	// Accepted: the rest is TLS, not readable here, and no error.
	ms = []l7.Message{
		call(c, 1, untyped(codeSSL, "")),
		call(s, 2, []byte("S")),
		call(c, 3, []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")),
	}
	if rs, err := l7test.Replay(Protocol{}.New(), ms); err != nil || len(rs) != 0 {
		t.Fatalf("after S: %v %+v", err, rs)
	}
}

func TestExtended(t *testing.T) {
	c, s := l7.FromClient, l7.FromServer
	parse := func(name, sql string) []byte { return msg('P', name+"\x00"+sql+"\x00\x00\x00") }
	bind := func(portal, stmt string) []byte { return msg('B', portal+"\x00"+stmt+"\x00\x00\x00\x00\x00\x00\x00") }
	exec := func(portal string) []byte { return msg('E', portal+"\x00\x00\x00\x00\x00") }
	sync := msg('S')
	ms := []l7.Message{
		// Prepare two named statements in one batch.
		call(c, 1, parse("s1", "UPDATE t SET a = $1"), parse("s2", "  -- c\n/* x */ insert into t values ($1)"), msg('D', "Ss1\x00"), sync),
		call(s, 2, msg('1'), msg('1'), msg('t', "\x00\x00"), msg('n'), ready),
		// A pipeline: three Executes before one Sync; the second fails,
		// the server skips the third.
		call(c, 3, bind("", "s1"), exec(""), bind("p", "s2"), exec("p"), bind("", "s1"), exec(""), sync),
		call(s, 4, msg('2'), msg('C', "UPDATE 1\x00"), msg('2'), errorResponse("23505")),
		call(s, 5, ready),
		// Reused by name, in portals.
		call(c, 6, bind("q", "s2"), exec("q"), sync),
		call(s, 7, msg('2'), msg('C', "INSERT 0 1\x00"), ready),
		// A Bind whose parameters the sample cuts: the Execute and Sync
		// after it are hidden, and taken as there.
		l7.Message{Dir: c, NS: 8, Len: 5000, Data: bind("", "s1")[:9]},
		call(s, 9, msg('2'), msg('C', "UPDATE 1\x00"), ready),
		// The client's next call starts at a message again.
		call(c, 10, msg('Q', "COMMIT\x00")),
		call(s, 11, msg('C', "COMMIT\x00"), ready),
	}
	rs, err := l7test.Replay(Protocol{}.New(), ms)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"UPDATE", "INSERT:23505", "UPDATE:23505", "INSERT", "UPDATE", "COMMIT"}
	if got := summary(t, rs); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestHiddenResponse(t *testing.T) {
	c, s := l7.FromClient, l7.FromServer
	rows := call(s, 4, msg('T', "x"), msg('D', strings.Repeat("r", 300)), msg('D', "r"), msg('E', "SERROR\x00C57014\x00\x00"), ready)
	capped := rows
	capped.Data = rows.Data[:64]
	ms := []l7.Message{
		call(c, 1, startup),
		call(s, 2, ready),
		call(c, 3, msg('Q', "SELECT * FROM big\x00")),
		capped, // the error is hidden: answered, not known to fail
		l7.Message{Dir: s, NS: 5, Len: 9000, Data: []byte("rows rows rows")},
		call(c, 6, msg('Q', "SELECT 1\x00")),
		call(s, 7, complete, ready),
	}
	rs, err := l7test.Replay(Protocol{}.New(), ms)
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(t, rs); !reflect.DeepEqual(got, []string{"SELECT", "SELECT"}) || rs[0].ResponNS != 4 || rs[1].ResponNS != 7 {
		t.Errorf("got %v %+v", got, rs)
	}
}

func TestBounds(t *testing.T) {
	p := Protocol{}.New()
	done, err := p.Feed(call(l7.FromClient, 1, startup), nil)
	for i := range l7.MaxPending + 5 {
		done, err = p.Feed(call(l7.FromClient, uint64(i+2), msg('Q', fmt.Sprintf("SELECT %d\x00", i))), done)
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := p.(l7.Dropper).TakeDropped(); n != 5 || len(done) != 0 {
		t.Fatalf("dropped %d, done %d", n, len(done))
	}
	done = p.Expire(10, nil) // sent at 7, 8, 9
	if got := summary(t, done); !reflect.DeepEqual(got, []string{"SELECT!", "SELECT!", "SELECT!"}) {
		t.Fatalf("expired %v", got)
	}
	done, _ = p.Feed(call(l7.FromServer, 100, complete, ready), nil)
	if len(done) != 1 || done[0].StartNS != 10 {
		t.Fatalf("answered %+v", done)
	}
	if done = p.Expire(^uint64(0), nil); len(done) != l7.MaxPending-4 {
		t.Fatalf("left %d", len(done))
	}
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		data string
		want bool
	}{
		{string(startup), true},
		{string(untyped(codeSSL, "")), true},
		{string(untyped(codeGSSENC, "")), true},
		{string(msg('Q', "SELECT 1\x00")), true},
		{string(msg('P', "\x00SELECT $1\x00\x00\x00")) + string(msg('S')), true},
		{string(msg('Q', "SELECT 1")), false},           // no NUL
		{string(msg('Q', "SELECT 1\x00")) + "x", false}, // bytes past the messages
		{string(msg('Z', "I")), false},                  // not a client's
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"PUT /x HTTP/1.1\r\n\r\n", false},
		{"*1\r\n$4\r\nPING\r\n", false},
		{"\x00\x00\x00\x08\x00\x00\x00\x00", false},
	} {
		m := call(l7.FromClient, 1, []byte(tc.data))
		if got := (Protocol{}).Detect(m); got != tc.want {
			t.Errorf("Detect(%q) = %v", tc.data, got)
		}
	}
	if (Protocol{}).Detect(call(l7.FromServer, 1, startup)) {
		t.Error("a server's startup detected")
	}
}

func TestStatementKind(t *testing.T) {
	for sql, want := range map[string]string{
		"select 1":                             "SELECT",
		"  \n\tInsert into t":                  "INSERT",
		"-- hi\n/* x */ (SELECT 1) UNION":      "SELECT",
		"WITH x AS (SELECT 1) SELECT * FROM x": "SELECT",
		"with recursive r(n) as (select 1 union all select n+1 from r where n < 3), s as (select ')' from r) delete from t": "DELETE",
		"WITH x AS MATERIALIZED (SELECT 1) UPDATE t SET a = 1":                                                              "UPDATE",
		"WITH x AS (SELECT 1": "WITH", // cut
		"SELECT1":             "",
		"select_x":            "",
		"":                    "",
		"123":                 "",
		"ABCDEFGHIJKLMNOPQ":   "",
	} {
		if got := statementKind([]byte(sql)); got != want {
			t.Errorf("%q: %q, want %q", sql, got, want)
		}
	}
}
