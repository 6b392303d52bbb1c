package datapath

import (
	"net/netip"
	"testing"
	"unsafe"

	"github.com/flowlens/flowlens/internal/flow"
)

// rawEnd returns a ring buffer record as the kernel writes it: the close of
// an established client socket that moved a little data.
func rawEnd(v6 bool, comm string) []byte {
	var ev flowlensConnEvent
	s := &ev.State
	if v6 {
		s.Tuple.Family = afInet6
		l, r := netip.MustParseAddr("fd00:250::2").As16(), netip.MustParseAddr("fd00:250::1").As16()
		s.Tuple.LocalAddr, s.Tuple.RemoteAddr = l, r
	} else {
		s.Tuple.Family = afInet
		copy(s.Tuple.LocalAddr[:], []byte{10, 250, 0, 2})
		copy(s.Tuple.RemoteAddr[:], []byte{10, 250, 0, 1})
	}
	s.Tuple.LocalPort, s.Tuple.RemotePort, s.Tuple.Protocol = 43122, 8080, 6
	s.Owner.Pid, s.Owner.Netns, s.Owner.Cgroup = 4711, 4026532890, 8123
	for i := range min(len(comm), len(s.Owner.Comm)-1) {
		s.Owner.Comm[i] = int8(comm[i])
	}
	s.Cookie, s.StartNs, s.EndNs = 123456, 1_000_000, 1_200_000
	s.BytesSent, s.BytesRecv, s.SegsOut, s.SegsIn, s.SrttUs = 1000, 2000, 5, 4, 41
	s.Role, s.OwnerSource, s.Established = 1, 1, 1
	ev.Kind = uint8(flowlensEventKindEVENT_CLOSE)
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&ev)), unsafe.Sizeof(ev))
	return append([]byte(nil), raw...)
}

var decoded flow.TCPEnd

// BenchmarkDecode measures the ring buffer record decoder, one socket end
// event per operation: what the agent does for every short connection
// before the connection table sees it.
func BenchmarkDecode(b *testing.B) {
	for _, c := range []struct {
		name string
		v6   bool
	}{{"ipv4", false}, {"ipv6", true}} {
		b.Run(c.name, func(b *testing.B) {
			raw := rawEnd(c.v6, "peer")
			var d Datapath
			if ev, err := d.decodeEnd(raw); err != nil || ev.Socket.Owner.Command != "peer" || ev.Socket.Remote.Port() != 8080 {
				b.Fatalf("decode: %+v %v", ev, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				ev, err := d.decodeEnd(raw)
				if err != nil {
					b.Fatal(err)
				}
				decoded = ev
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
