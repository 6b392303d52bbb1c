// Package ring keeps the most recent flow records in a fixed-size buffer that
// many readers can page through and follow without blocking the writer.
package ring

import (
	"sync"

	"github.com/flowlens/flowlens/internal/flow"
)

// Ring is a bounded buffer of records addressed by a sequence number that
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
// s < next) is buf[s%cap].
type Ring struct {
	mu   sync.Mutex
	buf  []flow.Record
	next uint64
	wake chan struct{} // closed and replaced after every write
}

// New returns a ring holding up to capacity records.
func New(capacity int) *Ring {
	return &Ring{buf: make([]flow.Record, max(capacity, 1)), wake: make(chan struct{})}
}

// Write appends records, overwriting the oldest, and wakes followers.
func (r *Ring) Write(recs []flow.Record) {
	if len(recs) == 0 {
		return
	}
	r.mu.Lock()
	for i := range recs {
		r.buf[r.next%uint64(len(r.buf))] = recs[i]
		r.next++
	}
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

// Next is the sequence number the next record written will get.
func (r *Ring) Next() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

// Len is how many records the ring holds now.
func (r *Ring) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int(r.next - r.oldest())
}

// Cap is the ring's capacity.
func (r *Ring) Cap() int { return len(r.buf) }

func (r *Ring) oldest() uint64 {
	if r.next < uint64(len(r.buf)) {
		return 0
	}
	return r.next - uint64(len(r.buf))
}

// ReadFrom appends to dst up to limit records with sequence >= from and
// returns the sequence to read from next and how many records were lost
// because the reader was too far behind.
func (r *Ring) ReadFrom(from uint64, limit int, dst []flow.Record) (out []flow.Record, next, lost uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := r.oldest(); from < o {
		lost, from = o-from, o
	}
	for ; from < r.next && limit > 0; from, limit = from+1, limit-1 {
		dst = append(dst, r.buf[from%uint64(len(r.buf))])
	}
	return dst, from, lost
}

// Wait returns a channel closed at the next write.
func (r *Ring) Wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wake
}
