// Package postgres parses the PostgreSQL frontend/backend protocol (3.0)
// from the kernel's payload samples into l7 requests: the statement's
// kind (SELECT, INSERT, ...), its SQLSTATE when it failed, its latency.
// No statement text or parameter is kept.
//
// What a request is:
//   - simple query ('Q'): one request per Query message, whatever number
//     of statements it holds, of the kind of the first; it fails if any
//     ErrorResponse comes before its ReadyForQuery.
//   - extended query: one request per Execute, of the kind of the
//     statement its portal was bound to (Parse → Bind → Execute;
//     statements are remembered by name, so one prepared once and
//     executed many times counts every execution). It ends at its
//     CommandComplete (or EmptyQueryResponse, PortalSuspended) or its
//     ErrorResponse; the Executes after an error up to the Sync are
//     skipped by the server and fail with the same SQLSTATE. A Sync batch
//     that failed before any Execute (a Parse of a missing table, as a
//     client preparing a statement sees) is one failed request of its
//     last Parse's kind.
//
// Framing: each message is a type byte and a 4-byte length, after an
// untyped startup (or SSLRequest, GSSENCRequest, answered by one byte).
// Samples show a call's first bytes: the rest of a message is skipped by
// count. When hidden bytes hide message headers the direction is lost:
// the requests waiting are taken as answered where their response started
// (an error hidden there is missed), and the server side is framed again
// from the client's next call, which a client sends only after reading
// its answers (pipelined clients excepted). A client call whose hidden
// tail follows a Bind is taken to end with that Bind's Execute, as
// drivers write Bind, Execute and Sync together.
package postgres

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/frame"
)

// Untyped first messages' codes (the protocol version in a startup).
const (
	codeStartup  = 196608 // 3.0
	codeCancel   = 80877102
	codeSSL      = 80877103
	codeGSSENC   = 80877104
	maxStartup   = 10000 // libpq refuses longer startup packets
	maxMessage   = 1 << 30
	keep         = 256 // body bytes kept per message: keywords, names, SQLSTATE
	maxStatement = 256 // prepared statements and portals remembered by name
)

// Protocol is PostgreSQL for the l7 tracker.
type Protocol struct{}

func (Protocol) Name() flow.L7Protocol { return flow.Postgres }

// Detect accepts a client's startup message, SSLRequest, GSSENCRequest or
// CancelRequest, and, mid-connection, a client's call that is a run of
// well-formed messages starting with a Query or a Parse.
func (Protocol) Detect(m l7.Message) bool {
	if m.Dir != l7.FromClient {
		return false
	}
	return isStartup(m) || isQueryCall(m)
}

func isStartup(m l7.Message) bool {
	if len(m.Data) < 8 {
		return false
	}
	n := int(binary.BigEndian.Uint32(m.Data))
	switch binary.BigEndian.Uint32(m.Data[4:]) {
	case codeSSL, codeGSSENC:
		return n == 8 && m.Len == 8
	case codeCancel:
		return n == 16 && m.Len == 16
	case codeStartup:
		return n > 8 && n <= maxStartup && n == m.Len
	}
	return false
}

// clientTypes are the typed messages a client sends.
const clientTypes = "QPBEDSCHFXpdcf"

// isQueryCall walks the call's messages: each a client type with a sane
// length, the first a Query or Parse, a Query's text ending with its NUL,
// together exactly the call's length.
func isQueryCall(m l7.Message) bool {
	b := m.Data
	if len(b) < 5 || (b[0] != 'Q' && b[0] != 'P') {
		return false
	}
	for off := 0; off < m.Len; {
		if off+5 > len(b) {
			return len(b) < m.Len && off > 0 // the rest hidden
		}
		n := int(binary.BigEndian.Uint32(b[off+1:]))
		if bytes.IndexByte([]byte(clientTypes), b[off]) < 0 || n < 4 || n > maxMessage {
			return false
		}
		end := off + 1 + n
		if b[off] == 'Q' && (n < 5 || end <= len(b) && b[end-1] != 0) {
			return false
		}
		if end > m.Len {
			return false
		}
		off = end
	}
	return true
}

