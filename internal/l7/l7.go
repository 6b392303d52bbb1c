// Package l7 turns the payload samples the kernel captures on a
// connection's sockets into application requests: one parser per protocol
// (internal/l7/<protocol>) behind the small interface below, a tracker that
// detects each connection's protocol by content, feeds its parser in order,
// and folds the completed requests into per-flow groups (flow.Requests).
//
// Samples are the first bytes of each send or receive (Message.Data) with
// the length the call moved (Message.Len): a parser frames the stream from
// what it can see and skips what it cannot, and a gap in the capture
// (budget, full ring) makes it drop what it was matching and resynchronise.
package l7

import "github.com/flowlens/flowlens/internal/flow"

// Dir says which end of the connection sent a message.
type Dir uint8

const (
	FromClient Dir = iota + 1 // the side that opened the connection
	FromServer
)

// Message is one send or receive on a socket, as the kernel captured it.
type Message struct {
	Dir Dir
	NS  uint64 // CLOCK_MONOTONIC when the call returned
	// Len is how many bytes the call moved; Data their first bytes
	// (len(Data) <= Len), valid only during Feed.
	Len  int
	Data []byte
	// Gap: messages of this connection before this one were not captured
	// (sampled out, or lost); whatever was being matched is unreliable.
	// The tracker has already taken the parser's pending requests (with
	// Expire, counted as dropped) before it feeds a message with Gap set:
	// the parser only has to resynchronise.
	Gap bool
}

// Request is one request with its response, or without one.
type Request struct {
	// Info carries the identifying fields (Protocol, Method, Path, Host,
	// Status, Query, QType, RCode, Answers, Error); Count, Failed and
	// Latency are the tracker's.
	Info     flow.Requests
	StartNS  uint64 // the request's first byte
	ResponNS uint64 // the response's first byte; 0: never answered
	Failed   bool
}

// Parser follows one connection (or one UDP conversation) in one protocol.
// It is used by one goroutine.
type Parser interface {
	// Feed takes the connection's next message and appends the requests
	// it completed. An error means the bytes are not this protocol or are
	// malformed: the tracker counts it and stops parsing the connection.
	Feed(m Message, done []Request) ([]Request, error)
	// Expire appends the requests still waiting for an answer that were
	// sent before ns (all of them when the connection ended), as never
	// answered, and forgets them.
	Expire(ns uint64, done []Request) []Request
}

// MaxPending bounds the requests a parser holds waiting for an answer, so
// that no input makes it grow without bound. Past it a parser lets go of
// requests (and says how many through Dropper).
const MaxPending = 64

// Dropper is implemented by parsers that let go of requests without an
// outcome (past MaxPending): TakeDropped returns how many since its last
// call, and the tracker counts them as dropped.
type Dropper interface {
	TakeDropped() int
}

// Waiter is implemented by parsers that can tell whether they hold
// requests waiting for an answer. A connection whose parser waits for none
// and that has nothing to hand over is left out of Take until its next
// sample, its close or its idle timeout; one whose parser cannot tell is
// visited at every Take.
type Waiter interface {
	Waiting() bool
}

// Protocol is a parser's factory and its content test.
type Protocol interface {
	Name() flow.L7Protocol
	// Detect reports whether a connection's first captured message (in
	// either direction) is this protocol.
	Detect(m Message) bool
	New() Parser
}
