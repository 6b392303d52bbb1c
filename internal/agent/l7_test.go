package agent

import (
	"net/netip"
	"testing"

	"github.com/flowlens/flowlens/internal/conntable"
	"github.com/flowlens/flowlens/internal/datapath"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
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
	// Once the connection ended, each end's start (as the client's end
	// event gave them: its connect, and its handshake's end, when the
	// server's socket was made) dates a record made for its requests.
	k := sampleOf(&s).Key
	k.StartNS, k.PeerStartNS = 3, 4
	own, peer = requestsOf(k, 5)
	if own.StartNS != 3 || peer.StartNS != 4 {
		t.Errorf("ended: requestsOf starts %d and %d, want the client's 3 and the server's 4", own.StartNS, peer.StartNS)
	}
	k.PeerStartNS = 0 // adopted established: no handshake seen
	if own, peer = requestsOf(k, 5); own.StartNS != 3 || peer.StartNS != 3 {
		t.Errorf("ended, no handshake seen: requestsOf starts %d and %d, want the client's, 3, for both", own.StartNS, peer.StartNS)
	}
	s.PeerCookie, s.PeerNetns = 0, 0
	if own, peer = requestsOf(sampleOf(&s).Key, 5); own != wantOwn || peer != (conntable.RequestsOf{}) {
		t.Errorf("without a peer: requestsOf = %+v, %+v; want %+v and none", own, peer, wantOwn)
	}
}

// A pair's server end takes its client's plaintext groups, and not the
// TLS ones, which its own library calls' samples count.
func TestPutRequestsGivesAPairsServerThePlaintext(t *testing.T) {
	k := l7.ConnKey{Cookie: 7, Role: flow.RoleClient, PeerCookie: 9}
	plain := flow.Requests{Protocol: flow.Postgres, Method: "SELECT", Count: 2}
	tls := flow.Requests{Protocol: flow.Postgres, TLS: true, Method: "SELECT", Count: 3}
	got := map[uint64][]flow.Requests{}
	put := func(of conntable.RequestsOf, groups []flow.Requests) { got[of.Cookie] = groups }
	putRequests(k, 5, []flow.Requests{plain, tls}, put)
	if len(got[7]) != 2 || len(got[9]) != 1 || got[9][0].TLS || got[9][0].Count != 2 {
		t.Errorf("client's %+v, server's %+v; want both groups, and the plaintext one", got[7], got[9])
	}
	clear(got)
	putRequests(k, 5, []flow.Requests{tls}, put)
	if _, ok := got[9]; ok || len(got[7]) != 1 {
		t.Errorf("TLS only: client's %+v, server's %+v; want the client's alone", got[7], got[9])
	}
}
