package dns

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/l7test"
)

// outcome is what a test checks of one request.
type outcome struct {
	query, qtype, rcode string
	answers             string
	failed              bool
	answered            bool
}

func outcomes(rs []l7.Request) []outcome {
	var out []outcome
	for _, r := range rs {
		var as []string
		for _, a := range r.Info.Answers {
			as = append(as, a.String())
		}
		if r.Info.Protocol != flow.DNS {
			panic("protocol " + r.Info.Protocol)
		}
		out = append(out, outcome{r.Info.Query, r.Info.QType, r.Info.RCode, strings.Join(as, " "), r.Failed, r.ResponNS != 0})
	}
	return out
}

// The UDP recording (hack/l7capture/record.sh): dig's six lookups against
// dnsmasq, then A and AAAA sent together from one socket.
var recordedUDP = []outcome{
	{"api.example.com", "A", "noerror", "10.1.2.3", false, true},
	{"api.example.com", "AAAA", "noerror", "fd00::1:2:3", false, true},
	{"www.example.com", "A", "noerror", "10.1.2.3", false, true}, // through a CNAME
	{"multi.example.com", "A", "noerror", "10.1.2.4 10.1.2.5", false, true},
	{"nope.example.com", "A", "nxdomain", "", false, true},
	{"flowlens.invalid", "A", "refused", "", true, true},
	{"api.example.com", "A", "noerror", "10.1.2.3", false, true},
	{"api.example.com", "AAAA", "noerror", "fd00::1:2:3", false, true},
}

func TestRecordedUDP(t *testing.T) {
	var p Protocol
	ms := l7test.Load(t, "testdata/udp-1.samples")
	if !p.Detect(ms[0]) {
		t.Fatal("first query not detected")
	}
	rs, err := l7test.Replay(p.New(), ms)
	if err != nil {
		t.Fatal(err)
	}
	if got := outcomes(rs); !reflect.DeepEqual(got, recordedUDP) {
		t.Errorf("requests\n got %v\nwant %v", got, recordedUDP)
	}
}

var recordedTCP = []outcome{
	{"api.example.com", "A", "noerror", "10.1.2.3", false, true},
	{"www.example.com", "AAAA", "noerror", "fd00::1:2:3", false, true},
	{"nope.example.com", "A", "nxdomain", "", false, true},
}

func TestRecordedTCP(t *testing.T) {
	ms := l7test.Load(t, "testdata/tcp-1.samples")
	if !(Protocol{}).Detect(ms[0]) {
		t.Fatal("first query not detected")
	}
	for _, split := range []int{1, 2, 3, 7, 100, 1 << 20} {
		rs, err := l7test.Replay(Protocol{}.New(), l7test.Rechunk(ms, split))
		if err != nil {
			t.Fatalf("split %d: %v", split, err)
		}
		if got := outcomes(rs); !reflect.DeepEqual(got, recordedTCP) {
			t.Errorf("split %d: requests\n got %v\nwant %v", split, got, recordedTCP)
		}
	}
}

func build(t *testing.T, id uint16, response bool, rcode dnsmessage.RCode, q string, qt dnsmessage.Type, answers ...dnsmessage.Resource) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: response, RCode: rcode, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(q), Type: qt, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	if err := b.StartAnswers(); err != nil {
		t.Fatal(err)
	}
	for _, a := range answers {
		var err error
		switch body := a.Body.(type) {
		case *dnsmessage.AResource:
			err = b.AResource(a.Header, *body)
		case *dnsmessage.AAAAResource:
			err = b.AAAAResource(a.Header, *body)
		case *dnsmessage.CNAMEResource:
			err = b.CNAMEResource(a.Header, *body)
		case *dnsmessage.TXTResource:
			err = b.TXTResource(a.Header, *body)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func rr(name string, ttl uint32, body dnsmessage.ResourceBody) dnsmessage.Resource {
	return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: ttl}, Body: body}
}

func a4(s string) *dnsmessage.AResource {
	return &dnsmessage.AResource{A: netip.MustParseAddr(s).As4()}
}

func udp(ns uint64, b []byte) l7.Message {
	// The UDP path may not know the client: every datagram says FromClient.
	return l7.Message{Dir: l7.FromClient, NS: ns, Len: len(b), Data: b}
}

