// Package redis parses the Redis protocol (RESP2 and RESP3) from the
// kernel's payload samples into l7 requests: the command, its error
// reply's code, its latency. No key or value is kept.
//
//   - A request is a command: an array of bulk strings, or an inline
//     command line. Method is the command upper-cased, with its
//     subcommand for the container commands (CLIENT SETNAME, CONFIG GET,
//     ...): those are fixed words, never data.
//   - Replies answer commands in order (pipelining is FIFO); RESP3 push
//     messages ('>') answer nothing; an attribute ('|') is part of the
//     reply after it. MULTI, each QUEUED command and EXEC are each
//     answered (errors inside EXEC's array do not fail EXEC).
//   - An error reply ('-', or RESP3's blob error) fails its command;
//     Error is its first word (ERR, WRONGTYPE, MOVED, ...).
//   - After SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE (answered by the server's
//     next message) the connection carries messages, not replies: it is
//     no longer parsed.
//
// Samples show a call's first bytes: a bulk string's hidden rest is
// skipped by count. When hidden bytes hide value headers (a long array
// reply, a pipeline longer than the sample) the direction is lost: the
// waiting commands are taken as answered, and the server side is framed
// again from the client's next call (commands hidden in a client's call
// are not seen).
package redis

import (
	"bytes"
	"errors"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
)

// Protocol is Redis for the l7 tracker.
type Protocol struct{}

func (Protocol) Name() flow.L7Protocol { return flow.Redis }

// Detect accepts a client's call that starts with a command array:
// "*<n>\r\n$<len>\r\n" and a letter.
func (Protocol) Detect(m l7.Message) bool {
	return m.Dir == l7.FromClient && startsCommand(m.Data)
}

func startsCommand(b []byte) bool {
	b, ok := number(b, '*')
	if !ok {
		return false
	}
	b, ok = number(b, '$')
	return ok && len(b) > 0 && isLetter(b[0])
}

// number reads "<typ><digits>\r\n" with 1 to 9 digits.
func number(b []byte, typ byte) ([]byte, bool) {
	if len(b) < 4 || b[0] != typ {
		return nil, false
	}
	i := 1
	for i < len(b) && i <= 10 && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	if i == 1 || i > 10 || !bytes.HasPrefix(b[i:], []byte("\r\n")) {
		return nil, false
	}
	return b[i+2:], true
}

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

type pending struct {
	method   string
	startNS  uint64
	responNS uint64
}

type parser struct {
	client, server reader
	cmd            command // the command being read
	started        bool
	subscribed     bool
	tentative      bool      // the server side was framed again from a guess
	pending        []pending // at most l7.MaxPending
	dropped        int
	ns             uint64
	done           []l7.Request
}

// client and server are the parser's two sinks.
type (
	client parser
	server parser
)

func (Protocol) New() l7.Parser {
	return &parser{}
}

var errNotRedis = errors.New("not redis")

func (p *parser) Feed(m l7.Message, done []l7.Request) ([]l7.Request, error) {
	if p.subscribed && len(p.pending) == 0 {
		return done, nil
	}
	if !p.started {
		if m.Dir != l7.FromClient {
			return done, nil
		}
		if !startsCommand(m.Data) {
			return done, errNotRedis
		}
		p.started = true
	}
	p.ns, p.done = m.NS, done
	hidden := m.Len - len(m.Data)
	var err error
	if m.Dir == l7.FromClient {
		if m.Gap || p.client.lost {
			if !startsCommand(m.Data) {
				p.client.Lose()
				return done, nil
			}
			p.client = reader{}
		}
		if p.server.lost {
			// The client speaks again: its answers were read.
			p.server, p.tentative = reader{}, true
		}
		err = p.client.feed(m.Data, hidden, (*client)(p), true)
	} else {
		if m.Gap {
			p.server.Lose()
		}
		if len(p.pending) > 0 && p.pending[0].responNS == 0 && !p.server.lost {
			p.pending[0].responNS = m.NS // its reply starts here
		}
		err = p.server.feed(m.Data, hidden, (*server)(p), false)
		if err != nil && p.tentative {
			p.server.Lose()
			err = nil
		}
		if p.server.lost {
			p.answerAll()
		}
	}
	done, p.done = p.done, nil
	return done, err
}

// command is a command's name and first argument, as far as kept.
type command struct {
	name, sub [keepBulk]byte
	nname     int
	nsub      int
}