// item is a request waiting for its outcome, or a Sync's marker.
type item struct {
	kind     itemKind
	method   string
	startNS  uint64
	responNS uint64
	err      string // SQLSTATE
}

type itemKind uint8

const (
	itemQuery itemKind = iota + 1
	itemExecute
	itemSync
)

type parser struct {
	client, server frame.Framer
	started        bool // the first client message was seen
	encrypted      bool // SSL or GSS accepted: nothing more is readable here
	// tentative: the server side was framed again from a guess; what does
	// not frame there is lost again rather than an error.
	tentative bool

	queue   []item // requests and Sync markers in order, at most l7.MaxPending requests
	waiting int    // requests in queue
	dropped int
	failing string // the SQLSTATE failing the current Sync batch's Executes

	statements map[string]string // prepared statement name → kind
	portals    map[string]string // portal name → kind
	lastParse  string            // the current batch's last Parse's kind
	// unexecuted: a Bind of this call has no Execute after it yet; its
	// portal is lastPortal.
	unexecuted bool
	lastPortal string

	// The call being fed.
	dir  l7.Dir
	ns   uint64
	done []l7.Request
}

func (Protocol) New() l7.Parser {
	return &parser{statements: map[string]string{}, portals: map[string]string{}}
}

var errNotPostgres = errors.New("not postgres")

func (p *parser) Feed(m l7.Message, done []l7.Request) ([]l7.Request, error) {
	if p.encrypted {
		return done, nil
	}
	p.dir, p.ns, p.done = m.Dir, m.NS, done
	defer func() { p.done = nil }()
	if !p.started {
		if m.Dir != l7.FromClient {
			return done, nil // the client speaks first
		}
		p.started = true
		p.client.Keep, p.server.Keep = keep, keep
		p.client.Head, p.server.Head = 5, 5
		switch {
		case isStartup(m):
			p.client.Head = 4
		case !isQueryCall(m):
			return done, errNotPostgres
		}
	}
	var err error
	if m.Dir == l7.FromClient {
		err = p.feedClient(m)
	} else {
		err = p.feedServer(m)
	}
	return p.done, err
}

func (p *parser) feedClient(m l7.Message) error {
	if m.Gap || p.client.Lost() {
		if !startsMessage(m) {
			p.client.Lose()
			return nil
		}
		p.client.Found()
	}
	if p.server.Lost() {
		// The client speaks again: its answers were read.
		p.server.Found()
		p.tentative = true
	}
	p.unexecuted = false
	if err := p.client.Feed(m, p); err != nil {
		return err
	}
	if p.client.Lost() && p.unexecuted {
		p.execute(p.lastPortal)
	}
	return nil
}

func (p *parser) feedServer(m l7.Message) error {
	if m.Gap {
		p.server.Lose()
		return nil
	}
	err := p.server.Feed(m, p)
	if err != nil && p.tentative {
		p.server.Lose()
		err = nil
	}
	if p.server.Lost() {
		p.answerAll()
	}
	return err
}

// startsMessage reports whether a client call starts with a plausible
// typed message.
func startsMessage(m l7.Message) bool {
	b := m.Data
	if len(b) < 5 || bytes.IndexByte([]byte(clientTypes), b[0]) < 0 {
		return false
	}
	n := int(binary.BigEndian.Uint32(b[1:]))
	return n >= 4 && 1+n <= m.Len
}

