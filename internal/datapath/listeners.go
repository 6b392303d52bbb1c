package datapath

import (
	"fmt"
	"io"
	"unsafe"

	"github.com/cilium/ebpf/link"

	"github.com/flowlens/flowlens/internal/flow"
)

// Listeners appends each listener's accept queue and drops, read now by
// the read_listeners iterator; nothing where the kernel lacks it.
//
// The iterator is bound to the map for each read and let go after: like
// WalkTCP's, it holds no link between runs. Binding costs one syscall.
func (d *Datapath) Listeners(dst []flow.Listener) ([]flow.Listener, error) {
	if d.readListeners == nil {
		return dst, nil
	}
	it, err := link.AttachIter(link.IterOptions{Program: d.readListeners, Map: d.maps.Listeners})
	if err != nil {
		return dst, fmt.Errorf("attach listeners iterator: %w", err)
	}
	defer it.Close()
	r, err := it.Open()
	if err != nil {
		return dst, fmt.Errorf("open listeners iterator: %w", err)
	}
	defer r.Close()
	raw, err := io.ReadAll(r)
	if err != nil {
		return dst, fmt.Errorf("read listeners iterator: %w", err)
	}
	return decodeListeners(raw, dst)
}

// decodeListeners decodes the iterator's fixed-size records. A trailing
// partial record, or a family the kernel side never writes, is an error;
// what was whole before it is kept.
func decodeListeners(raw []byte, dst []flow.Listener) ([]flow.Listener, error) {
	var st flowlensListenerStat
	size := int(unsafe.Sizeof(st))
	for len(raw) >= size {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&st)), size), raw[:size])
		raw = raw[size:]
		if f := st.Key.Family; f != afInet && f != afInet6 {
			return dst, fmt.Errorf("listener record: address family %d", f)
		}
		dst = append(dst, flow.Listener{
			Netns: st.Key.Netns, Port: st.Key.Port, IPv6: st.Key.Family == afInet6,
			Queue: st.Queue, QueueMax: st.QueueMax, Drops: st.Drops,
		})
	}
	if len(raw) != 0 {
		return dst, fmt.Errorf("listener records: %d bytes left over, records are %d", len(raw), size)
	}
	return dst, nil
}
