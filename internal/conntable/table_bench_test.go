package conntable

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// benchSocks returns n established client sockets of one process to one
// server, each its own connection (distinct cookie and source port).
func benchSocks(n int) []flow.TCPSocket {
	out := make([]flow.TCPSocket, n)
	local := netip.MustParseAddr("10.250.0.2")
	remote := netip.MustParseAddrPort("10.250.0.1:8080")
	for i := range out {
		out[i] = flow.TCPSocket{
			Cookie: uint64(i + 1), Local: netip.AddrPortFrom(local, uint16(10000+i%55000)), Remote: remote,
			Role: flow.RoleClient, Established: true, StartNS: uint64(i),
			Owner:     flow.Owner{PID: 4711, Netns: 4026532890, CgroupID: 8123, Command: "peer"},
			BytesSent: 1000, BytesRecv: 2000, SegsOut: 5, SegsIn: 4, SRTTMicros: 41,
		}
	}
	return out
}

var flushed int

// BenchmarkConntableSyncTCP is one interval of the agent with N live
// sockets, as the table sees it: "active", every socket moved data since the
// last read, and the kernel's touched set hands each over (TouchedTCP, one
// record each); "idle", none did, and the touched set is empty; "whole", the
// rare read of the whole map (SyncTCP) with every socket idle. Each then
// Flush. Reported per socket. What the kernel read costs is
// BenchmarkTouchedTCP's (internal/datapath).
func BenchmarkConntableSyncTCP(b *testing.B) {
	t0 := time.Unix(1000, 0)
	for _, n := range []int{1_000, 10_000, 100_000} {
		for _, mode := range []string{"active", "idle", "whole"} {
			b.Run(fmt.Sprintf("sockets=%d/%s", n, mode), func(b *testing.B) {
				tb := New(Config{Node: "bench"})
				live := benchSocks(n)
				tb.SyncTCP(live)
				tb.Flush(t0, t0.Add(time.Second))
				b.ReportAllocs()
				for b.Loop() {
					switch mode {
					case "active":
						for i := range live {
							live[i].BytesSent += 100
							live[i].SegsOut++
						}
						tb.TouchedTCP(live)
					case "idle":
						tb.TouchedTCP(nil)
					case "whole":
						tb.SyncTCP(live)
					}
					flushed = len(tb.Flush(t0, t0.Add(time.Second)))
				}
				if s := tb.Stats(); s.Sockets != n || s.SocketsUntracked != 0 {
					b.Fatalf("table holds %d sockets (untracked %d), want %d", s.Sockets, s.SocketsUntracked, n)
				}
				perSocket := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(n)
				b.ReportMetric(perSocket, "ns/socket")
				b.ReportMetric(1e9/perSocket, "events/s")
			})
		}
	}
}

// BenchmarkConntableEndFlush is the short-connection path: one socket end
// event per operation, with a Flush every `interval` events, as when that
// many connections open and close within one interval. Each end becomes one
// record. per-interval=N ends connections the table never saw live (they
// opened and closed between two map reads): the bench's hot-path figure
// reads per-interval=10000. seen-live/per-interval=N ends connections a map
// read found live earlier (untimed: that read and its Flush are
// BenchmarkConntableSyncTCP's), which the table holds and lets go at their
// end.
func BenchmarkConntableEndFlush(b *testing.B) {
	for _, interval := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("per-interval=%d", interval), func(b *testing.B) { benchEndFlush(b, interval, false) })
	}
	b.Run("seen-live/per-interval=10000", func(b *testing.B) { benchEndFlush(b, 10_000, true) })
}

func benchEndFlush(b *testing.B, interval int, seenLive bool) {
	t0 := time.Unix(1000, 0)
	tb := New(Config{Node: "bench"})
	live := benchSocks(interval)
	ends := make([]flow.TCPEnd, len(live))
	for i, s := range live {
		s.Closed = true
		s.BytesSent += 500
		s.SegsOut += 2
		ends[i] = flow.TCPEnd{Socket: s, EndNS: s.StartNS + 200_000}
	}
	records := 0
	cookie := uint64(len(ends))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if seenLive && i == 0 {
			b.StopTimer()
			for j := range live {
				live[j].Cookie = cookie + uint64(j) + 1
			}
			tb.TouchedTCP(live)
			tb.Flush(t0, t0.Add(time.Second))
			b.StartTimer()
		}
		ev := ends[i]
		cookie++
		ev.Socket.Cookie = cookie
		tb.EndTCP(ev)
		if i++; i == len(ends) {
			records += len(tb.Flush(t0, t0.Add(time.Second)))
			i = 0
		}
	}
	records += len(tb.Flush(t0, t0.Add(time.Second)))
	if records != b.N {
		b.Fatalf("%d records for %d connections", records, b.N)
	}
	// Those read live and not ended yet, past the last full interval.
	stillLive := 0
	if seenLive && i > 0 {
		stillLive = len(ends) - i
	}
	if s := tb.Stats(); s.Sockets != stillLive {
		b.Fatalf("table holds %d sockets, want %d", s.Sockets, stillLive)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
