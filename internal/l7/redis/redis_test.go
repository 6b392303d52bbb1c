package redis

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/l7test"
)

// counts is "METHOD" or "METHOD:ERROR" → requests; "!" marks never
// answered (l7test.Outcome).
func counts(t *testing.T, rs []l7.Request) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range rs {
		out[l7test.Outcome(t, flow.Redis, r)]++
	}
	return out
}

func methods(rs []l7.Request) []string {
	var out []string
	for _, r := range rs {
		s := r.Info.Method
		if r.Info.Error != "" {
			s += ":" + r.Info.Error
		}
		out = append(out, s)
	}
	return out
}

// The recordings of hack/l7capture/record.sh against Debian's Redis 7.0.
var recorded = map[string]map[string]int{
	// redis-cli (RESP2): COMMAND DOCS at start (150 kB), 4 SET, 4 GET, a
	// GET of a list (WRONGTYPE), an unknown command (ERR), MULTI, 2 INCR
	// (QUEUED), EXEC, CONFIG GET, HSET, HGETALL, 201 RPUSH, LRANGE of 200.
	"resp2-1": {
		"COMMAND DOCS": 1, "SET": 4, "GET": 4, "GET:WRONGTYPE": 1, "NOSUCHCOMMAND:ERR": 1,
		"MULTI": 1, "INCR": 2, "EXEC": 1, "CONFIG GET": 1, "HSET": 1, "HGETALL": 1,
		"RPUSH": 201, "LRANGE": 1,
	},
	// redis-cli -3: HELLO 3, then maps, sets, a double, a null, a
	// verbatim string, an error.
	"resp3-1": {
		"HELLO": 1, "COMMAND DOCS": 1, "HGETALL": 1, "SMEMBERS": 2, "SADD": 1, "ZADD": 1,
		"ZSCORE": 1, "GET": 1, "CLIENT SETNAME": 1, "CLIENT INFO": 1, "NOSUCHCOMMAND:ERR": 1,
	},
}

func TestRecorded(t *testing.T) {
	for name, want := range recorded {
		t.Run(name, func(t *testing.T) {
			ms := l7test.Load(t, "testdata/"+name+".samples")
			if !(Protocol{}).Detect(ms[0]) {
				t.Fatal("first command not detected")
			}
			for _, v := range l7test.Shapes(ms, 5) {
				rs, err := l7test.Replay(Protocol{}.New(), v.Messages)
				if err != nil {
					t.Fatalf("%s: %v", v.Name, err)
				}
				if got := counts(t, rs); !reflect.DeepEqual(got, want) {
					t.Errorf("%s:\n got %v\nwant %v", v.Name, got, want)
				}
			}
		})
	}
}

// TestRecordedPipeline: redis-cli --pipe writes 100 PINGs and an ECHO in
// one call. Whole, 64 wait (l7.MaxPending) and 37 are let go; capped at
// 256 bytes, the 18 PINGs the sample shows are answered by the first
// replies and the rest of both calls is hidden.
func TestRecordedPipeline(t *testing.T) {
	ms := l7test.Load(t, "testdata/pipeline-1.samples")
	p := Protocol{}.New()
	rs, err := l7test.Replay(p, ms)
	if err != nil {
		t.Fatal(err)
	}
	if got, dropped := counts(t, rs), p.(l7.Dropper).TakeDropped(); !reflect.DeepEqual(got, map[string]int{"PING": 63, "ECHO": 1}) || dropped != 37 {
		t.Errorf("whole: %v, %d dropped", got, dropped)
	}
	rs, err = l7test.Replay(Protocol{}.New(), l7test.Cap(ms, 256))
	if got := counts(t, rs); err != nil || !reflect.DeepEqual(got, map[string]int{"PING": 18}) {
		t.Errorf("capped: %v %v", err, got)
	}
}

func cmd(args ...string) string {
	s := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		s += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	return s
}

