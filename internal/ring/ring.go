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

// Entry is one record as read: each Read decodes its own, so a reader may
// keep it as long as it likes.
type Entry struct {
	Record flow.Record

	seq uint64
}

// encodedWindow is how many of the newest entries keep their JSON once a
// reader made it: where followers read, so that any number of them encode
// a record once, while the memory encodings take stays bounded: a record's
// JSON is ≈850 bytes against its ≈150 encoded in the ring, so 16,384 kept
// 14 MB, the largest part of the agent's heap after a burst read through
// the API (issue 17's peak RSS). It should exceed the records one write
// brings, or followers encode the head of a batch once each: `up` writes
// at each 100 ms flush, 4,096 a flush is 40,000 records a second. Past it
// nothing is wrong or lost, followers only pay CPU.
const encodedWindow = 4096

// encoded is the JSON line of the entry with sequence number seq.
type encoded struct {
	seq  uint64
	line []byte
}

// JSON is e's record encoded as one JSON line (with its newline). Among the
// newest entries the encoding is made once and shared: callers must not
// modify the bytes. An older entry, read only by a reader far behind or a
// read of everything, is encoded for that read alone.
func (r *Ring) JSON(e *Entry) ([]byte, error) {
	slot := &r.json[e.seq%uint64(len(r.json))]
	if p := slot.Load(); p != nil && p.seq == e.seq {
		return p.line, nil
	}
	b, err := json.Marshal(&e.Record)
	if err != nil {
		return nil, fmt.Errorf("encode flow record: %w", err)
	}
	line := make([]byte, len(b)+1) // exactly sized: it may be kept
	copy(line, b)
	line[len(b)] = '\n'
	// Only an entry among the newest takes the slot; a writer passing
	// meanwhile may have cleared it already: then it is kept until the
	// slot's next entry is written.
	if r.head.Load()-e.seq <= uint64(len(r.json)) {
		slot.Store(&encoded{seq: e.seq, line: line})
	}
	return line, nil
}

// Ring is a bounded buffer of records addressed by a sequence number that
// only grows. The writer never waits for readers; a reader that falls more
// than the capacity behind loses the overwritten records and is told how
// many.
//
//	seq:     oldest                         next
//	          │                               │
//	          ▼                               ▼
//	spans: . [r5][r6][r7][r8][r1][r2][r3][r4] ...   slot = seq % cap
//	          └── cap records, oldest = next-cap (or 0) ──┘
//
// Records are kept encoded (codec.go), one after the other in data, a
// circular byte buffer addressed by an offset that only grows, as the
// sequence numbers do: the garbage collector has no pointer to follow in
// the ring, however many records it holds.
//
// Invariants: 0 <= next-oldest <= cap; the record with sequence s (oldest <=
// s < next) is encoded at spans[s%cap]; the encodings of oldest..next-1 lie
// in [spans[oldest%cap].off, end), which fits in data. Every method reads
// next once, under the one lock, so oldest and next always come from the
// same moment.
type Ring struct {
	mu    sync.Mutex
	spans []span
	data  *mapped // offset o is at data.b[o%len], outside the heap (offheap.go)
	end   uint64  // the offset after the newest encoding
	next  uint64
	wake  chan struct{} // closed and replaced after every write

	// write serialises writers, and owns scratch, where they encode
	// outside mu so that readers wait only for the copy.
	write   sync.Mutex
	scratch []byte
	sizes   []int

	head atomic.Uint64             // next, for JSON's lock-free look
	json []atomic.Pointer[encoded] // seq % len: the newest entries' JSON
}

// span is where one record's encoding lies.
type span struct {
	off uint64
	n   uint32
}

// New returns a ring holding up to capacity records.
func New(capacity int) *Ring {
	capacity = max(capacity, 1)
	return newRing(capacity, min(capacity, encodedWindow))
}

func newRing(capacity, keep int) *Ring {
	r := &Ring{spans: make([]span, capacity), wake: make(chan struct{}),
		json: make([]atomic.Pointer[encoded], keep)}
	r.data = newMapped(r, 4096)
	return r
}