func TestCNAMEChain(t *testing.T) {
	// api → edge → cdn, whose two addresses answer; an address of an
	// unrelated owner and a TXT are not answers.
	resp := build(t, 7, true, dnsmessage.RCodeSuccess, "API.Example.com.", dnsmessage.TypeA,
		rr("api.example.com.", 300, &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("edge.example.net.")}),
		rr("other.example.org.", 5, a4("192.0.2.99")),
		rr("edge.example.net.", 120, &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("cdn.example.net.")}),
		rr("cdn.example.net.", 200, a4("192.0.2.1")),
		rr("cdn.example.net.", 250, a4("192.0.2.2")),
		rr("cdn.example.net.", 1, &dnsmessage.TXTResource{TXT: []string{"x"}}),
	)
	query := build(t, 7, false, 0, "API.Example.com.", dnsmessage.TypeA)
	rs, err := l7test.Replay(Protocol{}.New(), []l7.Message{udp(10, query), udp(25, resp)})
	if err != nil {
		t.Fatal(err)
	}
	want := []outcome{{"api.example.com", "A", "noerror", "192.0.2.1 192.0.2.2", false, true}}
	if o := outcomes(rs); !reflect.DeepEqual(o, want) {
		t.Errorf("got %v want %v", o, want)
	}
	if rs[0].StartNS != 10 || rs[0].ResponNS != 25 {
		t.Errorf("times %d %d", rs[0].StartNS, rs[0].ResponNS)
	}
}

func TestOutcomes(t *testing.T) {
	q := func(id uint16, name string, qt dnsmessage.Type) []byte {
		return build(t, id, false, 0, name, qt)
	}
	r := func(id uint16, rc dnsmessage.RCode, name string, qt dnsmessage.Type) []byte {
		return build(t, id, true, rc, name, qt)
	}
	ms := []l7.Message{
		udp(1, q(1, "a.test.", dnsmessage.TypeMX)),
		udp(2, q(2, "b.test.", dnsmessage.TypeSRV)),
		udp(3, q(3, "c.test.", dnsmessage.Type(99))),
		udp(4, q(4, "d.test.", dnsmessage.TypeA)), // never answered
		udp(4, q(7, "same.test.", dnsmessage.TypeA)),
		udp(4, q(7, "same.test.", dnsmessage.TypeAAAA)), // same ID, in flight together
		udp(5, q(1, "a.test.", dnsmessage.TypeMX)),      // a retry: not another request
		udp(6, r(2, dnsmessage.RCodeServerFailure, "b.test.", dnsmessage.TypeSRV)),
		udp(7, r(1, dnsmessage.RCodeSuccess, "a.test.", dnsmessage.TypeMX)),
		udp(8, r(3, dnsmessage.RCode(9), "c.test.", dnsmessage.Type(99))),
		udp(9, r(5, dnsmessage.RCodeSuccess, "e.test.", dnsmessage.TypeA)),   // no query seen
		udp(10, r(1, dnsmessage.RCodeSuccess, "x.test.", dnsmessage.TypeMX)), // ID matches, question does not
		udp(11, r(7, dnsmessage.RCodeSuccess, "same.test.", dnsmessage.TypeAAAA)),
		udp(12, r(7, dnsmessage.RCodeNameError, "same.test.", dnsmessage.TypeA)),
	}
	rs, err := l7test.Replay(Protocol{}.New(), ms)
	if err != nil {
		t.Fatal(err)
	}
	want := []outcome{
		{"b.test", "SRV", "servfail", "", true, true},
		{"a.test", "MX", "noerror", "", false, true},
		{"c.test", "TYPE99", "rcode9", "", true, true},
		{"same.test", "AAAA", "noerror", "", false, true},
		{"same.test", "A", "nxdomain", "", false, true},
		{"d.test", "A", "", "", true, false},
	}
	if got := outcomes(rs); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if rs[1].StartNS != 1 {
		t.Errorf("retry moved the start to %d", rs[1].StartNS)
	}
}

