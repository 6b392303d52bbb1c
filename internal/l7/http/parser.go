package http

import (
	"errors"
	"math"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
)

// maxCarry bounds the bytes of a header block or chunk-size line carried
// from one message to the next; past it the direction loses its framing.
const maxCarry = 4096

// Errors carry no byte of the payload: they may be logged.
var (
	errRequestLine = errors.New("http: not a request line where a request starts")
	errStatusLine  = errors.New("http: not a status line where a response starts")
)

// state is where a direction's stream is.
type state uint8

const (
	stateHead      state = iota // a request or status line starts here
	stateBody                   // remain body bytes follow
	stateChunkSize              // a chunk-size line starts here
	stateChunkData              // remain bytes of chunk data and its CRLF follow
	stateTrailer                // trailer lines after the last chunk, until an empty line
	stateLost                   // framing lost: wait for a message that starts with a start line
)

// stream is one direction of the connection.
type stream struct {
	request bool // the client's direction
	state   state
	remain  int64
	carry   []byte // the start of a block or line, from earlier messages
	carryNS uint64 // NS of the message the carried bytes began in
}

func (s *stream) lose() {
	s.state = stateLost
	s.carry = s.carry[:0]
}

// pending is a request waiting for its response.
type pending struct {
	ns         uint64
	method     string
	path, host string
	headers    map[string]string
	head       bool // HEAD: the response has no body
	connect    bool // CONNECT: a 2xx response turns the connection into a tunnel
}

type parser struct {
	headers   []string // allow-listed request header names, lower case
	req, resp stream
	queue     queue
	// finished: the connection stopped being HTTP/1.x messages (101
	// Switching Protocols, a CONNECT tunnel, a response body that lasts
	// until the connection closes).
	finished bool
	dropped  int

	// The last strings made, reused while requests repeat them, so that
	// keep-alive traffic to one endpoint allocates no strings.
	lastPath, lastHost string
	scratch            []byte
}

// Feed implements l7.Parser.
func (p *parser) Feed(m l7.Message, done []l7.Request) ([]l7.Request, error) {
	if m.Gap {
		p.req.lose()
		p.resp.lose()
		p.dropped += p.queue.clear()
	}
	if p.finished {
		return done, nil
	}
	s := &p.resp
	if m.Dir == l7.FromClient {
		s = &p.req
		s.request = true
	}
	data := m.Data
	hidden := int64(m.Len) - int64(len(data))
	if hidden < 0 {
		hidden = 0
	}
	if s.state == stateLost {
		if startState(data, s.request) == lineBad {
			return done, nil // body bytes, most likely
		}
		s.state = stateHead
	}
	work, ns := data, m.NS
	if len(s.carry) > 0 {
		s.carry = append(s.carry, data...)
		work, ns = s.carry, s.carryNS
	}
	var err error
	work, ns, done, err = p.walk(s, work, ns, m.NS, done)
	if err != nil {
		s.lose()
		return done, err
	}
	switch {
	case p.finished:
	case len(work) > 0 && hidden == 0 && len(work) <= maxCarry:
		// A block or line continues in the next message.
		s.carry, s.carryNS = append(s.carry[:0], work...), ns
		return done, nil
	case len(work) > 0:
		if s.state == stateHead && hidden > 0 {
			h := readHead(work, s.request, nil)
			done = p.head(s, &h, work, ns, false, done)
		}
		s.lose()
		return done, nil
	}
	s.carry = s.carry[:0]
	s.skip(hidden)
	return done, nil
}

// skip moves the stream past n bytes it cannot see: fine inside a body
// or chunk, framing lost if a message could start among them.
func (s *stream) skip(n int64) {
	if n == 0 {
		return
	}
	if (s.state == stateBody || s.state == stateChunkData) && n <= s.remain {
		s.remain -= n
		if s.remain == 0 {
			s.state = s.afterRemain()
		}
		return
	}
	s.lose()
}

func (s *stream) afterRemain() state {
	if s.state == stateChunkData {
		return stateChunkSize
	}
	return stateHead
}

