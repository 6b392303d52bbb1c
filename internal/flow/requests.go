package flow

import "net/netip"

// L7Protocol is an application protocol flowlens parses.
type L7Protocol string

const (
	HTTP     L7Protocol = "http"
	DNS      L7Protocol = "dns"
	Postgres L7Protocol = "postgres"
	Redis    L7Protocol = "redis"
)

// L7Protocols lists every application protocol, for validating filters.
var L7Protocols = []L7Protocol{HTTP, DNS, Postgres, Redis}

// Requests are the requests of one flow in one interval that look the same:
// same protocol, operation, target and outcome. A request is counted in the
// interval its response started, or, never answered, in the one it was given
// up on (Status 0, no RCode). Only what identifies a request is kept: no
// query-string value, header value, cookie or body byte ever reaches here.
type Requests struct {
	Protocol L7Protocol `json:"protocol"`
	TLS      bool       `json:"tls,omitempty"` // read as plaintext from a TLS library

	// Method is the operation: the HTTP method, the Redis command
	// (upper case), the PostgreSQL statement's kind (SELECT, INSERT, ...).
	Method string `json:"method,omitempty"`
	// Path is the HTTP path template: ids, UUIDs and hex tokens collapsed
	// to {id}, the query string dropped.
	Path   string `json:"path,omitempty"`
	Host   string `json:"host,omitempty"`   // HTTP Host header, port dropped
	Status int    `json:"status,omitempty"` // HTTP status code
	// Headers are the values of the request headers the operator
	// allow-listed (names in lower case); none by default, never
	// credentials (Cookie, Authorization, ...).
	Headers map[string]string `json:"http_headers,omitempty"`

	Query   string       `json:"dns_query,omitempty"`   // DNS question name, no trailing dot
	QType   string       `json:"dns_type,omitempty"`    // A, AAAA, CNAME, ...
	RCode   string       `json:"dns_rcode,omitempty"`   // noerror, nxdomain, servfail, ...
	Answers []netip.Addr `json:"dns_answers,omitempty"` // A and AAAA answers, at most MaxAnswers

	// Error is the failure's code: PostgreSQL's SQLSTATE ("42P01"), the
	// Redis error reply's first word ("ERR", "WRONGTYPE").
	Error string `json:"error,omitempty"`

	Count uint32 `json:"count"`
	// Failed counts the requests that failed: HTTP 5xx, DNS answers other
	// than noerror and nxdomain, PostgreSQL errors, Redis error replies,
	// and requests never answered.
	Failed uint32 `json:"failed,omitempty"`
	// Latency is from the request's first byte to the response's first
	// byte as the observing socket saw them (min/avg/max, µs), over the
	// answered requests.
	Latency *RTT `json:"latency,omitempty"`
}

// MaxAnswers bounds the DNS answers kept per group.
const MaxAnswers = 8
