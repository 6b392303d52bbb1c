package datapath

import (
	"errors"
	"fmt"
	"io"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/internal/flow"
)

// udpReader reads the UDP conversations that changed since its last read,
// and those gone idle, through read_udp: a resolver that opens a socket
// per query leaves two conversations per query in udp_flows for the idle
// time, and a read of the whole map copied and converted each of them at
// every interval until its release.
type udpReader struct {
	iter  *link.Iter
	since uint64 // CLOCK_MONOTONIC start of the last read; 0: none yet
	buf   []byte
}

// udpRecord is what read_udp writes per conversation.
type udpRecord struct {
	key   flowlensUdpKey
	stats flowlensUdpStats
}

// udpRecords is how many conversation records one read of the iterator takes.
const udpRecords = 256

// openUDPReader attaches read_udp to udp_flows; where the kernel lacks map
// element iterators it leaves d.udp nil, and ChangedUDP reads the whole map.
func (d *Datapath) openUDPReader() error {
	p := d.coll.Programs["read_udp"]
	if p == nil {
		return nil
	}
	l, err := link.AttachIter(link.IterOptions{Program: p, Map: d.maps.UdpFlows})
	if err != nil {
		return fmt.Errorf("attach UDP conversation iterator: %w", err)
	}
	d.udp = &udpReader{iter: l}
	return nil
}

// ChangedUDP appends to dst the UDP conversations counted since the last
// call and those silent for idle or longer, which the caller releases
// (DeleteUDP takes indexes into the slice it returned). The others have not
// changed since a call returned them. The first call, and every call where
// the kernel lacks map element iterators, appends them all. UDPEntries
// then tells how many there are.
func (d *Datapath) ChangedUDP(dst []flow.UDPConversation, idle time.Duration) ([]flow.UDPConversation, error) {
	if len(dst) != 0 {
		return dst, errors.New("ChangedUDP needs an empty dst to index deletions")
	}
	d.udpLoaded = d.udpLoaded[:0]
	d.udpRead = d.udpRead[:0]
	if d.udp == nil {
		return d.allUDP(dst)
	}
	return d.udp.read(d, dst, uint64(idle))
}

// UDPEntries is how many conversations udp_flows held at the last
// ChangedUDP.
func (d *Datapath) UDPEntries() int { return d.udpEntries }

// read runs read_udp over the window from the last read's start: every
// program that counted into a conversation before this read's start has
// returned once waitPrograms does, so what it wrote is either seen by
// this read or was seen by the one before.
func (u *udpReader) read(d *Datapath, dst []flow.UDPConversation, idle uint64) ([]flow.UDPConversation, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return dst, fmt.Errorf("read the clock: %w", err)
	}
	start := uint64(ts.Nano())
	d.waitPrograms()
	idleBefore := uint64(0)
	if start > idle {
		idleBefore = start - idle
	}
	if err := errors.Join(d.vars.UdpReadSince.Set(u.since), d.vars.UdpIdleBefore.Set(idleBefore),
		d.vars.UdpWalked.Set(uint64(0))); err != nil {
		return dst, fmt.Errorf("write read_udp's window: %w", err)
	}
	r, err := u.iter.Open()
	if err != nil {
		return dst, fmt.Errorf("open UDP conversation iterator: %w", err)
	}
	defer r.Close()
	if dst, err = d.decodeUDP(r, dst); err != nil {
		return dst, err
	}
	var walked uint64
	if err := d.vars.UdpWalked.Get(&walked); err != nil {
		return dst, fmt.Errorf("read udp_walked: %w", err)
	}
	d.udpEntries = int(walked)
	// Only a read that went through moves the window: a failed one's
	// conversations are read again.
	u.since = start
	return dst, nil
}

// decodeUDP decodes read_udp's records as they come.
func (d *Datapath) decodeUDP(r io.Reader, dst []flow.UDPConversation) ([]flow.UDPConversation, error) {
	u := d.udp
	if u.buf == nil {
		u.buf = make([]byte, udpRecords*int(unsafe.Sizeof(udpRecord{})))
	}
	err := readRecords(r, u.buf, "UDP conversation records", func(rec *udpRecord) error {
		dst = d.loadedUDP(dst, &rec.key, &rec.stats)
		return nil
	})
	return dst, err
}

// loadedUDP appends a conversation read from the kernel, remembering its
// key and counts for DeleteUDP.
func (d *Datapath) loadedUDP(dst []flow.UDPConversation, k *flowlensUdpKey, v *flowlensUdpStats) []flow.UDPConversation {
	d.udpLoaded = append(d.udpLoaded, *k)
	d.udpRead = append(d.udpRead, *v)
	return append(dst, d.conversation(k, v))
}

// EndedUDP appends to dst the conversations that ended with their socket
// since the last call, each with its final counts, and takes them off
// their cgroups' counts. The kernel side has moved them out of udp_flows:
// ChangedUDP returns them no more.
func (d *Datapath) EndedUDP(dst []flow.UDPConversation) ([]flow.UDPConversation, error) {
	if d.udpKeys == nil {
		d.udpKeys = make([]flowlensUdpKey, batchSize)
		d.udpVals = make([]flowlensUdpStats, batchSize)
	}
	freed := map[uint64]uint32{}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := d.maps.UdpEnded.BatchLookupAndDelete(&cursor, d.udpKeys, d.udpVals, nil)
		for i := range n {
			v := &d.udpVals[i]
			dst = append(dst, d.conversation(&d.udpKeys[i], v))
			if v.Cgroup != 0 {
				freed[v.Cgroup]++
			}
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
		case errors.Is(err, ebpf.ErrNotSupported):
			// Before Linux 5.6, which has no udp_release either:
			// nothing ends there.
		case err != nil:
			return dst, fmt.Errorf("take udp_ended: %w", err)
		default:
			continue
		}
		break
	}
	if d.udpShare == 0 || len(freed) == 0 {
		return dst, nil
	}
	return dst, d.uncharge(freed)
}
