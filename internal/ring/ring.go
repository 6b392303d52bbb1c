// Package ring keeps the most recent flow records in a fixed-size buffer that
// many readers can page through and follow without blocking the writer.
package ring

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/flowlens/flowlens/internal/flow"
)

// Entry is one record as written. Entries are immutable once written, so
// readers share them without copying.
type Entry struct {
	Record flow.Record

	seq  uint64
	json atomic.Pointer[[]byte] // encoding plus '\n', kept while among the newest
}

// encodedWindow is how many of the newest entries keep their JSON once a
// reader made it: where followers read, so that any number of them encode
// a record once, while the memory encodings take stays bounded (a record's
// JSON is larger than the record). It must exceed the records one write
// brings, or followers would encode the head of each batch again.
const encodedWindow = 16384

// JSON is e's record encoded as one JSON line (with its newline). Among the
// newest entries the encoding is made once and shared: callers must not
// modify the bytes. An older entry, read only by a reader far behind or a
// read of everything, is encoded for that read alone.
func (r *Ring) JSON(e *Entry) ([]byte, error) {
	if p := e.json.Load(); p != nil {
		return *p, nil
	}
	b, err := json.Marshal(&e.Record)
	if err != nil {
		return nil, fmt.Errorf("encode flow record: %w", err)
	}
	line := make([]byte, len(b)+1) // exactly sized: it may be kept
	copy(line, b)
	line[len(b)] = '\n'
	// A writer passing meanwhile may have released it already: then it is
	// kept until overwritten, which the bound tolerates.
	if r.head.Load()-e.seq <= r.keep {
		e.json.Store(&line)
	}
	return line, nil
}

// Ring is a bounded buffer of entries addressed by a sequence number that
// only grows. The writer never waits for readers; a reader that falls more
// than the capacity behind loses the overwritten records and is told how
// many.
//
//	seq:     oldest                         next
//	          │                               │
//	          ▼                               ▼
//	buf: ... [r5][r6][r7][r8][r1][r2][r3][r4] ...   slot = seq % cap
//	          └── cap records, oldest = next-cap (or 0) ──┘
//
// Invariants: 0 <= next-oldest <= cap; the record with sequence s (oldest <=
// s < next) is buf[s%cap]. Every method reads next once, under the one lock,
// so oldest and next always come from the same moment.
type Ring struct {
	mu   sync.Mutex
	buf  []*Entry
	next uint64
	wake chan struct{} // closed and replaced after every write

	head atomic.Uint64 // next, for JSON's lock-free look
	keep uint64        // the newest entries that keep their JSON
}

// New returns a ring holding up to capacity records.
func New(capacity int) *Ring {
	capacity = max(capacity, 1)
	return &Ring{buf: make([]*Entry, capacity), wake: make(chan struct{}), keep: uint64(min(capacity, encodedWindow))}
}

// Write appends records, overwriting the oldest, and wakes followers. The
// entries are built outside the lock, so readers wait only for the pointer
// stores.
func (r *Ring) Write(recs []flow.Record) {
	if len(recs) == 0 {
		return
	}
	entries := make([]Entry, len(recs))
	for i := range recs {
		entries[i].Record = recs[i]
	}
	r.mu.Lock()
	for i := range entries {
		// The entry leaving the window drops its encoding.
		if r.next >= r.keep {
			if old := r.buf[(r.next-r.keep)%uint64(len(r.buf))]; old != nil {
				old.json.Store(nil)
			}
		}
		entries[i].seq = r.next
		r.buf[r.next%uint64(len(r.buf))] = &entries[i]
		r.next++
	}
	r.head.Store(r.next)
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

// Bounds is the range of sequence numbers the ring holds now: [oldest, next).
func (r *Ring) Bounds() (oldest, next uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.oldest(), r.next
}

// Next is the sequence number the next record written will get.
func (r *Ring) Next() uint64 {
	_, next := r.Bounds()
	return next
}

// Len is how many records the ring holds now.
func (r *Ring) Len() int {
	oldest, next := r.Bounds()
	return int(next - oldest)
}

// Cap is the ring's capacity.
func (r *Ring) Cap() int { return len(r.buf) }

func (r *Ring) oldest() uint64 {
	if r.next < uint64(len(r.buf)) {
		return 0
	}
	return r.next - uint64(len(r.buf))
}

// Read appends to dst up to limit entries with sequence numbers from `from`
// on, oldest first. Records from `from` on that were overwritten before this
// read are lost to the reader: Read says how many, and the entries it
// returns start at from+lost. A reader continues at from+lost+len(out).
func (r *Ring) Read(from uint64, limit int, dst []*Entry) (out []*Entry, lost uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := r.oldest(); from < o {
		lost, from = o-from, o
	}
	for ; from < r.next && limit > 0; from, limit = from+1, limit-1 {
		dst = append(dst, r.buf[from%uint64(len(r.buf))])
	}
	return dst, lost
}

// Wait returns a channel closed at the next write.
func (r *Ring) Wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wake
}