// BodyLen reads an untyped length (4 bytes), a typed message's header (5),
// or stands for the server's one-byte answer to SSLRequest/GSSENCRequest.
func (p *parser) BodyLen(head []byte) (int, error) {
	switch len(head) {
	case 1:
		return 0, nil
	case 4:
		n := int(binary.BigEndian.Uint32(head))
		if n < 8 || n > maxStartup {
			return 0, fmt.Errorf("postgres startup of %d bytes", n)
		}
		return n - 4, nil
	}
	n := int(binary.BigEndian.Uint32(head[1:]))
	if n < 4 || n > maxMessage {
		return 0, fmt.Errorf("postgres message %q of %d bytes", head[0], n)
	}
	if p.dir == l7.FromClient && bytes.IndexByte([]byte(clientTypes), head[0]) < 0 {
		return 0, fmt.Errorf("postgres client message %q", head[0])
	}
	if p.dir == l7.FromServer && !isLetterOrDigit(head[0]) {
		return 0, fmt.Errorf("postgres server message %q", head[0])
	}
	return n - 4, nil
}

func isLetterOrDigit(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '1' <= c && c <= '3'
}

func (p *parser) Message(head, body []byte, cut bool) error {
	if p.dir == l7.FromClient {
		return p.clientMessage(head, body, cut)
	}
	return p.serverMessage(head, body)
}

func (p *parser) clientMessage(head, body []byte, cut bool) error {
	if len(head) == 4 {
		if len(body) < 4 {
			return fmt.Errorf("postgres startup: %w", errNotPostgres)
		}
		switch binary.BigEndian.Uint32(body) {
		case codeSSL, codeGSSENC:
			p.server.Head = 1
		case codeStartup, codeCancel:
			p.client.Head = 5
		default:
			return fmt.Errorf("postgres startup code %d: %w", binary.BigEndian.Uint32(body), errNotPostgres)
		}
		return nil
	}
	switch head[0] {
	case 'Q':
		p.push(item{kind: itemQuery, method: statementKind(body), startNS: p.ns})
	case 'P':
		name, rest := cstring(body)
		kind := statementKind(rest)
		p.lastParse = kind
		remember(p.statements, name, kind)
	case 'B':
		portal, rest := cstring(body)
		stmt, _ := cstring(rest)
		remember(p.portals, portal, p.statements[stmt])
		p.unexecuted, p.lastPortal = true, portal
	case 'E':
		portal, _ := cstring(body)
		p.execute(portal)
		p.unexecuted = false
	case 'S':
		p.queue = append(p.queue, item{kind: itemSync, method: p.lastParse, startNS: p.ns})
		p.lastParse = ""
		p.trim()
	}
	return nil
}

// trim bounds the queue, Sync markers included, letting go of the oldest.
func (p *parser) trim() {
	if len(p.queue) <= 2*l7.MaxPending {
		return
	}
	if p.queue[0].kind != itemSync {
		p.waiting--
		p.dropped++
	}
	p.queue = append(p.queue[:0], p.queue[1:]...)
}

func (p *parser) execute(portal string) {
	p.push(item{kind: itemExecute, method: p.portals[portal], startNS: p.ns})
}

// push queues a request, letting go of the oldest past l7.MaxPending.
func (p *parser) push(it item) {
	if p.waiting == l7.MaxPending {
		for i, q := range p.queue {
			if q.kind != itemSync {
				p.queue = append(p.queue[:i], p.queue[i+1:]...)
				break
			}
		}
		p.waiting--
		p.dropped++
	}
	p.queue = append(p.queue, it)
	p.waiting++
	p.trim()
}

// remember records name → kind in m, forgetting an arbitrary other name
// when m is full.
func remember(m map[string]string, name, kind string) {
	if _, ok := m[name]; !ok && len(m) >= maxStatement {
		for k := range m {
			delete(m, k)
			break
		}
	}
	m[name] = kind
}

// cstring splits b at its first NUL; without one (a cut sample) the name
// is unknown.
func cstring(b []byte) (string, []byte) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "\x00?", nil
	}
	return string(b[:i]), b[i+1:]
}

