package l7test

import (
	"fmt"
	"os"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
)

// Load reads a recording (Encode's format, as hack/l7capture writes it)
// and returns its first connection's messages.
func Load(t testing.TB, path string) []l7.Message {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Messages(Decode(b), 0)
}

// Messages returns the messages of one connection (Key.Cookie) of
// samples, in order.
func Messages(samples []l7.Sample, cookie uint64) []l7.Message {
	var out []l7.Message
	for _, s := range samples {
		if s.Key.Cookie == cookie {
			out = append(out, s.Msg)
		}
	}
	return out
}

// Cap returns ms as a capture of at most limit bytes per call shows them:
// each Data cut to limit, Len unchanged.
func Cap(ms []l7.Message, limit int) []l7.Message {
	out := make([]l7.Message, len(ms))
	for i, m := range ms {
		m.Data = m.Data[:min(len(m.Data), limit):min(len(m.Data), limit)]
		out[i] = m
	}
	return out
}

// Rechunk returns ms with each side's consecutive messages after the
// first joined and split every n bytes, as reads may see a stream; each
// piece keeps the NS of the message it starts in. The first stays whole:
// parsers decide the protocol on it. Data must be whole (Len == len(Data)).
func Rechunk(ms []l7.Message, n int) []l7.Message {
	if len(ms) == 0 {
		return nil
	}
	out := []l7.Message{ms[0]}
	for i := 1; i < len(ms); {
		var b []byte
		var starts []uint64 // NS per byte's message, by offset
		d := ms[i].Dir
		for ; i < len(ms) && ms[i].Dir == d; i++ {
			b = append(b, ms[i].Data...)
			for range ms[i].Data {
				starts = append(starts, ms[i].NS)
			}
		}
		for off := 0; off < len(b); off += n {
			end := min(off+n, len(b))
			out = append(out, l7.Message{Dir: d, NS: starts[off], Len: end - off, Data: b[off:end:end]})
		}
	}
	return out
}

// Replay feeds ms to p in order and then expires what is left, as when
// the connection closes, returning the requests.
func Replay(p l7.Parser, ms []l7.Message) ([]l7.Request, error) {
	var done []l7.Request
	for i, m := range ms {
		var err error
		if done, err = p.Feed(m, done); err != nil {
			return done, fmt.Errorf("message %d: %w", i, err)
		}
	}
	return p.Expire(^uint64(0), done), nil
}

// Shape is a connection's messages as a parser may be shown them.
type Shape struct {
	Name     string
	Messages []l7.Message
}

// Shapes returns a recording's whole messages ms as a parser may be shown
// them, in each of which it must find the same requests: whole, capped at
// 256 and 64 bytes a call as the kernel samples, and re-split every byte
// and every split bytes as reads may see the stream.
func Shapes(ms []l7.Message, split int) []Shape {
	return []Shape{
		{"whole", ms},
		{"capped 256", Cap(ms, 256)},
		{"capped 64", Cap(ms, 64)},
		{"split 1", Rechunk(ms, 1)},
		{fmt.Sprintf("split %d", split), Rechunk(ms, split)},
	}
}

// Outcome returns a request of a protocol whose failures are error codes
// (PostgreSQL, Redis) as "METHOD", "METHOD:CODE" when it failed with CODE,
// and "!" added when it was never answered. It fails t when r is of
// another protocol, answered no later than it started, or failed for
// another reason than a code or no answer.
func Outcome(t testing.TB, protocol flow.L7Protocol, r l7.Request) string {
	t.Helper()
	if r.Info.Protocol != protocol || r.Failed != (r.Info.Error != "" || r.ResponNS == 0) {
		t.Fatalf("request %+v", r)
	}
	s := r.Info.Method
	if r.Info.Error != "" {
		s += ":" + r.Info.Error
	}
	if r.ResponNS == 0 {
		s += "!"
	} else if r.ResponNS <= r.StartNS {
		t.Fatalf("answered before asked: %+v", r)
	}
	return s
}

// Bench measures proto's parser on a connection's messages: each
// iteration a new parser fed all of them in order. Throughput is in the
// bytes the connection moved (Len: those the capture hides too).
func Bench(b *testing.B, proto l7.Protocol, ms []l7.Message) {
	var n int64
	for _, m := range ms {
		n += int64(m.Len)
	}
	b.SetBytes(n)
	b.ReportAllocs()
	var done []l7.Request
	for b.Loop() {
		p := proto.New()
		done = done[:0]
		for _, m := range ms {
			done, _ = p.Feed(m, done)
		}
	}
}