// walk parses the visible bytes b of a stream; it returns what is left of
// them unparsed (the beginning of a block or line that continues) and the
// NS of the message that beginning is from. blockNS is the NS of the
// message b starts in, msgNS the current one's.
func (p *parser) walk(s *stream, b []byte, blockNS, msgNS uint64, done []l7.Request) ([]byte, uint64, []l7.Request, error) {
	for len(b) > 0 && !p.finished {
		switch s.state {
		case stateBody, stateChunkData:
			n := int64(len(b))
			if n > s.remain {
				n = s.remain
			}
			b = b[n:]
			s.remain -= n
			if s.remain == 0 {
				s.state = s.afterRemain()
			}
		case stateHead:
			// RFC 9112 §2.2: a server ignores empty lines before a
			// request line (a client's CRLF after a POST body).
			if s.request {
				if n := emptyLine(b); n < 0 {
					return b, blockNS, done, nil
				} else if n > 0 {
					b = b[n:]
					continue
				}
			}
			h := readHead(b, s.request, nil)
			switch {
			case h.start == lineBad:
				return b, blockNS, done, p.startError(s)
			case h.end < 0:
				return b, blockNS, done, nil
			}
			done = p.head(s, &h, b[:h.end], blockNS, true, done)
			b = b[h.end:]
		case stateChunkSize, stateTrailer:
			i := indexLF(b)
			if i < 0 {
				return b, blockNS, done, nil
			}
			line := b[:i]
			b = b[i+1:]
			p.chunkLine(s, line)
		case stateLost:
			return nil, msgNS, done, nil
		}
		blockNS = msgNS
	}
	return b, blockNS, done, nil
}

func (p *parser) startError(s *stream) error {
	if s.request {
		return errRequestLine
	}
	return errStatusLine
}

// chunkLine reads a chunk-size line or a trailer line.
func (p *parser) chunkLine(s *stream, line []byte) {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if s.state == stateTrailer {
		if len(line) == 0 {
			s.state = stateHead
		}
		return
	}
	size, digits := int64(0), 0
	for _, c := range line {
		v := unhex(c)
		if v < 0 {
			break // a chunk extension (";name=value") or whitespace
		}
		if digits++; digits > 15 {
			s.lose()
			return
		}
		size = size<<4 | int64(v)
	}
	switch {
	case digits == 0:
		s.lose()
	case size == 0:
		s.state = stateTrailer
	default:
		s.state, s.remain = stateChunkData, size+2 // the data, then CRLF
	}
}

// head handles a request's or response's header block, h as readHead
// read it; whole says the block ends with its empty line, else it was cut
// by the capture and the framing that follows is unknown (the caller
// loses it).
func (p *parser) head(s *stream, h *head, block []byte, ns uint64, whole bool, done []l7.Request) []l7.Request {
	if s.request {
		return p.request(s, h, block, ns, whole, done)
	}
	return p.response(s, h, ns, whole, done)
}

// framing is what the headers say about the body.
type framing struct {
	chunked, otherCoding bool
	length               int64 // -1: none given; -2: invalid
}

func (f *framing) header(name, value []byte) {
	switch {
	case equalFold(name, "content-length"):
		n := parseLength(value)
		if n < 0 || f.length >= 0 && f.length != n {
			n = -2
		}
		if f.length != -2 {
			f.length = n
		}
	case equalFold(name, "transfer-encoding"):
		// The last coding decides; chunked is always last when present.
		last := value
		for i := len(value) - 1; i >= 0; i-- {
			if value[i] == ',' {
				last = value[i+1:]
				break
			}
		}
		last = trimSpace(last)
		f.chunked = equalFold(last, "chunked")
		f.otherCoding = !f.chunked
	}
}

// body sets the stream's state for the body the framing announces; until
// says what a body with no length means: none (requests) or the rest of
// the connection (responses).
func (s *stream) body(f framing, whole bool) (untilClose bool) {
	switch {
	case !whole:
		return false // the caller loses the framing
	case f.chunked:
		s.state = stateChunkSize
	case f.length == -2 || f.otherCoding && s.request:
		s.lose()
	case f.otherCoding:
		return true // a response's coded body lasts until the connection closes
	case f.length > 0:
		s.state, s.remain = stateBody, f.length
	case f.length == 0 || s.request:
		s.state = stateHead
	default:
		return true
	}
	return false
}