func (p *parser) serverMessage(head, body []byte) error {
	if len(head) == 1 {
		switch head[0] {
		case 'N': // no encryption: the startup follows
			p.server.Head = 5
		case 'S', 'G':
			p.encrypted = true
			p.queue, p.waiting = nil, 0
			p.client.Lose()
			p.server.Lose()
		default:
			return fmt.Errorf("postgres answer to an encryption request %q: %w", head[0], errNotPostgres)
		}
		return nil
	}
	p.tentative = false
	typ := head[0]
	switch typ {
	case 'S', 'N', 'A': // parameter status, notice, notification: not answers
		return nil
	}
	if len(p.queue) == 0 {
		return nil // startup, or answers to what was not seen
	}
	h := &p.queue[0]
	if h.responNS == 0 {
		h.responNS = p.ns
	}
	switch typ {
	case 'C', 'I', 's':
		if h.kind == itemExecute {
			p.complete(h, "")
		}
	case 'E':
		code := sqlstate(body)
		switch h.kind {
		case itemExecute:
			p.complete(h, code)
			p.failing = code
		default:
			h.err = code
		}
	case 'Z':
		p.ready()
	}
	return nil
}

// complete emits the head request and drops it from the queue.
func (p *parser) complete(h *item, code string) {
	p.waiting--
	p.emit(*h, code)
	p.queue = append(p.queue[:0], p.queue[1:]...)
}

func (p *parser) emit(it item, code string) {
	p.done = append(p.done, l7.Request{
		Info:     flow.Requests{Protocol: flow.Postgres, Method: it.method, Error: code},
		StartNS:  it.startNS,
		ResponNS: it.responNS,
		Failed:   code != "",
	})
}

// ready ends what a ReadyForQuery answers: the queue up to the first
// Query or Sync. Executes left there were skipped after an error.
func (p *parser) ready() {
	n := 0
	for n < len(p.queue) {
		it := p.queue[n]
		n++
		if it.responNS == 0 {
			it.responNS = p.ns
		}
		if it.kind == itemExecute {
			p.waiting--
			p.emit(it, p.failing)
			continue
		}
		if it.kind == itemQuery {
			p.waiting--
		}
		if it.err != "" || it.kind == itemQuery {
			p.emit(it, it.err) // a Sync's batch failed before any Execute
		}
		break
	}
	p.queue = append(p.queue[:0], p.queue[n:]...)
	p.failing = ""
}

// answerAll takes every waiting request as answered where its response
// started (or now), with the error seen if any: the server side is lost.
func (p *parser) answerAll() {
	for _, it := range p.queue {
		if it.responNS == 0 {
			it.responNS = p.ns
		}
		if it.kind != itemSync || it.err != "" {
			p.emit(it, it.err)
		}
	}
	p.queue, p.waiting, p.failing = p.queue[:0], 0, ""
}

// sqlstate returns an ErrorResponse's code field ('C'), or "ERROR" if the
// sample does not show it.
func sqlstate(b []byte) string {
	for len(b) > 0 && b[0] != 0 {
		t := b[0]
		i := bytes.IndexByte(b[1:], 0)
		if i < 0 {
			break
		}
		v := b[1 : 1+i]
		if t == 'C' && len(v) == 5 && isCode(v) {
			return string(v)
		}
		b = b[2+i:]
	}
	return "ERROR"
}

func isCode(v []byte) bool {
	for _, c := range v {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

func (p *parser) TakeDropped() int {
	n := p.dropped
	p.dropped = 0
	return n
}

// Expire gives up the requests sent before ns, and with them any Sync
// marker before them.
func (p *parser) Expire(ns uint64, done []l7.Request) []l7.Request {
	p.done = done
	n := 0
	for n < len(p.queue) && p.queue[n].startNS < ns {
		it := p.queue[n]
		if it.kind != itemSync {
			p.waiting--
			p.done = append(p.done, l7.Request{
				Info:    flow.Requests{Protocol: flow.Postgres, Method: it.method},
				StartNS: it.startNS,
				Failed:  true,
			})
		}
		n++
	}
	p.queue = append(p.queue[:0], p.queue[n:]...)
	done, p.done = p.done, nil
	return done
}
