package redis

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// RESP framing (RESP2 and RESP3): a value is a line starting with its
// type byte; bulk types carry their length and then that many bytes and a
// CRLF; aggregates carry their count of values (maps and attributes count
// pairs). An attribute ('|') annotates the value after it and is not
// itself one.
const (
	maxLine  = 64 // header bytes kept; longer lines are only scanned
	maxDepth = 32 // nested aggregates
	keepBulk = 40 // bulk bytes kept: command names, an error's code
	maxBulk  = 512 << 20
	maxCount = 1 << 24
)

var errNotRESP = errors.New("not RESP")

// sink takes what a reader completes.
type sink interface {
	// bulk: a bulk string at depth 1 (an element of a top-level
	// aggregate) with its index, and its first bytes.
	bulk(index int, data []byte)
	// top: a top-level value ended; typ is its type byte ('+', '*', ...;
	// 'i' for an inline command), first its first bytes for a simple
	// string, error or inline command, or a blob error's.
	top(typ byte, first []byte) error
}

// reader frames one direction's RESP stream from capped samples.
type reader struct {
	line  [maxLine]byte
	nline int
	long  bool // the line went past maxLine

	skip    int    // bulk bytes (CRLF included) still to come
	bulkLen int    // the bulk's length
	kept    []byte // its first bytes
	holed   bool   // bytes of it were hidden: later ones are not its start

	depth   int
	left    [maxDepth]int  // values still to come per open aggregate
	typ     [maxDepth]byte // the aggregates' types
	topTyp  byte
	index   int // the next element's index at depth 1
	inline  bool
	lost    bool
	kept0   [keepBulk]byte
	topLine [keepBulk]byte
	nTop    int
}

// Lose drops the value in progress; the stream waits for Found.
func (r *reader) Lose() {
	*r = reader{lost: true}
}

// Found says the next call starts at a value.
func (r *reader) Found() { r.lost = false }

// feed frames data and then hidden bytes the sample did not show.
func (r *reader) feed(data []byte, hidden int, s sink, inline bool) error {
	if r.lost {
		return nil
	}
	for b := data; len(b) > 0; {
		if r.skip > 0 {
			k := min(r.skip, len(b))
			r.keep(b[:k])
			r.skip -= k
			b = b[k:]
			if r.skip == 0 {
				if err := r.bulkEnd(s); err != nil {
					return err
				}
			}
			continue
		}
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if n := copy(r.line[r.nline:], chunk); n < len(chunk) {
			r.long = true
			r.nline += n
		} else {
			r.nline += n
		}
		if i < 0 {
			break
		}
		b = b[i+1:]
		line := r.line[:r.nline]
		if !r.long && len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		long := r.long
		r.nline, r.long = 0, false
		if err := r.header(line, long, s, inline); err != nil {
			return err
		}
	}
	if hidden <= 0 {
		return nil
	}
	if r.skip > 0 && hidden <= r.skip {
		r.skip -= hidden
		r.holed = true
		if r.skip == 0 {
			return r.bulkEnd(s)
		}
		return nil
	}
	// A top-level line cut short is the value (an error's code shows
	// first); what follows it is hidden.
	var err error
	if r.depth == 0 && r.skip == 0 && r.nline > 1 && bytes.IndexByte([]byte("+-:,#(_"), r.line[0]) >= 0 {
		r.topTyp, r.nTop = r.line[0], copy(r.topLine[:], r.line[1:r.nline])
		err = s.top(r.topTyp, r.topLine[:r.nTop])
	}
	r.Lose()
	return err
}

// keep keeps a bulk's first bytes.
func (r *reader) keep(b []byte) {
	if room := keepBulk - len(r.kept); room > 0 && !r.holed {
		r.kept = append(r.kept, b[:min(room, len(b))]...)
	}
}

func (r *reader) header(line []byte, long bool, s sink, inline bool) error {
	if len(line) == 0 {
		if r.depth == 0 && inline {
			return nil // blank lines between inline commands
		}
		return fmt.Errorf("empty RESP line: %w", errNotRESP)
	}
	typ := line[0]
	if r.depth == 0 {
		r.topTyp, r.index, r.nTop = typ, 0, 0
	}
	switch typ {
	case '+', '-', ':', ',', '#', '(', '_':
		if r.depth == 0 {
			r.nTop = copy(r.topLine[:], line[1:])
		}
		return r.valueEnd(s)
	case '$', '=', '!':
		n, err := count(line, long, maxBulk)
		if err != nil {
			return err
		}
		if n < 0 { // RESP2 null bulk
			return r.valueEnd(s)
		}
		r.bulkLen, r.skip, r.holed = n, n+2, false
		r.kept = r.kept0[:0]
		return nil
	case '*', '%', '~', '>', '|':
		n, err := count(line, long, maxCount)
		if err != nil {
			return err
		}
		if typ == '%' || typ == '|' {
			n *= 2
		}
		if n <= 0 {
			return r.valueEnd(s)
		}
		if r.depth == maxDepth {
			return fmt.Errorf("RESP nested deeper than %d", maxDepth)
		}
		r.left[r.depth], r.typ[r.depth] = n, typ
		r.depth++
		return nil
	}
	if r.depth == 0 && inline && !long {
		// An inline command: a line of words.
		r.topTyp = 'i'
		r.nTop = copy(r.topLine[:], line)
		return r.valueEnd(s)
	}
	return fmt.Errorf("RESP type %q: %w", typ, errNotRESP)
}

// count reads a header's length or count; -1 is null, "?" (streamed) is
// not read.
func count(line []byte, long bool, limit int) (int, error) {
	if long {
		return 0, fmt.Errorf("RESP length line too long: %w", errNotRESP)
	}
	n, err := strconv.Atoi(string(line[1:]))
	if err != nil || n < -1 || n > limit {
		return 0, fmt.Errorf("RESP length %q: %w", line[1:], errNotRESP)
	}
	return n, nil
}

func (r *reader) bulkEnd(s sink) error {
	data := r.kept[:min(len(r.kept), r.bulkLen)]
	if r.depth == 1 {
		s.bulk(r.index, data)
	}
	if r.depth == 0 {
		r.nTop = copy(r.topLine[:], data)
	}
	return r.valueEnd(s)
}

// valueEnd closes the aggregates a value completes, and reports a
// top-level value's end.
func (r *reader) valueEnd(s sink) error {
	for r.depth > 0 {
		if r.depth == 1 {
			r.index++
		}
		r.left[r.depth-1]--
		if r.left[r.depth-1] > 0 {
			return nil
		}
		r.depth--
		if r.typ[r.depth] == '|' {
			// An attribute ends: the value it annotates is still to come,
			// and it is not one of its parent's values.
			if r.depth == 0 {
				return nil
			}
			r.left[r.depth-1]++
		}
	}
	return s.top(r.topTyp, r.topLine[:r.nTop])
}
