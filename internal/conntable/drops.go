package conntable

import (
	"net/netip"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// Drops are matched to flows by their 5-tuple, at Flush, against the flows
// with a record in that interval. A drop with no such flow yet is held:
// a SYN dropped before any socket exists on the server matches the
// client's connect only when the connect fails (its record comes then,
// seconds later, with the local port the SYN carried).
//
//	datapath.Drops ─▶ Drops ─▶ held ─┐
//	                                  ├─ Flush: (proto, a, b) = a flow's (local, remote)
//	pending records (this interval) ─┘     either way round ─▶ record.Drops[reason]
//	                                  held past DropHold, or past MaxHeldDrops: DropsUnmatched

// heldDrop is a drop waiting for its flow.
type heldDrop struct {
	drop  flow.Drop
	since time.Time // the Flush that first tried it; zero until then
}

type tupleKey struct {
	proto         flow.Protocol
	local, remote netip.AddrPort
}

func (k *recKey) tuple() tupleKey {
	return tupleKey{k.proto(), netip.AddrPortFrom(k.localAddr(), k.localPort), netip.AddrPortFrom(k.remoteAddr(), k.remotePort)}
}

// Drops takes the drops read from the kernel since the last call. They are
// matched to flows at the next Flush.
func (t *Table) Drops(drops []flow.Drop) {
	for _, d := range drops {
		if len(t.held) >= t.cfg.MaxHeldDrops {
			// Oldest first: the newest drops are likelier to find their flow.
			t.stats.DropsUnmatched += t.held[0].drop.Count
			t.held = t.held[1:]
		}
		t.held = append(t.held, heldDrop{drop: d})
	}
}

// matchDrops adds held drops to this interval's records of their flows,
// keeps the rest until DropHold has passed since their first try.
func (t *Table) matchDrops(now time.Time) {
	if len(t.held) == 0 {
		return
	}
	index := make(map[tupleKey][]*pending, t.pending.n)
	for p := range t.arena.all() {
		if p.flushed {
			continue
		}
		tk := p.key.tuple()
		index[tk] = append(index[tk], p)
	}
	kept := t.held[:0]
	for _, h := range t.held {
		d := &h.drop
		if p := bestFlow(index, d); p != nil {
			if p.rec.Drops == nil {
				p.rec.Drops = make(map[string]uint64)
			}
			p.rec.Drops[d.Reason] += d.Count
			continue
		}
		if h.since.IsZero() {
			h.since = now
		}
		if now.Sub(h.since) >= t.cfg.DropHold {
			t.stats.DropsUnmatched += d.Count
			continue
		}
		kept = append(kept, h)
	}
	clear(t.held[len(kept):])
	t.held = kept
}

// bestFlow picks the flow a drop belongs to: the one whose (local, remote)
// is the drop's either way round, on the side in the drop's network
// namespace where both sides are on this host, else the client's.
func bestFlow(index map[tupleKey][]*pending, d *flow.Drop) *pending {
	var best *pending
	score := -1
	for _, tk := range [2]tupleKey{{d.Protocol, d.Local, d.Remote}, {d.Protocol, d.Remote, d.Local}} {
		for _, p := range index[tk] {
			s := 0
			if d.Netns != 0 && p.owner.Netns == d.Netns {
				s += 2
			}
			if p.key.role == flow.RoleClient {
				s++
			}
			if s > score {
				best, score = p, s
			}
		}
	}
	return best
}