func exchange(t *testing.T, calls ...string) []l7.Request {
	t.Helper()
	var ms []l7.Message
	for i, c := range calls {
		d := l7.FromClient
		if i%2 == 1 {
			d = l7.FromServer
		}
		ms = append(ms, l7.Message{Dir: d, NS: uint64(i + 1), Len: len(c), Data: []byte(c)})
	}
	rs, err := l7test.Replay(Protocol{}.New(), ms)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestReplies(t *testing.T) {
	rs := exchange(t,
		cmd("client", "setname", "x")+cmd("get", "k")+cmd("hgetall", "h")+cmd("eval", "s", "0")+cmd("get", "k")+cmd("config", "get", "*max*")+cmd("object", "x y"),
		// A push before the first reply; an attribute before the second;
		// a nested map with an attribute inside; a blob error; an error
		// in lower case; a big number; a RESP2 null array.
		">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n"+"+OK\r\n"+
			"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n"+
			"%2\r\n+a\r\n|1\r\n+x\r\n+y\r\n*2\r\n#t\r\n,1.5\r\n+b\r\n~1\r\n_\r\n"+
			"!21\r\nSYNTAX invalid syntax\r\n"+
			"-oops lower\r\n"+
			"(3492890328409238509324850943850943825024385\r\n"+
			"*-1\r\n",
	)
	want := []string{"CLIENT SETNAME", "GET", "HGETALL", "EVAL:SYNTAX", "GET:ERR", "CONFIG GET", "OBJECT"}
	if got := methods(rs); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestMultiExecAndInline(t *testing.T) {
	rs := exchange(t,
		cmd("PING"), "+PONG\r\n",
		"\r\nset k v\r\n", "+OK\r\n", // inline, after a blank line
		cmd("MULTI")+cmd("INCR", "n")+cmd("LPOP", "n"), "+OK\r\n+QUEUED\r\n+QUEUED\r\n",
		cmd("EXEC"), "*2\r\n:1\r\n-WRONGTYPE Operation\r\n",
		cmd("MULTI")+cmd("NOPE"), "+OK\r\n-ERR unknown command\r\n",
		cmd("EXEC"), "-EXECABORT Transaction discarded\r\n",
	)
	want := []string{"PING", "SET", "MULTI", "INCR", "LPOP", "EXEC", "MULTI", "NOPE:ERR", "EXEC:EXECABORT"}
	if got := methods(rs); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestSubscribe(t *testing.T) {
	rs := exchange(t,
		cmd("GET", "a"), "$-1\r\n",
		cmd("SUBSCRIBE", "ch"), ">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n",
		cmd("PING"), ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
	)
	if got := methods(rs); !reflect.DeepEqual(got, []string{"GET", "SUBSCRIBE"}) {
		t.Errorf("got %v", got)
	}
}

func TestHidden(t *testing.T) {
	big := cmd("SET", "k", strings.Repeat("x", 5000))
	reply := "*300\r\n" + strings.Repeat("$4\r\nitem\r\n", 300)
	c, s := l7.FromClient, l7.FromServer
	ms := []l7.Message{
		// A value hidden past the sample: skipped by count.
		{Dir: c, NS: 1, Len: len(big), Data: []byte(big[:256])},
		{Dir: s, NS: 2, Len: 5, Data: []byte("+OK\r\n")},
		// A reply whose elements are hidden: the server side is lost…
		{Dir: c, NS: 3, Len: 30, Data: []byte(cmd("LRANGE", "l", "0", "-1"))},
		{Dir: s, NS: 4, Len: len(reply), Data: []byte(reply[:256])},
		{Dir: s, NS: 5, Len: 4000, Data: []byte("m\r\n$4\r\nitem\r\n")},
		// …and framed again from the client's next command.
		{Dir: c, NS: 6, Len: 14, Data: []byte(cmd("PING"))},
		{Dir: s, NS: 7, Len: 7, Data: []byte("+PONG\r\n")},
	}
	rs, err := l7test.Replay(Protocol{}.New(), ms)
	if err != nil {
		t.Fatal(err)
	}
	if got := methods(rs); !reflect.DeepEqual(got, []string{"SET", "LRANGE", "PING"}) || rs[1].ResponNS != 4 || rs[2].ResponNS != 7 {
		t.Errorf("got %v %+v", got, rs)
	}
}

func TestBoundsAndExpire(t *testing.T) {
	p := Protocol{}.New()
	var done []l7.Request
	for i := range l7.MaxPending + 2 {
		c := cmd("GET", "k")
		var err error
		if done, err = p.Feed(l7.Message{Dir: l7.FromClient, NS: uint64(i + 1), Len: len(c), Data: []byte(c)}, done); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.(l7.Dropper).TakeDropped(); n != 2 || len(done) != 0 {
		t.Fatalf("dropped %d, done %d", n, len(done))
	}
	done = p.Expire(6, nil) // sent at 3, 4, 5
	if got := counts(t, done); !reflect.DeepEqual(got, map[string]int{"GET!": 3}) {
		t.Fatalf("expired %v", got)
	}
	// Nested deeper than maxDepth: an error, not a stack.
	deep := strings.Repeat("*1\r\n", maxDepth+1)
	if _, err := p.Feed(l7.Message{Dir: l7.FromServer, NS: 100, Len: len(deep), Data: []byte(deep)}, nil); err == nil {
		t.Fatal("no error for deep nesting")
	}
}

func TestDetect(t *testing.T) {
	for s, want := range map[string]bool{
		cmd("GET", "k"):                     true,
		"*1\r\n$4\r\nPING\r\n":              true,
		"*1\r\n$4\r\n1234\r\n":              false,
		"*x\r\n":                            false,
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n": false,
		"+OK\r\n":                           false,
		"":                                  false,
	} {
		if got := (Protocol{}).Detect(l7.Message{Dir: l7.FromClient, Len: len(s), Data: []byte(s)}); got != want {
			t.Errorf("Detect(%q) = %v", s, got)
		}
	}
	if (Protocol{}).Detect(l7.Message{Dir: l7.FromServer, Len: 14, Data: []byte(cmd("PING"))}) {
		t.Error("a server's array detected")
	}
	if _, err := (Protocol{}).New().Feed(l7.Message{Dir: l7.FromClient, Len: 3, Data: []byte("GET")}, nil); err == nil {
		t.Error("no error for a non-RESP start")
	}
}

func TestCommandName(t *testing.T) {
	got := []string{
		commandName([]byte("json.get"), nil),
		commandName([]byte("client"), []byte("kill")),
		commandName([]byte("client"), []byte("a b")),
		commandName([]byte("get"), []byte("key")),
		commandName([]byte("g\x00t"), nil),
		commandName([]byte(strings.Repeat("a", 33)), nil),
	}
	want := []string{"JSON.GET", "CLIENT KILL", "CLIENT", "GET", "", ""}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
}
