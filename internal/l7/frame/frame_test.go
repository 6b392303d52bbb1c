package frame

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/flowlens/flowlens/internal/l7"
)

// lengths reads a 2-byte length header and records each message as
// "body" or "body~" when cut.
type lengths struct{ got []string }

func (r *lengths) BodyLen(head []byte) (int, error) {
	n := int(binary.BigEndian.Uint16(head))
	if n > 1000 {
		return 0, errors.New("too long")
	}
	return n, nil
}

func (r *lengths) Message(_, body []byte, cut bool) error {
	s := string(body)
	if cut {
		s += "~"
	}
	r.got = append(r.got, s)
	return nil
}

func framed(bodies ...string) []byte {
	var b []byte
	for _, s := range bodies {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	return b
}

func TestFramer(t *testing.T) {
	stream := framed("hello", "", "world!", "0123456789")
	for _, tc := range []struct {
		name  string
		calls []l7.Message // Data as offsets into stream via Len
		want  []string
		lost  bool
	}{
		{"one call", []l7.Message{{Len: len(stream), Data: stream}}, []string{"hello", "", "world!", "01234567~"}, false},
		{"split in headers and bodies", []l7.Message{
			{Len: 1, Data: stream[:1]}, {Len: 4, Data: stream[1:5]}, {Len: 10, Data: stream[5:15]}, {Len: len(stream) - 15, Data: stream[15:]},
		}, []string{"hello", "", "world!", "01234567~"}, false},
		// The hidden part starts "world!": cut (bytes after a hole are not
		// its start), then framing goes on.
		{"hidden inside a body", []l7.Message{
			{Len: 13, Data: stream[:11]}, {Len: len(stream) - 13, Data: stream[13:]},
		}, []string{"hello", "", "~", "01234567~"}, false},
		// The hidden part covers the next header: lost, nothing of it read.
		{"hidden header", []l7.Message{
			{Len: 20, Data: stream[:9]}, {Len: len(stream) - 20, Data: stream[20:]},
		}, []string{"hello", ""}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Framer{Head: 2, Keep: 8}
			r := &lengths{}
			for _, m := range tc.calls {
				if err := f.Feed(m, r); err != nil {
					t.Fatal(err)
				}
			}
			if !reflect.DeepEqual(r.got, tc.want) || f.Lost() != tc.lost {
				t.Errorf("got %q lost %v, want %q lost %v", r.got, f.Lost(), tc.want, tc.lost)
			}
		})
	}
	f := Framer{Head: 2, Keep: 8}
	f.Lose()
	r := &lengths{}
	if err := f.Feed(l7.Message{Len: len(stream), Data: stream}, r); err != nil || len(r.got) != 0 {
		t.Fatalf("lost framer read %q, %v", r.got, err)
	}
	f.Found()
	bad := []byte{0xff, 0xff}
	if err := f.Feed(l7.Message{Len: 2, Data: bad}, r); err == nil {
		t.Fatal("no error from BodyLen")
	}
}
