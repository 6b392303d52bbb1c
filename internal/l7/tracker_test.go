package l7_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/http"
)

// fake is a line protocol for the tracker's tests: a client message
// "Q<name>" asks, a server message "A<name> <ip>..." answers the oldest
// question; "!" is malformed. Detect wants a first byte 'Q' or 'A'.
type fake struct{}

func (fake) Name() flow.L7Protocol { return flow.DNS }
func (fake) Detect(m l7.Message) bool {
	return len(m.Data) > 0 && (m.Data[0] == 'Q' || m.Data[0] == 'A')
}
func (fake) New() l7.Parser { return &fakeParser{} }

type fakeParser struct{ pending []l7.Request }

func (p *fakeParser) Feed(m l7.Message, done []l7.Request) ([]l7.Request, error) {
	s := string(m.Data)
	switch {
	case strings.HasPrefix(s, "Q"):
		p.pending = append(p.pending, l7.Request{Info: flow.Requests{Query: s[1:]}, StartNS: m.NS})
	case strings.HasPrefix(s, "A") && len(p.pending) > 0:
		r := p.pending[0]
		p.pending = p.pending[1:]
		fields := strings.Fields(s[1:])
		r.Info.RCode, r.ResponNS = "noerror", m.NS
		for _, f := range fields[min(1, len(fields)):] {
			if a, err := netip.ParseAddr(f); err == nil {
				r.Info.Answers = append(r.Info.Answers, a)
			}
		}
		done = append(done, r)
	case s == "!":
		return done, fmt.Errorf("malformed")
	}
	return done, nil
}

func (p *fakeParser) Expire(ns uint64, done []l7.Request) []l7.Request {
	for len(p.pending) > 0 && p.pending[0].StartNS < ns {
		done = append(done, p.pending[0])
		p.pending = p.pending[1:]
	}
	return done
}

