// Package http parses HTTP/1.0 and HTTP/1.1 from the payload samples of a
// connection: requests queue in order (keep-alive, pipelining) and each
// final response answers the oldest one.
//
// Each direction is a byte stream of which the parser sees windows: a
// message moved Len bytes and Data holds their first bytes. Header blocks
// must be visible to be parsed; bodies are skipped by count (Content-Length,
// or chunk sizes, which must be visible). A block split across fully
// visible messages is carried (up to maxCarry bytes). When framing is lost
// (headers cut by the capture cap, a chunk size not visible, a gap), the
// direction waits for the next message that starts with a request line
// (client) or a status line (server) and resumes there. For pipelined
// requests this means: a request that starts inside the invisible part of
// a message is not seen, and if its response is seen while later requests
// are queued, those pair one place off until the queue drains. Requests
// whose headers were cut keep what was visible (the method and path are on
// the first line; the Host header only if its line was visible).
//
// Only the method, the path template, the host (without port) and the
// status are kept; header values only for the names in Config.Headers
// (never credentials); no body byte is ever read past the framing.
package http

import (
	"fmt"
	"strings"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
)

// Config says what, beyond method, path template, host and status, the
// parser keeps.
type Config struct {
	// Headers are request header names (case-insensitive) whose values
	// are kept on the request, at most maxHeaders names, each value cut
	// at maxHeaderValue bytes. Empty by default. Credentials (Cookie,
	// Authorization, ...) are refused even when listed: New fails.
	Headers []string
}

const (
	maxHeaders     = 8
	maxHeaderValue = 64
)

// credentialHeaders are never kept: their values are secrets by design.
var credentialHeaders = []string{
	"authorization", "proxy-authorization", "cookie", "set-cookie",
	"x-api-key", "x-auth-token", "x-csrf-token",
}

// Protocol is HTTP/1.x's l7.Protocol.
type Protocol struct {
	headers []string // lower case
}

// New checks cfg and returns the protocol.
func New(cfg Config) (*Protocol, error) {
	if len(cfg.Headers) > maxHeaders {
		return nil, fmt.Errorf("http headers: %d names, at most %d", len(cfg.Headers), maxHeaders)
	}
	p := &Protocol{}
	for _, h := range cfg.Headers {
		name := strings.ToLower(strings.TrimSpace(h))
		if name == "" || !isToken([]byte(name)) {
			return nil, fmt.Errorf("http headers: %q is not a header name", h)
		}
		for _, c := range credentialHeaders {
			if name == c {
				return nil, fmt.Errorf("http headers: %q carries credentials and is never kept", h)
			}
		}
		p.headers = append(p.headers, name)
	}
	return p, nil
}

// Name is flow.HTTP.
func (p *Protocol) Name() flow.L7Protocol { return flow.HTTP }

// Detect accepts a message that starts with a whole request line
// (METHOD SP target SP HTTP/1.x) or a status line (HTTP/1.x NNN), in
// either direction.
func (p *Protocol) Detect(m l7.Message) bool {
	if _, st := parseStatusLine(m.Data); st == lineOK {
		return true
	}
	rl, st := parseRequestLine(m.Data)
	return st == lineOK && rl.version
}

// New returns a parser for one connection.
func (p *Protocol) New() l7.Parser {
	return &parser{headers: p.headers}
}
