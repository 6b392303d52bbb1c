package datapath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cilium/ebpf/ringbuf"
)

// fakeRing lays records out as the kernel's ring buffer does, in memory of
// the test's own, for a ringReader over it.
type fakeRing struct {
	r    *ringReader
	prod uint64
}

func newFakeRing(size int) *fakeRing {
	const page = 4096
	prod := make([]byte, page+size)
	return &fakeRing{r: &ringReader{cons: make([]byte, page), prod: prod, data: prod[page:]}}
}

// put writes a record of payload at the producer position, its header
// with the given bits, and moves the producer past it.
func (f *fakeRing) put(payload []byte, bits uint32) {
	size := uint64(len(f.r.data))
	off := f.prod & (size - 1)
	binary.LittleEndian.PutUint32(f.r.data[off:], uint32(len(payload))|bits)
	for i, b := range payload {
		f.r.data[(off+ringHeaderSize+uint64(i))&(size-1)] = b
	}
	f.prod += (uint64(len(payload)) + ringHeaderSize + 7) &^ 7
	binary.LittleEndian.PutUint64(f.r.prod, f.prod)
}

func (f *fakeRing) commit(at uint64) {
	off := at & uint64(len(f.r.data)-1)
	h := binary.LittleEndian.Uint32(f.r.data[off:])
	binary.LittleEndian.PutUint32(f.r.data[off:], h&^ringBusyBit)
}

// Records come out whole and in order, across the ring's end too; a
// discarded one is skipped; a reserved one not yet committed holds back
// the rest until it is.
func TestRingReaderRecords(t *testing.T) {
	f := newFakeRing(64)
	want := func(exp []byte) {
		t.Helper()
		got, err := f.r.next()
		if err != nil || !bytes.Equal(got, exp) {
			t.Fatalf("next = %q, %v; want %q", got, err, exp)
		}
	}
	f.put([]byte("first record"), 0)      // 8 + 12 → 24 bytes
	f.put([]byte("gone"), ringDiscardBit) // 16
	f.put([]byte("second"), 0)            // 16: up to 56
	want([]byte("first record"))
	want([]byte("second"))
	want(nil)
	if n := f.r.available(); n != 0 {
		t.Fatalf("available = %d after reading all, want 0", n)
	}

	// A header in the ring's last 8 bytes: the payload starts at its
	// beginning.
	busyAt := f.prod
	f.put([]byte("wraps around the end"), ringBusyBit) // at 56, 32 bytes
	f.put([]byte("after"), 0)                          // 16 bytes
	want(nil)                                          // the busy one holds the committed one behind it
	if n := f.r.available(); n != 32+16 {
		t.Fatalf("available = %d, want 48", n)
	}
	f.commit(busyAt)
	want([]byte("wraps around the end"))
	want([]byte("after"))
	// Payloads of every length, from every offset: some run past the end.
	for i := range 40 {
		p := bytes.Repeat([]byte{byte(i)}, 1+i%30)
		f.put(p, 0)
		want(p)
	}
	want(nil)
}

// A header that claims more than was written is an error, not a read past
// the producer; a closed reader says so.
func TestRingReaderBadHeaderAndClose(t *testing.T) {
	f := newFakeRing(64)
	f.put([]byte("ok"), 0)
	binary.LittleEndian.PutUint32(f.r.data, 40) // 48 bytes claimed, 16 written
	if got, err := f.r.next(); err == nil {
		t.Fatalf("next = %q, nil; want an error", got)
	}
	f.r.closed = true
	if _, err := f.r.next(); !errors.Is(err, ringbuf.ErrClosed) {
		t.Fatalf("next after close: %v, want ringbuf.ErrClosed", err)
	}
}
