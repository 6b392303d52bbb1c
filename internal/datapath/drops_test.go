package datapath

import (
	"testing"
	"unsafe"

	"github.com/flowlens/flowlens/internal/flow"
)

func TestDropReasonNamesFromTheKernelEnum(t *testing.T) {
	enum := func() (map[uint64]string, error) {
		return map[uint64]string{0: "SKB_NOT_DROPPED_YET", 3: "SKB_DROP_REASON_NO_SOCKET", 12: "SKB_DROP_REASON_NETFILTER_DROP",
			300: "SKB_DROP_REASON_BEYOND_THE_SLOTS"}, nil
	}
	names := dropReasonNames(enum)
	for slot, want := range map[int]string{0: "not_dropped_yet", 3: "no_socket", 12: "netfilter_drop", 13: "reason_13", dropReasonOther: "other"} {
		if names[slot] != want {
			t.Errorf("slot %d named %q, want %q", slot, names[slot], want)
		}
	}
}

// The names come from this kernel's BTF where it has one.
func TestDropReasonNamesOfThisKernel(t *testing.T) {
	if _, err := kernelDropReasons(); err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	names := dropReasonNames(kernelDropReasons)
	if names[3] != "no_socket" || names[12] != "netfilter_drop" {
		t.Errorf("slots 3 and 12 named %q and %q, want no_socket and netfilter_drop", names[3], names[12])
	}
}

func TestDropDecodeRejectsWhatTheKernelNeverWrites(t *testing.T) {
	d := Datapath{reasons: dropReasonNames(func() (map[uint64]string, error) { return nil, nil })}
	k := flowlensDropKey{Cookie: 9, Netns: 4026531840, Reason: 12, FromPacket: 1}
	k.Tuple.Family, k.Tuple.Protocol = afInet, ipprotoTCP
	k.Tuple.LocalPort, k.Tuple.RemotePort = 40000, 80
	copy(k.Tuple.LocalAddr[:], []byte{10, 0, 0, 2})
	copy(k.Tuple.RemoteAddr[:], []byte{10, 0, 0, 1})
	got, ok := d.drop(&k, 20)
	want := flow.Drop{Reason: "reason_12", Count: 20, Cookie: 9, Netns: 4026531840, FromPacket: true, Protocol: flow.TCP}
	if !ok || got.Local.String() != "10.0.0.2:40000" || got.Remote.String() != "10.0.0.1:80" {
		t.Fatalf("decoded %+v %v", got, ok)
	}
	got.Local, got.Remote = want.Local, want.Remote
	if got != want {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
	for name, bad := range map[string]func(k *flowlensDropKey){
		"family":   func(k *flowlensDropKey) { k.Tuple.Family = 1 },
		"protocol": func(k *flowlensDropKey) { k.Tuple.Protocol = 1 },
		"reason":   func(k *flowlensDropKey) { k.Reason = dropReasonSlots },
	} {
		b := k
		bad(&b)
		if _, ok := d.drop(&b, 1); ok {
			t.Errorf("%s: accepted %+v", name, b)
		}
	}
}

func listenerRecord(family uint16, port uint16, queue, max, drops uint32) []byte {
	st := flowlensListenerStat{Queue: queue, QueueMax: max, Drops: drops}
	st.Key.Family, st.Key.Port, st.Key.Netns = family, port, 4026532177
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&st)), unsafe.Sizeof(st))...)
}

func TestDecodeListeners(t *testing.T) {
	raw := append(listenerRecord(afInet, 8093, 5, 4, 135), listenerRecord(afInet6, 443, 0, 4096, 0)...)
	got, err := decodeListeners(raw, nil)
	want := []flow.Listener{
		{Netns: 4026532177, Port: 8093, Queue: 5, QueueMax: 4, Drops: 135},
		{Netns: 4026532177, Port: 443, IPv6: true, QueueMax: 4096},
	}
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, want)
	}
	if got, err := decodeListeners(raw[:len(raw)-1], nil); err == nil || len(got) != 1 {
		t.Errorf("a partial record: %+v, %v; want the whole one and an error", got, err)
	}
	if _, err := decodeListeners(listenerRecord(1, 80, 0, 0, 0), nil); err == nil {
		t.Error("a record of family 1 was accepted")
	}
}

// FuzzDecodeListeners: any bytes from the iterator decode without a panic,
// into no more records than whole ones, each of a family the kernel writes.
func FuzzDecodeListeners(f *testing.F) {
	f.Add(listenerRecord(afInet, 8093, 5, 4, 135))
	f.Add(append(listenerRecord(afInet6, 1, 2, 3, 4), 0, 1))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := decodeListeners(raw, nil)
		size := int(unsafe.Sizeof(flowlensListenerStat{}))
		if len(got) > len(raw)/size {
			t.Fatalf("%d records from %d bytes", len(got), len(raw))
		}
		if err == nil && len(raw)%size != 0 {
			t.Fatalf("%d bytes, not whole records, accepted", len(raw))
		}
	})
}

// FuzzDecodeDrop: any key the map could hold decodes without a panic, and
// what is accepted names a reason, TCP or UDP, and two addresses.
func FuzzDecodeDrop(f *testing.F) {
	var k flowlensDropKey
	k.Tuple.Family, k.Tuple.Protocol, k.Reason = afInet, ipprotoTCP, 12
	f.Add(append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&k)), unsafe.Sizeof(k))...), uint64(3))
	f.Fuzz(func(t *testing.T, raw []byte, n uint64) {
		var k flowlensDropKey
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&k)), unsafe.Sizeof(k)), raw)
		d := Datapath{reasons: dropReasonNames(kernelDropReasons)}
		got, ok := d.drop(&k, n)
		if !ok {
			return
		}
		if got.Reason == "" || (got.Protocol != flow.TCP && got.Protocol != flow.UDP) || got.Count != n {
			t.Fatalf("accepted %+v from %+v", got, k)
		}
		if !got.Local.Addr().IsValid() || !got.Remote.Addr().IsValid() {
			t.Fatalf("invalid addresses %s %s", got.Local, got.Remote)
		}
	})
}
