package agent

import (
	"net/netip"
	"testing"

	"github.com/flowlens/flowlens/internal/conntable"
	"github.com/flowlens/flowlens/internal/datapath"
	"github.com/flowlens/flowlens/internal/flow"
)

// A client's sample that names its server end on this node yields requests
// for both ends' flows: the client's as sampled, the server's seen from
// its side (role server, addresses swapped, its own namespace and socket).
// One that names none yields its own flow only.
func TestRequestsOfAPairGoOnBothEnds(t *testing.T) {
	client := netip.MustParseAddrPort("10.0.0.2:40000")
	server := netip.MustParseAddrPort("10.0.0.1:8080")
	s := datapath.L7Sample{Cookie: 7, Protocol: flow.TCP, Local: client, Remote: server, Send: true,
		Role: flow.RoleClient, Netns: 100, PeerCookie: 9, PeerNetns: 200}
	own, peer := requestsOf(sampleOf(&s).Key, 5)
	wantOwn := conntable.RequestsOf{Protocol: flow.TCP, Cookie: 7, Role: flow.RoleClient, Local: client,
		Remote: server, Owner: flow.Owner{Netns: 100}, StartNS: 5}
	wantPeer := conntable.RequestsOf{Protocol: flow.TCP, Cookie: 9, Role: flow.RoleServer, Local: server,
		Remote: client, Owner: flow.Owner{Netns: 200}, StartNS: 5}
	if own != wantOwn || peer != wantPeer {
		t.Errorf("requestsOf = %+v, %+v; want %+v, %+v", own, peer, wantOwn, wantPeer)
	}
	s.PeerCookie, s.PeerNetns = 0, 0
	if own, peer = requestsOf(sampleOf(&s).Key, 5); own != wantOwn || peer != (conntable.RequestsOf{}) {
		t.Errorf("without a peer: requestsOf = %+v, %+v; want %+v and none", own, peer, wantOwn)
	}
}
