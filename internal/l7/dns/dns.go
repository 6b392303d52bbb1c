// Package dns parses DNS over UDP and TCP from the kernel's payload
// samples into l7 requests: the question's name and type, the response
// code, and the addresses that answer the name.
//
// One parser serves both transports. It picks the framing from the first
// message it can read: a datagram is a whole message (its sample may be
// cut short: what the sample holds is read, the rest is not missed); TCP
// prefixes each message with its 2-byte length, and one read may carry
// several messages or part of one.
//
// Queries and responses are told apart by the header's QR bit, not by
// Message.Dir (the UDP path may not know which side is the client), and
// matched by ID and question, so a conversation may have several queries in
// flight (A and AAAA at once). A response with no query seen is not a
// request (its latency is unknown). A request's answers name addresses
// (the agent's dnsnames).
package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/frame"
)

// Protocol is DNS for the l7 tracker.
type Protocol struct{}

func (Protocol) Name() flow.L7Protocol { return flow.DNS }

// Detect accepts a message that is a plausible DNS query or response,
// bare (UDP) or behind TCP's length prefix.
func (Protocol) Detect(m l7.Message) bool {
	return detectFraming(m) != framingUnknown
}

func (Protocol) New() l7.Parser {
	return &parser{}
}

type framing uint8

const (
	framingUnknown framing = iota
	framingUDP
	framingTCP
)

func detectFraming(m l7.Message) framing {
	if plausible(m.Data) {
		return framingUDP
	}
	if len(m.Data) >= 2 {
		n := int(binary.BigEndian.Uint16(m.Data))
		if n >= headerLen && plausible(m.Data[2:min(len(m.Data), 2+n)]) {
			return framingTCP
		}
	}
	return framingUnknown
}

type pending struct {
	id, qtype uint16
	name      string
	startNS   uint64
}

type parser struct {
	framing framing
	streams [2]frame.Framer // TCP, by Dir: client's, server's
	pending []pending       // at most l7.MaxPending; past it the oldest is dropped
	dropped int

	// The call being fed, for the TCP framer's callbacks.
	ns   uint64
	done []l7.Request
}

// scratch holds the messages being read: a kilobyte each, mostly
// addresses (pointers to the GC), which a parser per conversation kept for
// its whole life: a resolver that opens a socket per lookup makes two
// conversations per lookup, each followed for the UDP idle time.
var scratch = sync.Pool{New: func() any { return new(message) }}

// maxKeep is how much of one TCP message is kept for reading: the kernel
// samples at most 512 bytes of a call, so more is rarely visible anyway.
const maxKeep = 512

var errNotDNS = errors.New("not a DNS message")

func (p *parser) Feed(m l7.Message, done []l7.Request) ([]l7.Request, error) {
	if p.framing == framingUnknown {
		p.framing = detectFraming(m)
		if p.framing == framingUnknown {
			return done, errNotDNS
		}
	}
	if p.framing == framingUDP {
		return p.message(m.Data, m.Len > len(m.Data), m.NS, done)
	}
	f := &p.streams[0]
	if m.Dir == l7.FromServer {
		f = &p.streams[1]
	}
	if f.Head == 0 {
		f.Head, f.Keep = 2, maxKeep
	}
	if m.Gap {
		f.Lose()
	}
	if f.Lost() {
		if detectFraming(m) != framingTCP {
			return done, nil
		}
		f.Found()
	}
	p.ns, p.done = m.NS, done
	err := f.Feed(m, p)
	done, p.done = p.done, nil
	return done, err
}

// BodyLen reads TCP's length prefix.
func (p *parser) BodyLen(head []byte) (int, error) {
	n := int(binary.BigEndian.Uint16(head))
	if n < headerLen {
		return 0, fmt.Errorf("dns over tcp: message of %d bytes", n)
	}
	return n, nil
}

// Message reads a TCP message.
func (p *parser) Message(_, body []byte, cut bool) error {
	var err error
	p.done, err = p.message(body, cut, p.ns, p.done)
	return err
}

// message reads one DNS message seen at ns; cut: the capture holds only
// its first bytes, so it ending early is no error.
func (p *parser) message(b []byte, cut bool, ns uint64, done []l7.Request) ([]l7.Request, error) {
	h := scratch.Get().(*message)
	defer scratch.Put(h)
	if err := readHeader(b, h); err != nil {
		if cut {
			return done, nil
		}
		return done, fmt.Errorf("dns header: %w", err)
	}
	if h.opcode != 0 || h.qd != 1 {
		// Notify, update, and questionless messages are not lookups.
		return done, nil
	}
	if err := readQuestion(b, h); err != nil {
		if cut && errors.Is(err, errShort) {
			return done, nil
		}
		return done, fmt.Errorf("dns question: %w", err)
	}
	name := h.name[:h.nameLen]
	if !h.response {
		for _, q := range p.pending {
			if q.id == h.id && q.qtype == h.qtype && q.name == string(name) {
				return done, nil // a retry: latency counts from the first
			}
		}
		if len(p.pending) == l7.MaxPending {
			p.pending = append(p.pending[:0], p.pending[1:]...)
			p.dropped++
		}
		p.pending = append(p.pending, pending{id: h.id, qtype: h.qtype, name: string(name), startNS: ns})
		return done, nil
	}
	h.naddrs = 0
	if h.rcode == 0 {
		readAnswers(b, h)
	}
	for i, q := range p.pending {
		if q.id != h.id || q.qtype != h.qtype || q.name != string(name) {
			continue
		}
		p.pending = append(p.pending[:i], p.pending[i+1:]...)
		r := l7.Request{
			Info: flow.Requests{
				Protocol: flow.DNS,
				Query:    q.name,
				QType:    qtypeName(q.qtype),
				RCode:    rcodeName(h.rcode),
			},
			StartNS:  q.startNS,
			ResponNS: ns,
			Failed:   h.rcode != 0 && h.rcode != 3,
		}
		if h.naddrs > 0 {
			r.Info.Answers = append([]netip.Addr(nil), h.addrs[:min(h.naddrs, flow.MaxAnswers)]...)
		}
		return append(done, r), nil
	}
	return done, nil
}

func unanswered(q pending) l7.Request {
	return l7.Request{
		Info:    flow.Requests{Protocol: flow.DNS, Query: q.name, QType: qtypeName(q.qtype)},
		StartNS: q.startNS,
		Failed:  true,
	}
}

func (p *parser) TakeDropped() int {
	n := p.dropped
	p.dropped = 0
	return n
}

func (p *parser) Waiting() bool { return len(p.pending) > 0 }

func (p *parser) Expire(ns uint64, done []l7.Request) []l7.Request {
	kept := p.pending[:0]
	for _, q := range p.pending {
		if q.startNS < ns {
			done = append(done, unanswered(q))
		} else {
			kept = append(kept, q)
		}
	}
	p.pending = kept
	return done
}
