package datapath

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// ringReader consumes a BPF ring buffer map without waiting: the agent
// waits for the kernel's wakeups in Go's poller (waitReadable), so a read
// only compares two positions, with no system call when the ring is empty.
//
// It maps the ring's data once. The kernel offers its data pages twice in
// a row, so that a record running past the end reads on contiguously, and
// cilium/ebpf's reader maps both copies: every page of the ring is then
// resident twice in the agent's RSS (12 MiB for the 4 MiB L7 ring and the
// 2 MiB end-event ring; issue 17). A record that wraps is copied in two
// parts instead, as every record is copied out anyway.
type ringReader struct {
	mu     sync.Mutex // Close unmaps what a read reads
	cons   []byte     // the consumer page: its position, written here
	prod   []byte     // the producer page, then the data pages, once
	data   []byte
	rec    []byte // the record read last, copied out of the ring
	closed bool
}

const (
	ringBusyBit    = 1 << 31 // the record is reserved, not yet committed
	ringDiscardBit = 1 << 30 // the record was discarded: skipped
	ringHeaderSize = 8       // length (with the bits above) and page offset
)

func newRingReader(m *ebpf.Map) (*ringReader, error) {
	page := os.Getpagesize()
	size := int(m.MaxEntries())
	cons, err := unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map the consumer page: %w", err)
	}
	prod, err := unix.Mmap(m.FD(), int64(page), page+size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		_ = unix.Munmap(cons)
		return nil, fmt.Errorf("map the data pages: %w", err)
	}
	return &ringReader{cons: cons, prod: prod, data: prod[page:]}, nil
}

func (r *ringReader) consPos() *uint64 { return (*uint64)(unsafe.Pointer(&r.cons[0])) }
func (r *ringReader) prodPos() *uint64 { return (*uint64)(unsafe.Pointer(&r.prod[0])) }

// next returns the next committed record, valid until the next call, or
// nil when there is none yet (empty, or the oldest still being written).
func (r *ringReader) next() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ringbuf.ErrClosed
	}
	for {
		cons := atomic.LoadUint64(r.consPos())
		prod := atomic.LoadUint64(r.prodPos())
		if cons == prod {
			return nil, nil
		}
		off := cons & uint64(len(r.data)-1)
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[off])))
		rec, ok := ringRecord(hdr, cons, prod, len(r.data))
		if !ok {
			return nil, fmt.Errorf("ring record at %d of %d bytes does not fit the %d written", cons, hdr&^(ringBusyBit|ringDiscardBit), prod-cons)
		}
		if rec.busy {
			return nil, nil
		}
		if !rec.discarded {
			r.rec = copyWrapped(r.rec[:0], r.data, rec.start, rec.n)
		}
		// Released only once copied: until then the kernel does not write
		// over it.
		atomic.StoreUint64(r.consPos(), cons+rec.total)
		if !rec.discarded {
			return r.rec, nil
		}
	}
}

// available reports the bytes written and not yet read.
func (r *ringReader) available() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0
	}
	return int(atomic.LoadUint64(r.prodPos()) - atomic.LoadUint64(r.consPos()))
}

func (r *ringReader) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	err1, err2 := unix.Munmap(r.prod), unix.Munmap(r.cons)
	if err1 != nil {
		return fmt.Errorf("unmap the ring: %w", err1)
	}
	if err2 != nil {
		return fmt.Errorf("unmap the ring: %w", err2)
	}
	return nil
}

// ringRec is where a record lies in the data pages, by its header.
type ringRec struct {
	start, n  uint64 // its bytes: start (masked), length
	total     uint64 // what the consumer position moves by
	busy      bool
	discarded bool
}

// ringRecord reads the header hdr of the record at consumer position cons:
// false when it claims more than the producer has written (a busy record's
// length is already its own).
func ringRecord(hdr uint32, cons, prod uint64, size int) (ringRec, bool) {
	n := uint64(hdr &^ (ringBusyBit | ringDiscardBit))
	rec := ringRec{
		start:     (cons + ringHeaderSize) & uint64(size-1),
		n:         n,
		total:     (n + ringHeaderSize + 7) &^ 7,
		busy:      hdr&ringBusyBit != 0,
		discarded: hdr&ringDiscardBit != 0,
	}
	return rec, rec.total <= prod-cons && n <= uint64(size)
}

// copyWrapped appends n bytes of the ring data from start to dst,
// continuing at the ring's beginning past its end.
func copyWrapped(dst, data []byte, start, n uint64) []byte {
	end := min(start+n, uint64(len(data)))
	dst = append(dst, data[start:end]...)
	return append(dst, data[:n-(end-start)]...)
}
