// Package transcript is the recorded form of a connection's exchange for
// the l7 parsers' tests, fuzz targets and seed corpora: what each side
// wrote, in order, one record per write (per datagram for UDP).
//
// A record is a flags byte (bit 0: from the server, bit 1: gap before
// it), the visible length and the hidden length (2 bytes each, big
// endian), then the visible bytes. Hidden bytes are ones the call moved
// but the capture did not show (Message.Len beyond Data): real recordings
// have none, a cap applied on replay makes them, and fuzz inputs make any.
// Decode reads any input (a fuzzer's) as far as it makes records.
package transcript

import (
	"encoding/binary"
	"fmt"

	"github.com/flowlens/flowlens/internal/l7"
)

const (
	flagServer = 1 << 0
	flagGap    = 1 << 1
	recordHead = 5
)

// Append appends m as one record.
func Append(b []byte, m l7.Message) []byte {
	var flags byte
	if m.Dir == l7.FromServer {
		flags |= flagServer
	}
	if m.Gap {
		flags |= flagGap
	}
	hidden := m.Len - len(m.Data)
	b = append(b, flags)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Data)))
	b = binary.BigEndian.AppendUint16(b, uint16(hidden))
	return append(b, m.Data...)
}

// Encode returns the records of ms; each message's Data must be at most
// 65,535 bytes, as must its hidden part.
func Encode(ms []l7.Message) ([]byte, error) {
	var b []byte
	for i, m := range ms {
		if len(m.Data) > 0xffff || m.Len-len(m.Data) > 0xffff || m.Len < len(m.Data) {
			return nil, fmt.Errorf("record %d: %d bytes of %d do not fit", i, len(m.Data), m.Len)
		}
		b = Append(b, m)
	}
	return b, nil
}

// Decode reads records until b ends; a last record cut short keeps the
// bytes there are. Data alias b. Messages get NS 1000, 2000, ... in order.
func Decode(b []byte) []l7.Message {
	var ms []l7.Message
	for len(b) >= recordHead {
		flags := b[0]
		n := int(binary.BigEndian.Uint16(b[1:]))
		hidden := int(binary.BigEndian.Uint16(b[3:]))
		b = b[recordHead:]
		n = min(n, len(b))
		m := l7.Message{
			Dir:  l7.FromClient,
			NS:   uint64(len(ms)+1) * 1000,
			Len:  n + hidden,
			Data: b[:n:n],
			Gap:  flags&flagGap != 0,
		}
		if flags&flagServer != 0 {
			m.Dir = l7.FromServer
		}
		ms = append(ms, m)
		b = b[n:]
	}
	return ms
}

// Cap returns ms as a capture of at most limit bytes per call shows them:
// each Data cut to limit, Len unchanged.
func Cap(ms []l7.Message, limit int) []l7.Message {
	out := make([]l7.Message, len(ms))
	for i, m := range ms {
		if len(m.Data) > limit {
			m.Data = m.Data[:limit:limit]
		}
		out[i] = m
	}
	return out
}

// Replay feeds ms to p in order and then expires what is left (at the
// end, as when the connection closes), returning the requests.
func Replay(p l7.Parser, ms []l7.Message) ([]l7.Request, error) {
	var done []l7.Request
	for i, m := range ms {
		var err error
		done, err = p.Feed(m, done)
		if err != nil {
			return done, fmt.Errorf("message %d: %w", i, err)
		}
	}
	return p.Expire(^uint64(0), done), nil
}

// Rechunk returns ms with each side's consecutive writes after the first
// joined and split every n bytes, as reads may see a stream. The first
// stays whole: parsers decide the protocol on it. Data must be whole.
func Rechunk(ms []l7.Message, n int) []l7.Message {
	if len(ms) == 0 {
		return nil
	}
	out := []l7.Message{ms[0]}
	for i := 1; i < len(ms); {
		var b []byte
		d := ms[i].Dir
		for ; i < len(ms) && ms[i].Dir == d; i++ {
			b = append(b, ms[i].Data...)
		}
		for len(b) > 0 {
			k := min(n, len(b))
			out = append(out, l7.Message{Dir: d, NS: uint64(len(out)+1) * 1000, Len: k, Data: b[:k:k]})
			b = b[k:]
		}
	}
	return out
}