func TestExpireAndBound(t *testing.T) {
	p := Protocol{}.New()
	var done []l7.Request
	var err error
	for i := range l7.MaxPending + 3 {
		done, err = p.Feed(udp(uint64(i+1), build(t, uint16(i), false, 0, "n.test.", dnsmessage.TypeA)), done)
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := p.(l7.Dropper).TakeDropped(); n != 3 || len(done) != 0 {
		t.Fatalf("dropped %d, done %d; want 3, 0", n, len(done))
	}
	// Queries 4..67 remain, sent at NS 4..67: those before 10 expire.
	done = p.Expire(10, done)
	if len(done) != 6 || done[0].StartNS != 4 || !done[0].Failed || done[0].ResponNS != 0 {
		t.Fatalf("expired %d: %+v", len(done), done)
	}
	if done = p.Expire(^uint64(0), nil); len(done) != l7.MaxPending-6 {
		t.Fatalf("expired %d at the end", len(done))
	}
}

func TestCappedSample(t *testing.T) {
	var addrs []netip.Addr
	var as []dnsmessage.Resource
	for i := range 40 {
		a := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
		addrs = append(addrs, a)
		as = append(as, rr("many.test.", 30, &dnsmessage.AResource{A: a.As4()}))
	}
	resp := build(t, 9, true, 0, "many.test.", dnsmessage.TypeA, as...)
	query := build(t, 9, false, 0, "many.test.", dnsmessage.TypeA)
	// 12 header + 15 question, 16 per compressed A record: 256 bytes show 14.
	capped := udp(2, resp[:256])
	capped.Len = len(resp)
	rs, err := l7test.Replay(Protocol{}.New(), []l7.Message{udp(1, query), capped})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || !reflect.DeepEqual(rs[0].Info.Answers, addrs[:flow.MaxAnswers]) {
		t.Fatalf("got %+v", rs)
	}
	// Cut inside the question: no request, no error.
	cut := udp(3, resp[:20])
	cut.Len = len(resp)
	if rs, err := l7test.Replay(Protocol{}.New(), []l7.Message{udp(1, query), cut}); err != nil || len(rs) != 1 || rs[0].ResponNS != 0 {
		t.Fatalf("cut question: %v %+v", err, rs)
	}
}

func TestTCPHiddenBytes(t *testing.T) {
	query := build(t, 3, false, 0, "h.test.", dnsmessage.TypeA)
	var as []dnsmessage.Resource
	for i := range 100 {
		as = append(as, rr("h.test.", 30, &dnsmessage.AResource{A: [4]byte{10, 1, 0, byte(i)}}))
	}
	resp := build(t, 3, true, 0, "h.test.", dnsmessage.TypeA, as...)
	frame := func(b []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...) }
	q2 := build(t, 4, false, 0, "i.test.", dnsmessage.TypeAAAA)
	r2 := build(t, 4, true, 3, "i.test.", dnsmessage.TypeAAAA)
	big := frame(resp)
	ms := []l7.Message{
		{Dir: l7.FromClient, NS: 1, Len: len(query) + 2, Data: frame(query)},
		// The response's tail is hidden but inside the message: skipped by count.
		{Dir: l7.FromServer, NS: 2, Len: len(big), Data: big[:256]},
		{Dir: l7.FromClient, NS: 3, Len: len(q2) + 2, Data: frame(q2)},
		// Hidden bytes past the message's end: the stream is lost
		// until a read starts with a message again.
		{Dir: l7.FromServer, NS: 4, Len: len(r2) + 2 + 50, Data: frame(r2)},
		{Dir: l7.FromServer, NS: 5, Len: 5, Data: []byte{1, 2, 3, 4, 5}},
		{Dir: l7.FromClient, NS: 6, Len: len(query) + 2, Data: frame(query)},
		{Dir: l7.FromServer, NS: 7, Len: len(big), Data: big[:100]},
	}
	rs, err := l7test.Replay(Protocol{}.New(), ms)
	if err != nil {
		t.Fatal(err)
	}
	want := []outcome{
		{"h.test", "A", "noerror", "10.1.0.0 10.1.0.1 10.1.0.2 10.1.0.3 10.1.0.4 10.1.0.5 10.1.0.6 10.1.0.7", false, true},
		{"i.test", "AAAA", "nxdomain", "", false, true},
		// 100 bytes: length, header, question, then 4 whole records.
		{"h.test", "A", "noerror", "10.1.0.0 10.1.0.1 10.1.0.2 10.1.0.3", false, true},
	}
	if got := outcomes(rs); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestHostileNames(t *testing.T) {
	head := []byte{0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	for name, q := range map[string][]byte{
		"pointer to itself":   {0xc0, 12},
		"forward pointer":     {0xc0, 14, 1, 'a', 0},
		"pointer into header": {1, 'a', 0xc0, 2},
		"label type 0x40":     {0x41, 'a', 0},
		"label past end":      {9, 'a', 0},
		"256 bytes":           append(append([]byte{}, strings.Repeat("\x3f"+strings.Repeat("a", 63), 4)...), 0),
	} {
		msg := append(append(append([]byte{}, head...), q...), 0, 1, 0, 1)
		if (Protocol{}).Detect(udp(1, msg)) {
			t.Errorf("%s: detected", name)
		}
		if _, err := (Protocol{}).New().Feed(udp(1, msg), nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// The longest legal name: 253 characters.
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
	rs, err := l7test.Replay(Protocol{}.New(), []l7.Message{udp(1, build(t, 1, false, 0, long+".", dnsmessage.TypeA))})
	if err != nil || len(rs) != 1 || rs[0].Info.Query != long {
		t.Fatalf("longest name: %v %+v", err, rs)
	}
}

func TestDetect(t *testing.T) {
	for _, s := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "*1\r\n$4\r\nPING\r\n", "\x00\x00\x00\x08\x04\xd2\x16\x2f", ""} {
		if (Protocol{}).Detect(udp(1, []byte(s))) {
			t.Errorf("%q detected as DNS", s)
		}
	}
	if _, err := (Protocol{}).New().Feed(udp(1, []byte("GET / HTTP/1.1\r\n")), nil); err == nil {
		t.Error("HTTP fed without error")
	}
}
