package dns

import (
	"encoding/binary"
	"fmt"

	"github.com/flowlens/flowlens/internal/l7"
)

// maxKeep is how much of one TCP message is kept for reading: the kernel
// samples at most 512 bytes of a call, so more is rarely visible anyway.
const maxKeep = 512

// stream frames one direction of a DNS-over-TCP connection: a 2-byte
// length, then the message. A call's bytes past its sample (Len beyond
// Data) are skipped by count while they fall inside a message; when they
// hide a length prefix the stream is lost until a call starts with a
// plausible message again.
type stream struct {
	prefix  [2]byte
	nprefix int    // prefix bytes read so far, when want == 0
	want    int    // bytes of the current message still to come
	body    []byte // the current message's first bytes (at most maxKeep)
	cut     bool   // body lacks some of the message
	lost    bool
}

func (s *stream) resync() {
	s.nprefix, s.want, s.body, s.lost = 0, 0, s.body[:0], true
}

// feed frames m's bytes, calling msg for each message ended, whole or cut
// short (its tail hidden, or beyond maxKeep).
func (s *stream) feed(m l7.Message, msg func(b []byte, cut bool) error) error {
	if s.lost {
		if detectFraming(m) != framingTCP {
			return nil
		}
		s.lost = false
	}
	for b := m.Data; len(b) > 0; {
		if s.want == 0 {
			s.prefix[s.nprefix] = b[0]
			s.nprefix++
			b = b[1:]
			if s.nprefix < 2 {
				continue
			}
			s.nprefix = 0
			s.want = int(binary.BigEndian.Uint16(s.prefix[:]))
			if s.want < headerLen {
				return fmt.Errorf("dns over tcp: message of %d bytes", s.want)
			}
			s.body, s.cut = s.body[:0], s.want > maxKeep
			continue
		}
		k := min(s.want, len(b))
		if room := maxKeep - len(s.body); room > 0 {
			s.body = append(s.body, b[:min(k, room)]...)
		}
		s.want -= k
		b = b[k:]
		if s.want == 0 {
			if err := msg(s.body, s.cut); err != nil {
				return err
			}
		}
	}
	hidden := m.Len - len(m.Data)
	if hidden <= 0 {
		return nil
	}
	if s.want > 0 && hidden <= s.want {
		s.want -= hidden
		s.cut = true
		if s.want == 0 {
			return msg(s.body, true)
		}
		return nil
	}
	// The hidden bytes end the current message (read what was kept) and
	// hide what follows.
	var err error
	if s.want > 0 {
		err = msg(s.body, true)
	}
	s.resync()
	return err
}