func (p *parser) request(s *stream, h *head, block []byte, ns uint64, whole bool, done []l7.Request) []l7.Request {
	rl, host := &h.line, h.host
	if h.start == lineBad || len(rl.method) == 0 {
		return done
	}
	r := pending{ns: ns, method: methodString(rl.method)}
	r.head = r.method == "HEAD"
	r.connect = r.method == "CONNECT"
	if len(p.headers) > 0 {
		// Read again only with an allow-list, which is empty by default:
		// a field is kept once its request is known to be whole.
		readHead(block, true, func(name, value []byte) {
			if !equalFold(name, "host") {
				p.keepHeader(&r, name, value)
			}
		})
	}
	if r.connect {
		host = rl.target
	} else if len(rl.target) == 0 {
		r.path = "/..." // cut right after the method: still a request to answer
	} else {
		p.scratch = appendTemplate(p.scratch[:0], rl.target, !rl.version)
		r.path = intern(&p.lastPath, p.scratch)
		if _, authority := splitAbsolute(rl.target); host == nil {
			host = authority
		}
	}
	p.scratch = appendHost(p.scratch[:0], host)
	r.host = intern(&p.lastHost, p.scratch)
	if !p.queue.push(r) {
		p.dropped++
	}
	s.body(h.framing, whole)
	return done
}

func (p *parser) keepHeader(r *pending, name, value []byte) {
	for _, want := range p.headers {
		if !equalFold(name, want) {
			continue
		}
		if len(value) > maxHeaderValue {
			value = value[:maxHeaderValue]
		}
		for _, c := range value {
			if c < ' ' || c > '~' {
				return
			}
		}
		if r.headers == nil {
			r.headers = make(map[string]string, len(p.headers))
		}
		r.headers[want] = string(value)
		return
	}
}

func (p *parser) response(s *stream, h *head, ns uint64, whole bool, done []l7.Request) []l7.Request {
	status := h.status
	if h.start != lineOK {
		return done
	}
	if status < 200 && status != 101 {
		// Informational (100 Continue, 103 Early Hints): the final
		// response is still to come, with no body in between.
		s.state = stateHead
		return done
	}
	r, known := p.queue.pop()
	if known {
		done = append(done, l7.Request{
			Info: flow.Requests{
				Protocol: flow.HTTP, Method: r.method, Path: r.path,
				Host: r.host, Status: status, Headers: r.headers,
			},
			StartNS:  r.ns,
			ResponNS: ns,
			Failed:   status >= 500,
		})
	}
	switch {
	case status == 101, r.connect && status < 300:
		p.finished = true // no longer HTTP/1.x from here
	case r.head || status == 204 || status == 304:
		s.state = stateHead
	default:
		if s.body(h.framing, whole) {
			p.finished = true // the body lasts until the connection closes
		}
	}
	return done
}

// Expire implements l7.Parser.
func (p *parser) Expire(ns uint64, done []l7.Request) []l7.Request {
	for {
		r, ok := p.queue.expire(ns)
		if !ok {
			return done
		}
		done = append(done, l7.Request{
			Info: flow.Requests{
				Protocol: flow.HTTP, Method: r.method, Path: r.path,
				Host: r.host, Headers: r.headers,
			},
			StartNS: r.ns,
			Failed:  true,
		})
	}
}

// TakeDropped implements l7.Dropper.
func (p *parser) TakeDropped() int {
	n := p.dropped
	p.dropped = 0
	return n
}

// methodString returns the method as a constant string when it is a
// common one, so that the hot path allocates nothing.
func methodString(b []byte) string {
	for _, m := range [...]string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"} {
		if string(b) == m {
			return m
		}
	}
	return string(b)
}

// intern returns *last when it holds b, else a new string it remembers.
func intern(last *string, b []byte) string {
	if string(b) != *last {
		*last = string(b)
	}
	return *last
}

func parseLength(b []byte) int64 {
	if len(b) == 0 || len(b) > 15 {
		return -1
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	if n > math.MaxInt64/2 {
		return -1
	}
	return n
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func indexLF(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