func httpProto(t *testing.T) l7.Protocol {
	p, err := http.New(http.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newTracker(t *testing.T, cfg l7.Config) *l7.Tracker {
	if len(cfg.Protocols) == 0 {
		cfg.Protocols = []l7.Protocol{httpProto(t), fake{}}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return l7.NewTracker(cfg)
}

func sample(cookie uint64, dir l7.Dir, ns uint64, data string) l7.Sample {
	return l7.Sample{
		Key: l7.ConnKey{Cookie: cookie},
		Msg: l7.Message{Dir: dir, NS: ns, Len: len(data), Data: []byte(data)},
	}
}

// take returns every connection's groups by cookie.
func take(tr *l7.Tracker, now uint64) map[uint64][]flow.Requests {
	got := map[uint64][]flow.Requests{}
	tr.Take(now, func(k l7.ConnKey, rs []flow.Requests) { got[k.Cookie] = rs })
	return got
}

const ms = uint64(time.Millisecond)

// The mix: 1,000 requests over four keep-alive connections, 900
// answered 200, 60 404 and 40 500, on two paths with ids.
func TestTrackerAggregatesExactly(t *testing.T) {
	tr := newTracker(t, l7.Config{})
	type want struct {
		count, failed  uint32
		minUS, maxUS   uint32
		sumUS, answers uint64
	}
	wants := map[string]*want{}
	ns := uint64(1_000_000)
	for i := range 1000 {
		status := 200
		switch {
		case i%50 >= 48:
			status = 500
		case i%50 >= 45:
			status = 404
		}
		path, tmpl := fmt.Sprintf("/users/%d", i), "/users/{id}"
		if i%2 == 1 {
			path, tmpl = fmt.Sprintf("/orders/%08x-1111-4222-8333-%012x/items", i, i*7919), "/orders/{id}/items"
		}
		cookie := uint64(i%4 + 1)
		latUS := uint32(100 + i%37)
		req := fmt.Sprintf("GET %s?secret=%d HTTP/1.1\r\nHost: shop:8080\r\nCookie: c=%d\r\n\r\n", path, i, i)
		resp := fmt.Sprintf("HTTP/1.1 %d X\r\nContent-Length: 300\r\n\r\n%s", status, strings.Repeat("b", 300))
		tr.Sample(sample(cookie, l7.FromClient, ns, req))
		tr.Sample(sample(cookie, l7.FromServer, ns+uint64(latUS)*1000, resp))
		ns += ms
		key := fmt.Sprintf("%d GET %s shop %d", cookie, tmpl, status)
		w := wants[key]
		if w == nil {
			w = &want{minUS: latUS}
			wants[key] = w
		}
		w.count++
		if status >= 500 {
			w.failed++
		}
		w.minUS, w.maxUS = min(w.minUS, latUS), max(w.maxUS, latUS)
		w.sumUS += uint64(latUS)
		w.answers++
	}
	got := take(tr, ns)
	var total, s404, s500 uint32
	for cookie, rs := range got {
		for i, r := range rs {
			if i > 0 && (rs[i-1].Path > r.Path || rs[i-1].Path == r.Path && rs[i-1].Status >= r.Status) {
				t.Errorf("conn %d: groups not sorted: %+v before %+v", cookie, rs[i-1], r)
			}
			key := fmt.Sprintf("%d %s %s %s %d", cookie, r.Method, r.Path, r.Host, r.Status)
			w := wants[key]
			if w == nil {
				t.Errorf("unexpected group %s", key)
				continue
			}
			delete(wants, key)
			lat := flow.RTT{MinMicros: w.minUS, AvgMicros: uint32(w.sumUS / w.answers), MaxMicros: w.maxUS}
			if r.Count != w.count || r.Failed != w.failed || r.Latency == nil || *r.Latency != lat || r.Protocol != flow.HTTP {
				t.Errorf("%s: count %d failed %d latency %+v, want %d %d %+v", key, r.Count, r.Failed, r.Latency, w.count, w.failed, lat)
			}
			total += r.Count
			switch r.Status {
			case 404:
				s404 += r.Count
			case 500:
				s500 += r.Count
			}
		}
	}
	for key := range wants {
		t.Errorf("missing group %s", key)
	}
	if total != 1000 || s404 != 60 || s500 != 40 {
		t.Errorf("total %d, 404s %d, 500s %d; want 1000, 60, 40", total, s404, s500)
	}
	out, _ := json.Marshal(got)
	for _, secret := range []string{"secret", "c=", "Cookie", "bbbb"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("output holds %q", secret)
		}
	}
	st := tr.Stats().Protocols[0]
	if st.Protocol != flow.HTTP || st.Conns != 4 || st.Requests != 1000 || st.Failed != 40 || st.Unanswered != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
	if again := take(tr, ns); len(again) != 0 {
		t.Errorf("second Take gave %d connections' groups", len(again))
	}
}

func TestTrackerDetection(t *testing.T) {
	tr := newTracker(t, l7.Config{})
	// Connection 1: four messages nobody recognises, then HTTP: opaque.
	for i := range 5 {
		tr.Sample(sample(1, l7.FromClient, uint64(i), "\x00\x01binary"))
	}
	tr.Sample(sample(1, l7.FromClient, 10, "GET / HTTP/1.1\r\n\r\n"))
	// Connection 2: TLS ciphertext (no try spent), then its plaintext.
	for i := range 6 {
		s := sample(2, l7.FromClient, uint64(i), "\x16\x03\x01\x00\x10hello")
		s.Hint = l7.HintTLS
		tr.Sample(s)
	}
	for _, s := range []l7.Sample{
		sample(2, l7.FromClient, 100, "GET /a HTTP/1.1\r\n\r\n"),
		sample(2, l7.FromServer, 200, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
	} {
		s.Hint, s.TLS = l7.HintTLS, true
		tr.Sample(s)
	}
	// Connection 3: the fake protocol, after two unknown messages.
	tr.Sample(sample(3, l7.FromClient, 1, "hello"))
	tr.Sample(sample(3, l7.FromClient, 2, "hello"))
	tr.Sample(sample(3, l7.FromClient, 3, "Qexample.com"))
	tr.Sample(sample(3, l7.FromServer, 4, "Aexample.com 10.0.0.1"))

	got := take(tr, 1000)
	if len(got) != 2 || len(got[2]) != 1 || len(got[3]) != 1 {
		t.Fatalf("groups %+v", got)
	}
	if r := got[2][0]; !r.TLS || r.Path != "/a" || r.Count != 1 {
		t.Errorf("TLS connection: %+v", r)
	}
	if r := got[3][0]; r.Protocol != flow.DNS || r.Query != "example.com" || len(r.Answers) != 1 {
		t.Errorf("fake connection: %+v", r)
	}
	st := tr.Stats()
	if st.Opaque != 1 || st.Ignored != 2 || st.Conns != 3 || st.Protocols[0].Conns != 1 || st.Protocols[1].Conns != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestTrackerHintFirst(t *testing.T) {
	// A message both protocols accept goes to the hinted one, though it
	// is registered second.
	both := l7.Message{Dir: l7.FromClient, NS: 1, Data: []byte("Q"), Len: 1}
	tr := newTracker(t, l7.Config{Protocols: []l7.Protocol{acceptAll{flow.Redis}, fake{}}})
	tr.Sample(l7.Sample{Key: l7.ConnKey{Cookie: 1}, Hint: l7.HintDNS, Msg: both})
	tr.Sample(l7.Sample{Key: l7.ConnKey{Cookie: 2}, Hint: l7.HintNone, Msg: both})
	st := tr.Stats()
	if st.Protocols[0].Conns != 1 || st.Protocols[1].Conns != 1 {
		t.Errorf("hinted DNS went to %+v", st.Protocols)
	}
}

// acceptAll detects everything and parses nothing.
type acceptAll struct{ name flow.L7Protocol }

func (a acceptAll) Name() flow.L7Protocol { return a.name }
func (acceptAll) Detect(l7.Message) bool  { return true }
func (acceptAll) New() l7.Parser          { return &fakeParser{} }

func TestTrackerFeedErrorGoesOpaque(t *testing.T) {
	tr := newTracker(t, l7.Config{})
	tr.Sample(sample(1, l7.FromClient, 1, "Qa"))
	tr.Sample(sample(1, l7.FromClient, 2, "Qb"))
	tr.Sample(sample(1, l7.FromClient, 3, "!"))
	tr.Sample(sample(1, l7.FromServer, 4, "Aa 10.0.0.1"))
	if got := take(tr, 10); len(got) != 0 {
		t.Errorf("groups after a parse error: %+v", got)
	}
	st := tr.Stats()
	if p := st.Protocols[1]; p.Unparsed != 1 || p.Dropped != 2 || p.Requests != 0 {
		t.Errorf("protocol stats %+v", p)
	}
	if st.Opaque != 1 || st.Ignored != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestTrackerGapDropsPending(t *testing.T) {
	tr := newTracker(t, l7.Config{})
	tr.Sample(sample(1, l7.FromClient, 1, "Qa"))
	tr.Sample(sample(1, l7.FromClient, 2, "Qb"))
	s := sample(1, l7.FromClient, 3, "Qc")
	s.Msg.Gap = true
	tr.Sample(s)
	tr.Sample(sample(1, l7.FromServer, 4, "Ac 10.0.0.3"))
	got := take(tr, 10)
	if len(got[1]) != 1 || got[1][0].Query != "c" || got[1][0].Count != 1 {
		t.Errorf("groups %+v", got)
	}
	if st := tr.Stats(); st.Gaps != 1 || st.Protocols[1].Dropped != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestTrackerTimeoutsAndClose(t *testing.T) {
	tr := newTracker(t, l7.Config{RequestTimeout: time.Second, IdleTimeout: time.Minute})
	sec := uint64(time.Second)
	tr.Sample(sample(1, l7.FromClient, 1*sec, "Qold"))
	tr.Sample(sample(1, l7.FromClient, 3*sec, "Qnew"))
	tr.Sample(sample(2, l7.FromClient, 1*sec, "Qclosed"))
	tr.Closed(l7.ConnKey{Cookie: 2}, 2*sec)
	tr.Sample(sample(3, l7.FromClient, 1*sec, "unknown")) // detecting
	tr.Closed(l7.ConnKey{Cookie: 3}, 2*sec)               // forgotten at once

	got := take(tr, 3*sec+sec/2)
	for k, v := range take(tr, 3*sec+sec/2) { // a closed connection lingers one Take
		got[k] = append(got[k], v...)
	}
	want := map[uint64][]flow.Requests{
		1: {{Protocol: flow.DNS, Query: "old", Count: 1, Failed: 1}},
		2: {{Protocol: flow.DNS, Query: "closed", Count: 1, Failed: 1}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if st := tr.Stats(); st.Conns != 1 || st.Protocols[1].Unanswered != 2 || st.Protocols[1].Failed != 2 {
		t.Errorf("stats %+v", st)
	}
	// Idle past a minute: the pending "new" is given up, the connection forgotten.
	got = take(tr, 3*sec+61*sec)
	if len(got[1]) != 1 || got[1][0].Query != "new" || tr.Stats().Conns != 0 {
		t.Errorf("idle: %+v, %d connections", got, tr.Stats().Conns)
	}
}

// The requests a connection never answered before its close come a Take
// after it, when its record has left: they come with the start its end
// gave Closed, by which the hub joins their record to the connection, and
// its server end's on this node (a pair's) with them.
func TestTrackerGivesAClosedConnectionsStart(t *testing.T) {
	tr := newTracker(t, l7.Config{RequestTimeout: time.Minute, IdleTimeout: time.Minute})
	sec := uint64(time.Second)
	tr.Sample(sample(2, l7.FromClient, 1*sec, "Qclosed"))
	tr.Closed(l7.ConnKey{Cookie: 2, StartNS: sec / 2, PeerStartNS: sec / 2 * 3}, 2*sec)
	var starts []uint64
	requests := 0
	for range 2 { // a closed connection lingers one Take
		tr.Take(3*sec, func(k l7.ConnKey, groups []flow.Requests) {
			starts = append(starts, k.StartNS, k.PeerStartNS)
			for _, g := range groups {
				requests += int(g.Count)
			}
		})
	}
	if !slices.Equal(starts, []uint64{sec / 2, sec / 2 * 3}) || requests != 1 {
		t.Errorf("taken with starts %v, %d requests; want once, with the starts Closed gave, 1 request", starts, requests)
	}
}

func TestTrackerBounds(t *testing.T) {
	tr := newTracker(t, l7.Config{MaxConns: 2, MaxGroups: 3})
	for q := range 10 {
		tr.Sample(sample(1, l7.FromClient, uint64(q), fmt.Sprintf("Q%d", q)))
		tr.Sample(sample(1, l7.FromServer, uint64(q)+1, fmt.Sprintf("A%d 10.0.0.%d", q, q)))
	}
	tr.Sample(sample(2, l7.FromClient, 1, "x"))
	tr.Sample(sample(3, l7.FromClient, 1, "Qrefused"))
	got := take(tr, 100)[1]
	if len(got) != 4 {
		t.Fatalf("%d groups, want 3 and the overflow: %+v", len(got), got)
	}
	if o := got[3]; o.Method != l7.OverflowMethod || o.Count != 7 || o.Query != "" || o.Answers != nil {
		t.Errorf("overflow group %+v", o)
	}
	st := tr.Stats()
	if st.Refused != 1 || st.Protocols[1].Overflow != 7 || st.Protocols[1].Requests != 10 {
		t.Errorf("stats %+v", st)
	}
}

func TestTrackerMergesAnswers(t *testing.T) {
	tr := newTracker(t, l7.Config{})
	for i := range 12 {
		tr.Sample(sample(1, l7.FromClient, uint64(10*i), "Qapi"))
		tr.Sample(sample(1, l7.FromServer, uint64(10*i+5), fmt.Sprintf("Aapi 10.0.0.%d 10.0.0.1", i)))
	}
	got := take(tr, 1000)[1]
	if len(got) != 1 || got[0].Count != 12 || len(got[0].Answers) != flow.MaxAnswers {
		t.Fatalf("%+v", got)
	}
	for i, a := range got[0].Answers {
		if want := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}); a != want {
			t.Errorf("answer %d: %s, want %s", i, a, want)
		}
	}
}

func TestTrackerKeys(t *testing.T) {
	tr := newTracker(t, l7.Config{})
	peer := func(i byte) netip.AddrPort { return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, i}), 53) }
	// One UDP socket, two peers: two conversations, each its own group.
	for i := byte(1); i <= 2; i++ {
		k := l7.ConnKey{Cookie: 7, Remote: peer(i), UDP: true}
		tr.Sample(l7.Sample{Key: k, Msg: l7.Message{Dir: l7.FromClient, NS: 1, Len: 2, Data: []byte("Qa")}})
		tr.Sample(l7.Sample{Key: k, Msg: l7.Message{Dir: l7.FromServer, NS: 2, Len: 2, Data: []byte("Aa")}})
	}
	// A TCP connection closed under a key that agrees only on the cookie.
	tcp := l7.ConnKey{Cookie: 8, Local: netip.MustParseAddrPort("10.0.0.9:4000"), Remote: peer(3), Role: flow.RoleClient}
	tr.Sample(l7.Sample{Key: tcp, Msg: l7.Message{Dir: l7.FromClient, NS: 1, Len: 2, Data: []byte("Qb")}})
	tr.Closed(l7.ConnKey{Cookie: 8}, 3)
	got := map[l7.ConnKey]uint32{}
	for range 2 { // a closed connection lingers one Take
		tr.Take(10, func(k l7.ConnKey, rs []flow.Requests) { got[k] += rs[0].Count })
	}
	want := map[l7.ConnKey]uint32{
		{Cookie: 7, Remote: peer(1), UDP: true}: 1,
		{Cookie: 7, Remote: peer(2), UDP: true}: 1,
		tcp:                                     1,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if st := tr.Stats(); st.Conns != 2 {
		t.Errorf("%d connections after the TCP one closed, want 2", st.Conns)
	}
}

// A socket's end is read from one ring and its last samples from another:
// the response read after the close, even after the interval's end, still
// answers its request.
func TestTrackerAnswersAfterTheCloseWasRead(t *testing.T) {
	tr := newTracker(t, l7.Config{})
	k := l7.ConnKey{Cookie: 9, Role: flow.RoleClient}
	tr.Sample(l7.Sample{Key: k, Msg: l7.Message{Dir: l7.FromClient, NS: 1, Len: 2, Data: []byte("Qa")}})
	tr.Closed(k, 3)
	var got []flow.Requests
	collect := func(_ l7.ConnKey, rs []flow.Requests) { got = append(got, rs...) }
	// The interval ends between the close and the answer's sample: the
	// request waits one Take more.
	tr.Take(10, collect)
	tr.Sample(l7.Sample{Key: k, Msg: l7.Message{Dir: l7.FromServer, NS: 2, Len: 2, Data: []byte("Aa")}})
	tr.Take(20, collect)
	if len(got) != 1 || got[0].Count != 1 || got[0].Failed != 0 || got[0].Latency == nil {
		t.Errorf("got %+v, want the one request answered", got)
	}
	if st := tr.Stats(); st.Conns != 0 {
		t.Errorf("%d connections after Take, want the closed one forgotten", st.Conns)
	}
}

// UDP conversations have no close: one socket per lookup, kept as long as
// TCP connections, would fill the tracker and starve every other.
func TestTrackerForgetsSilentUDPConversations(t *testing.T) {
	tr := newTracker(t, l7.Config{MaxConns: 4, UDPIdleTimeout: time.Second})
	sec := uint64(time.Second)
	lookup := func(cookie uint64, ns uint64) {
		k := l7.ConnKey{Cookie: cookie, Remote: netip.MustParseAddrPort("10.0.0.10:53"), UDP: true}
		tr.Sample(l7.Sample{Key: k, Msg: l7.Message{Dir: l7.FromClient, NS: ns, Len: 2, Data: []byte("Qa")}})
		tr.Sample(l7.Sample{Key: k, Msg: l7.Message{Dir: l7.FromServer, NS: ns + 1, Len: 2, Data: []byte("Aa")}})
	}
	answered := uint32(0)
	count := func(_ l7.ConnKey, rs []flow.Requests) {
		for _, r := range rs {
			answered += r.Count - r.Failed
		}
	}
	// Four lookups every two seconds, each on a socket of its own: the
	// tracker holds four at most, and has room as the silent ones go.
	for round := range uint64(5) {
		tr.Take(round*2*sec, count)
		for i := range uint64(4) {
			lookup(round*4+i+1, round*2*sec)
		}
	}
	tr.Take(20*sec, count)
	if st := tr.Stats(); answered != 20 || st.Refused != 0 || st.Conns != 0 {
		t.Errorf("%d lookups answered, %d conversations refused, %d held; want 20, 0, 0", answered, st.Refused, st.Conns)
	}
}

// waitingFake is fake with parsers that tell whether they wait for an
// answer, so that the tracker lets answered conversations sleep.
type waitingFake struct{ fake }

func (waitingFake) New() l7.Parser { return &waitingParser{} }

type waitingParser struct{ fakeParser }

func (p *waitingParser) Waiting() bool { return len(p.pending) > 0 }

// A conversation that waits for nothing sleeps through Takes; a sample,
// a close or its idle timeout still reaches it.
func TestTrackerSleepingConversations(t *testing.T) {
	sec := uint64(time.Second)
	tr := newTracker(t, l7.Config{Protocols: []l7.Protocol{waitingFake{}}, UDPIdleTimeout: 5 * time.Second,
		RequestTimeout: 10 * time.Second})
	key := func(cookie uint64) l7.ConnKey {
		return l7.ConnKey{Cookie: cookie, Remote: netip.MustParseAddrPort("10.0.0.10:53"), UDP: true}
	}
	ask := func(cookie, ns uint64, data string, dir l7.Dir) {
		tr.Sample(l7.Sample{Key: key(cookie), Msg: l7.Message{Dir: dir, NS: ns, Len: len(data), Data: []byte(data)}})
	}
	type counts struct{ answered, unanswered uint32 }
	got := map[uint64]counts{}
	take := func(ns uint64) {
		tr.Take(ns, func(k l7.ConnKey, rs []flow.Requests) {
			c := got[k.Cookie]
			for _, r := range rs {
				c.answered += r.Count - r.Failed
				c.unanswered += r.Failed
			}
			got[k.Cookie] = c
		})
	}
	for c := uint64(1); c <= 3; c++ {
		ask(c, sec, "Qa", l7.FromClient)
		ask(c, sec+1, "Aa", l7.FromServer)
	}
	take(2 * sec) // all three answered: they sleep
	// 1 asks again and is never answered; 2 closes; 3 stays silent.
	ask(1, 3*sec, "Qb", l7.FromClient)
	ask(2, 3*sec, "Qc", l7.FromClient)
	tr.Closed(key(2), 3*sec)
	take(4 * sec) // 1 waits; 2 lingers one Take
	if n := tr.Stats().Conns; n != 3 {
		t.Fatalf("%d conversations held at 4 s, want 3", n)
	}
	take(5 * sec) // 2 is forgotten, its question unanswered
	take(7 * sec) // 3 has been silent for 6 s
	if n := tr.Stats().Conns; n != 1 {
		t.Fatalf("%d conversations held at 7 s, want 1 (the one waiting)", n)
	}
	take(14 * sec) // 1's question is 11 s old, past RequestTimeout
	take(20 * sec) // and 1 has been silent for 17 s
	want := map[uint64]counts{1: {1, 1}, 2: {1, 1}, 3: {1, 0}}
	if !reflect.DeepEqual(got, want) || tr.Stats().Conns != 0 {
		t.Errorf("got %v with %d conversations held, want %v and none", got, tr.Stats().Conns, want)
	}
}

// stream builds a client socket's samples as the kernel orders them: a
// send's Seq is the end of its bytes, a receive's says how far the peer
// had read.
type stream struct {
	cookie uint64
	seq    uint32 // the client's write sequence
	ns     uint64
}

func (s *stream) send(data string) l7.Sample {
	s.seq += uint32(len(data))
	s.ns += ms
	m := sample(s.cookie, l7.FromClient, s.ns, data)
	m.Send, m.Seq = true, s.seq
	return m
}

// recv is an answer that arrived when the peer had read acked bytes;
// early, as the kernel marks it, when a send's sample is still to come.
func (s *stream) recv(data string, acked uint32, early bool) l7.Sample {
	s.ns += ms
	m := sample(s.cookie, l7.FromServer, s.ns, data)
	m.Seq, m.Early = acked, early
	return m
}

// answered returns each group's query and first answer, for a
// connection's groups that answer with the queried name's address.
func answered(rs []flow.Requests) map[string]string {
	got := map[string]string{}
	for _, r := range rs {
		a := ""
		if len(r.Answers) > 0 {
			a = r.Answers[0].String()
		}
		got[r.Query] = a
	}
	return got
}

// A sender preempted between its bytes leaving and its send's hook: the
// answer's sample comes first in the ring. Fed as it came, it would answer
// the query before (a, answered twice) and leave b unanswered; held until
// the send it answers, every query gets its own answer.
func TestTrackerFeedsAnEarlyAnswerAfterItsSend(t *testing.T) {
	tr := newTracker(t, l7.Config{})
	s := &stream{cookie: 1, seq: 1000}
	qa := s.send("Qa")
	tr.Sample(qa)
	tr.Sample(s.recv("Aa 10.0.0.1", qa.Seq, false))
	qb := s.send("Qb") // sent first, sampled after its answer
	ab := s.recv("Ab 10.0.0.2", qb.Seq, true)
	qc := s.send("Qc")
	ac := s.recv("Ac 10.0.0.3", qc.Seq, false)
	for _, m := range []l7.Sample{ab, qb, qc, ac} {
		tr.Sample(m)
	}
	got := answered(take(tr, s.ns)[1])
	want := map[string]string{"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("answers %v, want %v", got, want)
	}
	if st := tr.Stats(); st.Reordered != 1 || st.Unordered != 0 || st.Protocols[1].Unanswered != 0 {
		t.Errorf("stats %+v, want 1 reordered, none unanswered", st)
	}
}

// An early receive that answers bytes before a send goes before it: the
// send it waited for was not sampled (a write the kernel could not read).
func TestTrackerFeedsAnEarlyAnswerBeforeALaterSend(t *testing.T) {
	tr := newTracker(t, l7.Config{})
	s := &stream{cookie: 1, seq: 1000}
	qa := s.send("Qa")
	tr.Sample(qa)
	unsampled := s.send("Qx")
	ax := s.recv("Ax 10.0.0.9", unsampled.Seq, true)
	qb := s.send("Qb")
	ab := s.recv("Ab 10.0.0.2", qb.Seq, false)
	for _, m := range []l7.Sample{ax, qb, ab} {
		tr.Sample(m)
	}
	// Qa is answered by Ax (Qx was never seen), then Qb by Ab.
	got := answered(take(tr, s.ns)[1])
	want := map[string]string{"a": "10.0.0.9", "b": "10.0.0.2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("answers %v, want %v", got, want)
	}
	if st := tr.Stats(); st.Reordered != 1 {
		t.Errorf("stats %+v, want 1 reordered", st)
	}
}

// The send an early receive waits for may never be sampled: the receive,
// and those held behind it in order, go on at the second Take after it,
// or at once past maxHeld; a closed connection's all go before it is
// forgotten.
func TestTrackerLetsAnEarlyAnswerGoWithoutItsSend(t *testing.T) {
	tr := newTracker(t, l7.Config{})
	s := &stream{cookie: 1, seq: 1000}
	tr.Sample(s.send("Qa"))
	tr.Sample(s.send("Qb"))
	lost := s.send("Qlost")
	tr.Sample(s.recv("Aa 10.0.0.1", lost.Seq, true))
	tr.Sample(s.recv("Ab 10.0.0.2", lost.Seq, false))
	if got := take(tr, s.ns); len(got) != 0 {
		t.Errorf("first Take gave %+v, want the answers still held", got)
	}
	got := answered(take(tr, s.ns)[1])
	if want := map[string]string{"a": "10.0.0.1", "b": "10.0.0.2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("second Take: answers %v, want %v", got, want)
	}

	// Past maxHeld (16) early receives, the oldest goes at once.
	for i := range 17 {
		tr.Sample(s.send(fmt.Sprintf("Q%d", i)))
	}
	for i := range 17 {
		tr.Sample(s.recv(fmt.Sprintf("A%d 10.0.1.%d", i, i), s.seq+1, true))
	}
	if st := tr.Stats(); st.Unordered != 2 || st.Reordered != 0 {
		t.Errorf("stats %+v, want 2 unordered", st)
	}
	tr.Closed(l7.ConnKey{Cookie: 1}, s.ns)
	got = answered(take(tr, s.ns)[1])
	got2 := answered(take(tr, s.ns)[1])
	if len(got)+len(got2) != 17 || tr.Stats().Unordered != 18 || tr.Stats().Conns != 0 {
		t.Errorf("after the close: %d then %d answers, stats %+v; want 17, all let go, none left", len(got), len(got2), tr.Stats())
	}
}
