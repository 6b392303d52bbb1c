package datapath

import (
	"fmt"
	"io"
	"unsafe"

	"github.com/cilium/ebpf/link"

	"github.com/flowlens/flowlens/internal/flow"
)

// touched reads only the TCP sockets whose state changed since the last
// read: the kernel side marks each into one of two sets, by the parity of
// touch_gen (bpf/flowlens.bpf.c: touch); read_touched writes the marked
// sockets of the generation before, whose keys are then deleted.
type touched struct {
	iters [2]*link.Iter // by set: touched0, touched1
	gen   uint32        // touch_gen as last written
	buf   []byte
	keys  []uint64 // of the set being read
}

// touchedRecords is how many socket records one read of the iterator takes.
const touchedRecords = 512

// openTouched attaches the touched-set iterators; where the kernel lacks
// map element iterators it leaves d.touched nil, and the agent reads the
// whole map every interval.
func (d *Datapath) openTouched() error {
	p := d.coll.Programs["read_touched"]
	if p == nil {
		return nil
	}
	t := &touched{gen: 1}
	for i, it := range []link.IterOptions{{Program: p, Map: d.maps.Touched0}, {Program: p, Map: d.maps.Touched1}} {
		l, err := link.AttachIter(it)
		if err != nil {
			t.close()
			return fmt.Errorf("attach touched set iterator %d: %w", i, err)
		}
		t.iters[i] = l
	}
	d.touched = t
	return nil
}

func (t *touched) close() {
	for _, l := range t.iters {
		if l != nil {
			_ = l.Close()
		}
	}
}

// CanReadTouched reports whether TouchedTCP works on this kernel.
func (d *Datapath) CanReadTouched() bool { return d.touched != nil }

// TouchedTCP appends to dst the TCP sockets whose state changed since the
// last call (once each, whatever changed how often), and starts the next
// generation. A socket that changed and has left the map since is not
// there: its end event is. Without CanReadTouched it returns dst unchanged.
func (d *Datapath) TouchedTCP(dst []flow.TCPSocket) ([]flow.TCPSocket, error) {
	t := d.touched
	if t == nil {
		return dst, nil
	}
	old := t.gen
	// 0 marks an entry never touched; 2 after the wrap keeps the parity
	// alternating.
	next := old + 1
	if next == 0 {
		next = 2
	}
	if err := d.vars.TouchGen.Set(next); err != nil {
		return dst, fmt.Errorf("write touch_gen: %w", err)
	}
	t.gen = next
	d.waitPrograms()
	r, err := t.iters[old&1].Open()
	if err != nil {
		return dst, fmt.Errorf("open touched set iterator: %w", err)
	}
	defer r.Close()
	t.keys = t.keys[:0]
	dst, err = d.decodeTouched(r, dst)
	if err != nil {
		return dst, err
	}
	set := d.maps.Touched0
	if old&1 == 1 {
		set = d.maps.Touched1
	}
	if len(t.keys) > 0 {
		if _, err := set.BatchDelete(t.keys, nil); err != nil {
			return dst, fmt.Errorf("empty touched set: %w", err)
		}
	}
	return dst, nil
}

// touchedRecord is what read_touched writes per marked socket: its key,
// then its state, zeroed (no address family) if it left tcp_socks.
type touchedRecord struct {
	key   uint64
	state flowlensTcpState
}

// decodeTouched decodes the iterator's records as they come, keeping every
// key for the set to be emptied.
func (d *Datapath) decodeTouched(r io.Reader, dst []flow.TCPSocket) ([]flow.TCPSocket, error) {
	t := d.touched
	if t.buf == nil {
		t.buf = make([]byte, touchedRecords*int(unsafe.Sizeof(touchedRecord{})))
	}
	err := readRecords(r, t.buf, "touched socket records", func(rec *touchedRecord) error {
		t.keys = append(t.keys, rec.key)
		if rec.state.Tuple.Family == 0 {
			return nil // gone since it was marked
		}
		if err := checkState(&rec.state); err != nil {
			return fmt.Errorf("touched socket record: %w", err)
		}
		dst = append(dst, d.tcpSocket(&rec.state))
		return nil
	})
	return dst, err
}
