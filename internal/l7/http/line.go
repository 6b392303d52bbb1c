package http

import (
	"bytes"
	"strings"
)

// lineState says whether bytes hold a whole start line, could still become
// one with more bytes, or never can.
type lineState uint8

const (
	lineBad lineState = iota
	lineShort
	lineOK
)

const maxMethod = 20

// emptyLine is the length of the empty line b starts with (CRLF, or a
// bare LF), 0 if it starts with anything else, and -1 for a CR alone,
// whose LF may follow in the next message.
func emptyLine(b []byte) int {
	switch {
	case len(b) > 0 && b[0] == '\n':
		return 1
	case len(b) > 1 && b[0] == '\r' && b[1] == '\n':
		return 2
	case len(b) == 1 && b[0] == '\r':
		return -1
	}
	return 0
}

type requestLine struct {
	method, target []byte
	version        bool // HTTP/1.0 or HTTP/1.1 and the line's end were seen
	n              int  // the line's length through its end, when version
}

// parseRequestLine reads "METHOD SP target SP HTTP/1.x" and the line end.
// lineShort keeps what was seen: a method, and the target so far.
func parseRequestLine(b []byte) (requestLine, lineState) {
	var rl requestLine
	i := 0
	for i < len(b) && i <= maxMethod && isTchar(b[i]) {
		i++
	}
	switch {
	case i > maxMethod:
		return rl, lineBad
	case i == len(b):
		return rl, lineShort
	case i == 0 || b[i] != ' ':
		return rl, lineBad
	}
	rl.method = b[:i]
	j := i + 1
	k := j
	for k < len(b) && b[k] > ' ' && b[k] < 0x7f {
		k++
	}
	rl.target = b[j:k]
	if k == len(b) {
		return rl, lineShort
	}
	if k == j || b[k] != ' ' {
		return rl, lineBad
	}
	n, st := parseVersion(b[k+1:])
	if st != lineOK {
		return rl, st
	}
	end, st := parseLineEnd(b[k+1+n:])
	if st != lineOK {
		return rl, st
	}
	rl.version, rl.n = true, k+1+n+end
	return rl, lineOK
}

// parseStatusLine reads "HTTP/1.x SP NNN" and what must follow the code
// (a space or the line's end); the reason phrase is not read.
func parseStatusLine(b []byte) (int, lineState) {
	n, st := parseVersion(b)
	if st != lineOK {
		return 0, st
	}
	b = b[n:]
	if len(b) == 0 {
		return 0, lineShort
	}
	if b[0] != ' ' {
		return 0, lineBad
	}
	code := 0
	for i := 1; i <= 3; i++ {
		if i == len(b) {
			return 0, lineShort
		}
		if b[i] < '0' || b[i] > '9' {
			return 0, lineBad
		}
		code = code*10 + int(b[i]-'0')
	}
	if len(b) == 4 {
		return 0, lineShort
	}
	if c := b[4]; c != ' ' && c != '\r' && c != '\n' || code < 100 {
		return 0, lineBad
	}
	return code, lineOK
}

// parseVersion reads "HTTP/1.0" or "HTTP/1.1".
func parseVersion(b []byte) (int, lineState) {
	const prefix = "HTTP/1."
	for i := 0; i < len(prefix); i++ {
		if i == len(b) {
			return 0, lineShort
		}
		if b[i] != prefix[i] {
			return 0, lineBad
		}
	}
	switch {
	case len(b) == len(prefix):
		return 0, lineShort
	case b[len(prefix)] != '0' && b[len(prefix)] != '1':
		return 0, lineBad
	}
	return len(prefix) + 1, lineOK
}

// parseLineEnd reads CRLF or a bare LF.
func parseLineEnd(b []byte) (int, lineState) {
	switch {
	case len(b) == 0:
		return 0, lineShort
	case b[0] == '\n':
		return 1, lineOK
	case b[0] != '\r':
		return 0, lineBad
	case len(b) == 1:
		return 0, lineShort
	case b[1] == '\n':
		return 2, lineOK
	}
	return 0, lineBad
}

// startState says whether b, at a place where a message must start in
// this direction, does (or still could, given more bytes).
func startState(b []byte, request bool) lineState {
	if request {
		_, st := parseRequestLine(b)
		return st
	}
	_, st := parseStatusLine(b)
	return st
}

// head is what one pass over a message's header block reads: its start
// line, the fields the parser uses, and its length. Headers are read
// once, as the block's end is looked for: a keep-alive request's head
// was read twice over, for its end and then for its fields.
type head struct {
	start   lineState   // the start line's
	line    requestLine // a request's start line
	status  int         // a response's status
	framing framing
	host    []byte // a request's Host value
	end     int    // the block's length through its empty line; -1: b ends first
}

// readHead reads the header block at the start of b; fields are read
// only after a whole start line, and only whole lines of them. each, if
// not nil, is given every field too.
func readHead(b []byte, request bool, each func(name, value []byte)) head {
	h := head{framing: framing{length: -1}, end: -1}
	n := 0
	if request {
		h.line, h.start = parseRequestLine(b)
		n = h.line.n
	} else if h.status, h.start = parseStatusLine(b); h.start == lineOK {
		// The reason phrase is not read: the line ends at its LF.
		if n = bytes.IndexByte(b, '\n') + 1; n == 0 {
			return h
		}
	}
	if h.start != lineOK {
		return h
	}
	for rest := b[n:]; ; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return h
		}
		line := rest[:i]
		rest = rest[i+1:]
		n += i + 1
		if k := len(line); k > 0 && line[k-1] == '\r' {
			line = line[:k-1]
		}
		if len(line) == 0 {
			h.end = n
			return h
		}
		name, value, ok := field(line)
		if !ok {
			continue
		}
		h.framing.header(name, value)
		if request && equalFold(name, "host") {
			h.host = value
		}
		if each != nil {
			each(name, value)
		}
	}
}

// field splits a header line into its name and value; not ok for an
// obsolete folded line, or junk: not a header the parser reads.
func field(line []byte) (name, value []byte, ok bool) {
	c := bytes.IndexByte(line, ':')
	if c <= 0 || !isToken(line[:c]) {
		return nil, nil, false
	}
	return line[:c], trimSpace(line[c+1:]), true
}

// tchars are the bytes a token may hold (RFC 9110 5.6.2).
var tchars = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
	}
	return t
}()

func isTchar(c byte) bool { return tchars[c] }

func isToken(b []byte) bool {
	for _, c := range b {
		if !isTchar(c) {
			return false
		}
	}
	return len(b) > 0
}

// equalFold compares an ASCII header name with a lower-case one.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
