package l7test

import (
	"fmt"

	"github.com/flowlens/flowlens/internal/l7"
)

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
