package conntable

import (
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
)

var get200 = flow.Requests{Protocol: flow.HTTP, Method: "GET", Path: "/users/{id}", Status: 200, Count: 3}

// Requests join the record their connection's traffic made, keeping the
// owner that traffic named (the sample knows only the pid and namespace).
func TestRequestsJoinTheirFlowsRecord(t *testing.T) {
	tb := New(Config{Node: "n1"})
	s := clientSock(1)
	s.BytesSent, s.BytesRecv = 300, 900
	tb.EndTCP(flow.TCPEnd{Socket: s})
	tb.Requests(RequestsOf{Protocol: flow.TCP, Cookie: 1, Role: flow.RoleClient, Local: client, Remote: server,
		Owner: flow.Owner{PID: 42, Netns: 7}}, []flow.Requests{get200})

	r := flushOne(t, tb)
	if len(r.Requests) != 1 || r.Requests[0].Count != 3 || r.BytesToDst != 300 {
		t.Errorf("record %+v, want the connection's bytes and its 3 requests", r)
	}
	if r.Source.Command != "curl" || r.Source.CgroupID != 9 {
		t.Errorf("owner %+v, want the traffic's", r.Source)
	}
	if tb.Stats().RecordsForRequests != 0 {
		t.Errorf("a record was made for requests that had one")
	}
}

// Requests whose samples came after their connection's last traffic was
// accounted make a record of their own on the same flow; a UDP
// conversation's role is the table's, not the sample's.
func TestRequestsWithoutTrafficMakeTheirRecord(t *testing.T) {
	tb := New(Config{Node: "n1"})
	tb.Requests(RequestsOf{Protocol: flow.TCP, Cookie: 1, Role: flow.RoleServer, Local: server, Remote: client,
		Owner: flow.Owner{PID: 7, Netns: 3}}, []flow.Requests{get200})
	r := flushOne(t, tb)
	if r.Observer != "server" || r.Destination.PID != 7 || r.Destination.Netns != 3 || r.Source.IP != client.Addr() || len(r.Requests) != 1 {
		t.Errorf("record %+v", r)
	}

	dns := flow.Requests{Protocol: flow.DNS, Query: "api.example.test", QType: "A", RCode: "noerror", Count: 1}
	tb.SyncUDP([]flow.UDPConversation{{Cookie: 5, Local: client, Remote: server, Initiator: true, TxBytes: 40, TxDatagrams: 1,
		Owner: flow.Owner{PID: 9, Netns: 3}}}, 1)
	tb.Flush(t0, t1)
	tb.Requests(RequestsOf{Protocol: flow.UDP, Cookie: 5, Local: client, Remote: server, Owner: flow.Owner{PID: 9, Netns: 3}},
		[]flow.Requests{dns})
	r = flushOne(t, tb)
	if r.Observer != "client" || r.Protocol != flow.UDP || r.Source.Netns != 3 || len(r.Requests) != 1 || r.Requests[0].Query != "api.example.test" {
		t.Errorf("record %+v, want the conversation's client record with its query", r)
	}
	if n := tb.Stats().RecordsForRequests; n != 2 {
		t.Errorf("%d records made for requests, want 2", n)
	}
}
