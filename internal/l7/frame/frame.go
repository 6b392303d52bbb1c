// Package frame splits one direction of a connection, as the kernel's
// capped samples show it, into length-prefixed messages: DNS over TCP
// (a 2-byte length), PostgreSQL (a type byte and a 4-byte length).
//
// Each sample is a call's first bytes (Message.Data) and how many it moved
// (Message.Len). Bytes past the sample that fall inside a message's body
// are skipped by count: the message ends cut short, with the body bytes
// that came before the hidden ones. When they hide a
// header, the framer is lost: what follows cannot be framed until the
// owner finds a call that starts at a message (Found).
package frame

import "github.com/flowlens/flowlens/internal/l7"

// Reader is the protocol behind a Framer.
type Reader interface {
	// BodyLen returns the length of the body following a header (an
	// error if the header is not the protocol's).
	BodyLen(head []byte) (int, error)
	// Message takes a message ended: its header and its body's first
	// bytes (at most Keep); cut says bytes of the body are missing.
	Message(head, body []byte, cut bool) error
}

// MaxHead is the longest header a Framer reads.
const MaxHead = 8

// Framer frames one direction, from a message's start once Head and Keep
// are set.
type Framer struct {
	// Head is the next message's header length (1..MaxHead); the owner may
	// change it between messages (in Reader.Message).
	Head int
	// Keep bounds the body bytes kept per message.
	Keep int

	head   [MaxHead]byte
	nhead  int
	body   []byte
	want   int  // body bytes still to come
	holed  bool // body bytes were hidden: later ones are not its start
	inBody bool
	cut    bool
	lost   bool
}

// Lost reports whether the framer waits for a call starting at a message.
func (f *Framer) Lost() bool { return f.lost }

// Found says the next call starts at a message.
func (f *Framer) Found() { f.lost, f.nhead, f.inBody = false, 0, false }

// Lose drops the message in progress and waits for Found.
func (f *Framer) Lose() { f.lost, f.nhead, f.inBody, f.body = true, 0, false, f.body[:0] }

// Feed frames one call's bytes, handing each message ended to r. A lost
// framer ignores them.
func (f *Framer) Feed(m l7.Message, r Reader) error {
	if f.lost {
		return nil
	}
	for b := m.Data; len(b) > 0 && !f.lost; {
		if !f.inBody {
			k := min(f.Head-f.nhead, len(b))
			f.nhead += copy(f.head[f.nhead:f.Head], b[:k])
			b = b[k:]
			if f.nhead < f.Head {
				break
			}
			n, err := r.BodyLen(f.head[:f.Head])
			if err != nil {
				return err
			}
			f.want, f.inBody, f.body, f.cut, f.holed = n, true, f.body[:0], n > f.Keep, false
		}
		k := min(f.want, len(b))
		if room := f.Keep - len(f.body); room > 0 && !f.holed {
			f.body = append(f.body, b[:min(k, room)]...)
		}
		f.want -= k
		b = b[k:]
		if f.want == 0 {
			if err := f.end(r); err != nil {
				return err
			}
		}
	}
	hidden := m.Len - len(m.Data)
	if hidden <= 0 || f.lost {
		return nil
	}
	if f.inBody && hidden <= f.want {
		f.want -= hidden
		f.cut, f.holed = true, true
		if f.want == 0 {
			return f.end(r)
		}
		return nil
	}
	// The hidden bytes end the message in progress (read what was kept)
	// and hide what follows.
	var err error
	if f.inBody {
		f.cut = true
		err = f.end(r)
	}
	f.Lose()
	return err
}

func (f *Framer) end(r Reader) error {
	f.inBody, f.nhead = false, 0
	return r.Message(f.head[:f.Head], f.body, f.cut)
}
