package datapath

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/flowlens/flowlens/internal/flow"
)

const (
	dropProgram = "on_kfree_skb"
	// dropReasonSlots mirrors DROP_REASON_SLOTS: the kernel counts reasons
	// at or past the last slot (subsystem reasons, an enum grown past it)
	// in that slot, named "other".
	dropReasonSlots = 256
	dropReasonOther = dropReasonSlots - 1
	ipprotoTCP      = 6
	ipprotoUDP      = 17
)

// kernelDropReasons reads enum skb_drop_reason from the kernel's BTF: the
// names follow the running kernel, whose enum grows with every release.
func kernelDropReasons() (map[uint64]string, error) {
	spec, err := kernelBTF.get()
	if err != nil {
		return nil, fmt.Errorf("kernel BTF: %w", err)
	}
	var e *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &e); err != nil {
		return nil, fmt.Errorf("enum skb_drop_reason: %w", err)
	}
	m := make(map[uint64]string, len(e.Values))
	for _, v := range e.Values {
		m[v.Value] = v.Name
	}
	return m, nil
}

// dropReasonNames names every slot: the enum's names without their
// SKB_DROP_REASON_ prefix, in lower case ("netfilter_drop"); a slot the
// enum does not name (or every slot, without BTF) as "reason_<n>".
func dropReasonNames(enum func() (map[uint64]string, error)) [dropReasonSlots]string {
	var names [dropReasonSlots]string
	m, _ := enum() // without BTF, numbers name the reasons
	for i := range names {
		name, ok := m[uint64(i)]
		if ok {
			name = strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(name, "SKB_DROP_REASON_"), "SKB_"))
		} else {
			name = "reason_" + strconv.Itoa(i)
		}
		names[i] = name
	}
	names[dropReasonOther] = "other"
	return names
}

// DropReasons adds to byReason what the kernel counted by reason since the
// programs were attached: cumulative, every drop, attributed or not.
func (d *Datapath) DropReasons(byReason map[string]uint64) error {
	var perCPU []uint64
	for slot := range uint32(dropReasonSlots) {
		if err := d.maps.DropReasons.Lookup(slot, &perCPU); err != nil {
			return fmt.Errorf("read drop_reasons %d: %w", slot, err)
		}
		var n uint64
		for _, v := range perCPU {
			n += v
		}
		if n != 0 {
			byReason[d.reasons[slot]] += n
		}
	}
	return nil
}

// Drops appends the drops counted since the last call, taking them out of
// the kernel map. A drop counted between the kernel's copy and its deletion
// of an entry is lost from the flows (drop_reasons still has it).
func (d *Datapath) Drops(dst []flow.Drop) ([]flow.Drop, error) {
	if d.dropKeys == nil {
		d.dropKeys = make([]flowlensDropKey, batchSize)
		d.dropVals = make([]uint64, batchSize)
	}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := d.maps.Drops.BatchLookupAndDelete(&cursor, d.dropKeys, d.dropVals, nil)
		for i := range n {
			if drop, ok := d.drop(&d.dropKeys[i], d.dropVals[i]); ok {
				dst = append(dst, drop)
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return dst, nil
		}
		if err != nil {
			return dst, fmt.Errorf("read drops: %w", err)
		}
	}
}

// drop decodes one kernel entry; it rejects what the kernel side never writes.
func (d *Datapath) drop(k *flowlensDropKey, n uint64) (flow.Drop, bool) {
	if f := k.Tuple.Family; (f != afInet && f != afInet6) || int(k.Reason) >= dropReasonSlots {
		return flow.Drop{}, false
	}
	var proto flow.Protocol
	switch k.Tuple.Protocol {
	case ipprotoTCP:
		proto = flow.TCP
	case ipprotoUDP:
		proto = flow.UDP
	default:
		return flow.Drop{}, false
	}
	local, remote := tuple(&k.Tuple)
	return flow.Drop{
		Reason: d.reasons[k.Reason], Count: n, Cookie: k.Cookie, Netns: k.Netns,
		FromPacket: k.FromPacket != 0, Protocol: proto, Local: local, Remote: remote,
	}, true
}
