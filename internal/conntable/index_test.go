package conntable

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
)

// The index against a Go map, through adds, finds and removals in random
// order: enough keys that probes collide and wrap around the table, and a
// reset after each round, which lets a burst's table go.
func TestFlowIndexMatchesAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var a pendingArena
	x := newFlowIndex()
	key := func(i int) recKey {
		return newRecKey(flow.TCP, flow.RoleClient, netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(i)), server, 7)
	}
	for round, n := range []int{3000, 40, 700} {
		want := map[recKey]*pending{}
		for range 2 * n {
			k := key(rng.IntN(n))
			p, added := x.findOrAdd(&a, &k)
			if q, ok := want[k]; added == ok || (ok && p != q) {
				t.Fatalf("round %d: findOrAdd(%d) = %p added %v, the map has %p", round, k.localPort, p, added, q)
			}
			want[k] = p
			if rng.IntN(3) == 0 {
				k := key(rng.IntN(n))
				if p, ok := want[k]; ok {
					x.remove(&a, p)
					delete(want, k)
				}
			}
		}
		for i := range n {
			k := key(i)
			if got := x.find(&a, &k); got != want[k] {
				t.Fatalf("round %d: find(%d) = %p, want %p", round, i, got, want[k])
			}
		}
		if x.n != len(want) {
			t.Fatalf("round %d: %d indexed, want %d", round, x.n, len(want))
		}
		x.reset()
		a.reset()
		if n == 40 && len(x.slots) > 128 {
			t.Errorf("%d slots kept after an interval of at most 40 flows, want at most 128", len(x.slots))
		}
	}
}