func (c *client) bulk(index int, data []byte) {
	cmd := &(*parser)(c).cmd
	switch index {
	case 0:
		cmd.nname = copy(cmd.name[:], data)
	case 1:
		cmd.nsub = copy(cmd.sub[:], data)
	}
}

func (c *client) top(typ byte, first []byte) error {
	p := (*parser)(c)
	cmd := &p.cmd
	if typ == 'i' {
		// Inline: words separated by blanks.
		f := bytes.Fields(first)
		cmd.nname, cmd.nsub = 0, 0
		if len(f) > 0 {
			cmd.nname = copy(cmd.name[:], f[0])
		}
		if len(f) > 1 {
			cmd.nsub = copy(cmd.sub[:], f[1])
		}
	} else if typ != '*' {
		return errNotRedis
	}
	method := commandName(cmd.name[:cmd.nname], cmd.sub[:cmd.nsub])
	cmd.nname, cmd.nsub = 0, 0
	if len(p.pending) == l7.MaxPending {
		p.pending = append(p.pending[:0], p.pending[1:]...)
		p.dropped++
	}
	p.pending = append(p.pending, pending{method: method, startNS: p.ns})
	switch method {
	case "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE":
		p.subscribed = true
	}
	return nil
}

func (s *server) bulk(int, []byte) {}

func (s *server) top(typ byte, first []byte) error {
	p := (*parser)(s)
	p.tentative = false
	if typ == '>' && !p.subscribed {
		return nil // a push, not a reply
	}
	if len(p.pending) == 0 {
		return nil // a reply to what was not seen
	}
	q := p.pending[0]
	p.pending = append(p.pending[:0], p.pending[1:]...)
	if q.responNS == 0 {
		q.responNS = p.ns
	}
	code := ""
	if typ == '-' || typ == '!' {
		code = errorCode(first)
	}
	p.emit(q, code)
	return nil
}

func (p *parser) emit(q pending, code string) {
	p.done = append(p.done, l7.Request{
		Info:     flow.Requests{Protocol: flow.Redis, Method: q.method, Error: code},
		StartNS:  q.startNS,
		ResponNS: q.responNS,
		Failed:   code != "",
	})
}

// answerAll takes the waiting commands as answered now: their replies
// are in bytes the capture did not show.
func (p *parser) answerAll() {
	for _, q := range p.pending {
		if q.responNS == 0 {
			q.responNS = p.ns
		}
		p.emit(q, "")
	}
	p.pending = p.pending[:0]
}

// containers are the commands whose first argument is a subcommand.
var containers = map[string]bool{
	"ACL": true, "CLIENT": true, "CLUSTER": true, "COMMAND": true, "CONFIG": true,
	"FUNCTION": true, "LATENCY": true, "MEMORY": true, "MODULE": true, "OBJECT": true,
	"PUBSUB": true, "SCRIPT": true, "SLOWLOG": true, "XGROUP": true, "XINFO": true,
}

// commandName upper-cases a command (letters, digits, '_', '-', '.', '|';
// "" otherwise) and adds a container's subcommand.
func commandName(name, sub []byte) string {
	if !isWord(name) {
		return ""
	}
	n := string(bytes.ToUpper(name))
	if containers[n] && isWord(sub) {
		n += " " + string(bytes.ToUpper(sub))
	}
	return n
}

func isWord(b []byte) bool {
	if len(b) == 0 || len(b) > 32 {
		return false
	}
	for _, c := range b {
		if !(isLetter(c) || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' || c == '|') {
			return false
		}
	}
	return true
}

// errorCode is an error reply's first word if it is an upper-case code,
// else ERR.
func errorCode(msg []byte) string {
	if i := bytes.IndexByte(msg, ' '); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) == 0 || len(msg) > 32 {
		return "ERR"
	}
	for _, c := range msg {
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return "ERR"
		}
	}
	return string(msg)
}

func (p *parser) TakeDropped() int {
	n := p.dropped
	p.dropped = 0
	return n
}

func (p *parser) Expire(ns uint64, done []l7.Request) []l7.Request {
	n := 0
	for n < len(p.pending) && p.pending[n].startNS < ns {
		q := p.pending[n]
		done = append(done, l7.Request{
			Info:    flow.Requests{Protocol: flow.Redis, Method: q.method},
			StartNS: q.startNS,
			Failed:  true,
		})
		n++
	}
	p.pending = append(p.pending[:0], p.pending[n:]...)
	return done
}
