package conntable

import (
	"net/netip"

	"github.com/flowlens/flowlens/internal/flow"
)

// RequestsOf names the socket a connection's requests were seen on, as the
// L7 samples told it.
type RequestsOf struct {
	Protocol      flow.Protocol
	Cookie        uint64
	Role          flow.Role // TCP: the socket's; UDP: unknown, the table knows it
	Local, Remote netip.AddrPort
	Owner         flow.Owner // PID and Netns
	// StartNS is the start a record made for the requests takes when the
	// table no longer knows the socket: the connection's, once ended;
	// else when they were taken.
	StartNS uint64
}

// Requests puts request groups on the record of their flow in this
// interval. The flow's traffic normally made that record already; when it
// did not (the requests' samples were read after their bytes were
// accounted, or after the socket ended), a record is made for them, keyed
// the same way, so that they are counted on their flow all the same.
func (t *Table) Requests(of RequestsOf, groups []flow.Requests) {
	k, start := t.requestsKey(&of)
	p := t.pending.find(&t.arena, &k)
	if p == nil {
		p = t.record(of.Protocol, k.role, of.Local, of.Remote, of.Owner, start)
		// The sample names the process and namespace only, which
		// setOwner takes for knowing nothing: write them, so that
		// identity can name the observing side.
		p.owner.PID, p.owner.Netns = of.Owner.PID, of.Owner.Netns
		t.stats.RecordsForRequests++
	}
	p.rec.Requests = append(p.rec.Requests, groups...)
}

// requestsKey is the flow requests go on, and the start its record takes
// if it has none yet.
func (t *Table) requestsKey(of *RequestsOf) (recKey, uint64) {
	role, start := of.Role, of.StartNS
	if of.Protocol == flow.UDP {
		role = flow.RoleServer
		if e, ok := t.convs[newConvKey(of.Cookie, of.Local, of.Remote)]; ok {
			start = e.firstNS
			if e.initiator {
				role = flow.RoleClient
			}
		}
	} else if e, ok := t.socks[of.Cookie]; ok {
		start = e.conn.start
	}
	if role == flow.RoleUnknown {
		role = flow.RoleClient
	}
	return newRecKey(of.Protocol, role, of.Local, of.Remote, of.Owner.Netns), start
}
