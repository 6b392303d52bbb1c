package datapath

import (
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

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
	// noBarrier is set once the kernel refused the wait for running
	// programs (membarrier with nohz_full): reads go on without it.
	noBarrier bool
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
	t.waitPrograms(d)
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

// waitPrograms waits until every program that may have read the old
// touch_gen has returned, so that the set the reader empties gets no mark
// after the read: a socket marked there and changed again would otherwise
// look marked, be in no set, and wait for its end (or a whole-map read) to
// be reported. Programs run under RCU, and MEMBARRIER_CMD_GLOBAL waits for
// an RCU grace period (synchronize_rcu); it costs wall time, not CPU.
func (t *touched) waitPrograms(d *Datapath) {
	if t.noBarrier {
		return
	}
	const membarrierCmdGlobal = 1
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
		t.noBarrier = true
		d.log.Warn("cannot wait for running eBPF programs (membarrier): a socket changed while the agent reads may be reported only at its next change, its end or the next whole-map read",
			"err", errno)
	}
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
	var rec touchedRecord
	size := int(unsafe.Sizeof(rec))
	if t.buf == nil {
		t.buf = make([]byte, touchedRecords*size)
	}
	buf, have := t.buf, 0
	for {
		n, err := r.Read(buf[have:])
		have += n
		whole := have - have%size
		for off := 0; off < whole; off += size {
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&rec)), size), buf[off:off+size])
			t.keys = append(t.keys, rec.key)
			if rec.state.Tuple.Family == 0 {
				continue // gone since it was marked
			}
			if cerr := checkState(&rec.state); cerr != nil {
				return dst, fmt.Errorf("touched socket record: %w", cerr)
			}
			dst = append(dst, d.tcpSocket(&rec.state))
		}
		have = copy(buf, buf[whole:have])
		switch {
		case errors.Is(err, io.EOF):
			if have != 0 {
				return dst, fmt.Errorf("touched socket records: %d trailing bytes", have)
			}
			return dst, nil
		case err != nil:
			return dst, fmt.Errorf("read touched set iterator: %w", err)
		}
	}
}