// Write appends records, overwriting the oldest, and wakes followers. The
// records are encoded outside the lock, so readers wait only for the copy.
func (r *Ring) Write(recs []flow.Record) {
	if len(recs) == 0 {
		return
	}
	r.write.Lock()
	defer r.write.Unlock()
	b, sizes := r.scratch[:0], r.sizes[:0]
	for i := range recs {
		n := len(b)
		b = encodeRecord(b, &recs[i])
		sizes = append(sizes, len(b)-n)
	}
	r.scratch, r.sizes = b, sizes

	r.mu.Lock()
	capacity := uint64(len(r.spans))
	for _, n := range sizes {
		s := r.next
		// The oldest record kept once s is written, and where it starts.
		start := r.end
		if oldest := (s + 1) - min(s+1, capacity); oldest < s {
			start = r.spans[oldest%capacity].off
		}
		if need := r.end + uint64(n) - start; need > uint64(len(r.data.b)) {
			r.grow(start, need)
		}
		r.put(r.end, b[:n])
		b = b[n:]
		r.spans[s%capacity] = span{off: r.end, n: uint32(n)}
		r.end += uint64(n)
		// The entry leaving the window drops its JSON.
		r.json[s%uint64(len(r.json))].Store(nil)
		r.next++
	}
	r.head.Store(r.next)
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

// grow makes data hold at least need bytes, keeping [start, end). A
// quarter more than needed, not the next power of two: a full ring of the
// default 65,536 records needs ≈10 MB, which a power of two made 16.
func (r *Ring) grow(start, need uint64) {
	old := r.data.resize(int(need + need/4))
	for off := start; off < r.end; {
		chunk := old[off%uint64(len(old)):]
		chunk = chunk[:min(uint64(len(chunk)), r.end-off)]
		r.put(off, chunk)
		off += uint64(len(chunk))
	}
	unmapBytes(old)
}

// put copies b into data at offset off, wrapping around its end.
func (r *Ring) put(off uint64, b []byte) {
	data := r.data.b
	n := copy(data[off%uint64(len(data)):], b)
	copy(data, b[n:])
}

// get appends to dst the n bytes of data at offset off.
func (r *Ring) get(dst []byte, off uint64, n int) []byte {
	data := r.data.b
	at := off % uint64(len(data))
	first := data[at:min(at+uint64(n), uint64(len(data)))]
	dst = append(dst, first...)
	return append(dst, data[:n-len(first)]...)
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
func (r *Ring) Cap() int { return len(r.spans) }

func (r *Ring) oldest() uint64 {
	if r.next < uint64(len(r.spans)) {
		return 0
	}
	return r.next - uint64(len(r.spans))
}

// Read appends to dst up to limit entries with sequence numbers from `from`
// on, oldest first. Records from `from` on that were overwritten before this
// read are lost to the reader: Read says how many, and the entries it
// returns start at from+lost. A reader continues at from+lost+len(out).
// The encodings are copied under the lock and decoded after it.
func (r *Ring) Read(from uint64, limit int, dst []*Entry) (out []*Entry, lost uint64) {
	var raw []byte
	var sizes []uint32
	r.mu.Lock()
	if o := r.oldest(); from < o {
		lost, from = o-from, o
	}
	first := from
	for ; from < r.next && limit > 0; from, limit = from+1, limit-1 {
		sp := r.spans[from%uint64(len(r.spans))]
		raw = r.get(raw, sp.off, int(sp.n))
		sizes = append(sizes, sp.n)
	}
	r.mu.Unlock()
	entries := make([]Entry, len(sizes))
	for i, n := range sizes {
		e := &entries[i]
		e.seq = first + uint64(i)
		if err := decodeRecord(raw[:n], &e.Record); err != nil {
			// The ring decodes only what it encoded: this is a bug in codec.go.
			panic(fmt.Sprintf("ring entry %d: %v", e.seq, err))
		}
		raw = raw[n:]
		dst = append(dst, e)
	}
	return dst, lost
}

// Wait returns a channel closed at the next write.
func (r *Ring) Wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wake
}
