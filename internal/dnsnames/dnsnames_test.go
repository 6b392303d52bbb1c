package dnsnames

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

var (
	api   = netip.MustParseAddr("10.99.0.7")
	other = netip.MustParseAddr("10.99.0.8")
	t0    = time.Unix(1000, 0)
)

func lookup(netns uint32, name string, answers ...netip.Addr) flow.Record {
	return flow.Record{Observer: "client", Protocol: flow.UDP,
		Source: flow.Endpoint{Netns: netns}, Destination: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.10"), Port: 53},
		Requests: []flow.Requests{{Protocol: flow.DNS, Query: name, QType: "A", RCode: "noerror", Count: 1, Answers: answers}}}
}

func conn(netns uint32, to netip.Addr) flow.Record {
	return flow.Record{Observer: "client", Protocol: flow.TCP, Source: flow.Endpoint{Netns: netns}, Destination: flow.Endpoint{IP: to, Port: 443}}
}

func TestPeersNamedByTheirNamespacesAnswersFirst(t *testing.T) {
	c := New(DefaultConfig())
	// Two namespaces resolve different names to one address.
	recs := []flow.Record{lookup(1, "api.example.test", api), lookup(2, "cdn.example.test", api), conn(1, api)}
	c.Learn(recs, t0)
	if got := recs[2].Destination.DNSName; got != "api.example.test" {
		t.Errorf("connection in the lookup's interval named %q", got)
	}
	later := []flow.Record{conn(2, api), conn(3, api), conn(1, other)}
	c.Learn(later, t0.Add(time.Minute))
	if later[0].Destination.DNSName != "cdn.example.test" {
		t.Errorf("namespace 2 sees %q, want its own answer", later[0].Destination.DNSName)
	}
	if later[1].Destination.DNSName != "cdn.example.test" {
		t.Errorf("namespace 3 sees %q, want the node's latest answer", later[1].Destination.DNSName)
	}
	if later[2].Destination.DNSName != "" {
		t.Errorf("an address nobody resolved is named %q", later[2].Destination.DNSName)
	}
}

func TestNamesExpireAndStayBounded(t *testing.T) {
	c := New(Config{MaxNames: 4, Forget: time.Minute})
	c.Learn([]flow.Record{lookup(1, "a.test", api)}, t0)
	recs := []flow.Record{conn(1, api)}
	c.Learn(recs, t0.Add(2*time.Minute))
	if recs[0].Destination.DNSName != "" || c.Len() != 0 {
		t.Errorf("named %q with %d names held after Forget", recs[0].Destination.DNSName, c.Len())
	}
	for i := range 10 {
		addr := netip.AddrFrom4([4]byte{10, 1, 0, byte(i)})
		c.Learn([]flow.Record{lookup(1, "x.test", addr)}, t0.Add(3*time.Minute+time.Duration(i)*time.Second))
	}
	if c.Len() != 4 || c.Evicted() != 16 {
		t.Errorf("%d names held, %d evicted; want 4 and 16 (two entries per answer)", c.Len(), c.Evicted())
	}
}
