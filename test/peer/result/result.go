// Package result holds what the peer prints when it is done: the exact
// counts that tests and the benchmark compare flowlens' records with.
package result

// Serve is what a server moved.
type Serve struct {
	Connections  int64 `json:"connections"`
	BytesIn      int64 `json:"bytes_in"`
	BytesOut     int64 `json:"bytes_out"`
	DatagramsIn  int64 `json:"datagrams_in,omitempty"`
	DatagramsOut int64 `json:"datagrams_out,omitempty"`
}

// Connect is what a client did, connection by connection.
type Connect struct {
	OK         int64   `json:"ok"`
	Refused    int64   `json:"refused"`
	TimedOut   int64   `json:"timed_out"`
	Failed     int64   `json:"failed"`
	BytesOut   int64   `json:"bytes_out"`
	BytesIn    int64   `json:"bytes_in"`
	Seconds    float64 `json:"seconds"`
	FirstStart int64   `json:"first_start_unix_ns"` // when the first connect began
	LastStart  int64   `json:"last_start_unix_ns"`
}
