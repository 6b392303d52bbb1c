package join

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

var (
	client = flow.Endpoint{IP: netip.MustParseAddr("10.244.1.10"), Port: 43122, Kind: flow.KindPod, Pod: "client-1"}
	vip    = flow.Endpoint{IP: netip.MustParseAddr("10.96.0.20"), Port: 80, Kind: flow.KindService,
		Service: &flow.ServiceRef{Namespace: "backend", Name: "api"}}
	api1 = flow.Endpoint{IP: netip.MustParseAddr("10.244.2.20"), Port: 8080, Kind: flow.KindPod,
		Namespace: "backend", Pod: "api-1", NodeName: "b", Workload: &flow.Workload{Kind: "Deployment", Name: "api"}}
)

func clientRec(port uint16, v flow.Verdict) flow.Record {
	src := client
	src.Port = port
	return flow.Record{Observer: "client", Protocol: flow.TCP, Verdict: v, Source: src, Destination: vip, Opened: 1}
}

func serverRec(port uint16, v flow.Verdict, backend flow.Endpoint) flow.Record {
	src := client
	src.Port = port
	return flow.Record{Observer: "server", Protocol: flow.TCP, Verdict: v, Source: src, Destination: backend, Opened: 1}
}

func TestSameIntervalMatches(t *testing.T) {
	j := New(Config{})
	out := j.Join([]flow.Record{clientRec(1000, flow.VerdictClosed), serverRec(1000, flow.VerdictClosed, api1)})
	if len(out) != 2 {
		t.Fatalf("got %d records, want 2", len(out))
	}
	d := out[0].Destination
	if d.Pod != "api-1" || d.Kind != flow.KindPod || d.Service == nil || d.Service.Name != "api" ||
		d.IP != vip.IP || d.Port != 80 || d.Workload.Name != "api" || d.NodeName != "b" {
		t.Errorf("joined destination %+v", d)
	}
	if s := j.Stats(); s.Matched != 1 || s.Unmatched != 0 || s.Held != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestServerSideOneIntervalLate(t *testing.T) {
	j := New(Config{})
	if out := j.Join([]flow.Record{clientRec(1000, flow.VerdictEstablished)}); len(out) != 0 {
		t.Fatalf("client record released before its server side: %+v", out)
	}
	if s := j.Stats(); s.Held != 1 {
		t.Fatalf("held %d, want 1", s.Held)
	}
	out := j.Join([]flow.Record{serverRec(1000, flow.VerdictEstablished, api1)})
	if len(out) != 2 || out[0].Observer != "client" || out[0].Destination.Pod != "api-1" {
		t.Fatalf("got %+v", out)
	}
	// The connection goes on: later client records match at once.
	out = j.Join([]flow.Record{clientRec(1000, flow.VerdictClosed)})
	if len(out) != 1 || out[0].Destination.Pod != "api-1" {
		t.Fatalf("later record not joined: %+v", out)
	}
}

func TestUnmatchedReleasedAfterHold(t *testing.T) {
	j := New(Config{Hold: 2})
	other := serverRec(2000, flow.VerdictClosed, api1)
	for i, want := range []int{1, 1, 2} { // the held record comes out in the third call
		out := j.Join([]flow.Record{clientRec(1000, flow.VerdictClosed), other})
		if i == 0 && len(out) != want {
			t.Fatalf("call %d: %d records, want %d", i, len(out), want)
		}
		if i == 2 {
			if len(out) != 2 || out[0].Destination.Kind != flow.KindService || out[0].Destination.Pod != "" {
				t.Fatalf("call %d: released %+v", i, out)
			}
		}
	}
	if s := j.Stats(); s.Unmatched != 1 {
		t.Errorf("unmatched %d, want 1", s.Unmatched)
	}
}

func TestNotThroughServicePassesUntouched(t *testing.T) {
	j := New(Config{})
	r := clientRec(1000, flow.VerdictClosed)
	r.Destination = api1
	out := j.Join([]flow.Record{r})
	if len(out) != 1 || out[0].Destination.Pod != "api-1" || out[0].Destination.Service != nil {
		t.Fatalf("got %+v", out)
	}
	if s := j.Stats(); s.Matched != 0 {
		t.Errorf("matched %d", s.Matched)
	}
}

func TestBackendsExpireAndAreBounded(t *testing.T) {
	j := New(Config{Hold: 1, Remember: 3, MaxBackends: 2})
	j.Join([]flow.Record{
		serverRec(1, flow.VerdictClosed, api1),
		serverRec(2, flow.VerdictEstablished, api1),
		serverRec(3, flow.VerdictEstablished, api1),
	})
	if s := j.Stats(); s.Backends != 2 || s.Dropped != 1 {
		t.Fatalf("stats %+v, want 2 backends, 1 dropped", s)
	}
	// Learned in interval 1: the closed one is kept through 1+Hold+1 = 3,
	// the open one through 1+Remember = 4.
	j.Join(nil)
	j.Join(nil)
	if s := j.Stats(); s.Backends != 2 {
		t.Fatalf("backends %d in interval 3, want 2", s.Backends)
	}
	j.Join(nil)
	if s := j.Stats(); s.Backends != 1 {
		t.Fatalf("backends %d in interval 4, want 1", s.Backends)
	}
	j.Join(nil)
	if s := j.Stats(); s.Backends != 0 {
		t.Fatalf("backends %d after Remember, want 0", s.Backends)
	}
}

func TestPortReuseTakesTheNewBackend(t *testing.T) {
	api2 := api1
	api2.Pod = "api-2"
	j := New(Config{})
	j.Join([]flow.Record{clientRec(1000, flow.VerdictClosed), serverRec(1000, flow.VerdictClosed, api1)})
	out := j.Join([]flow.Record{clientRec(1000, flow.VerdictClosed), serverRec(1000, flow.VerdictClosed, api2)})
	if out[0].Destination.Pod != "api-2" {
		t.Fatalf("reused client port joined to %q, want api-2", out[0].Destination.Pod)
	}
}

func TestHostNetworkPodBehindANodeAddress(t *testing.T) {
	node := flow.Endpoint{IP: netip.MustParseAddr("172.30.0.11"), Port: 9100, Kind: flow.KindNode, NodeName: "a"}
	agent := node
	agent.Kind, agent.Namespace, agent.Pod, agent.HostNetwork = flow.KindPod, "infra", "node-agent-x", true
	c := clientRec(1000, flow.VerdictClosed)
	c.Destination = node
	j := New(Config{})
	out := j.Join([]flow.Record{c, serverRec(1000, flow.VerdictClosed, agent)})
	d := out[0].Destination
	if d.Pod != "node-agent-x" || !d.HostNetwork || d.Service != nil || d.NodeName != "a" {
		t.Fatalf("joined destination %+v", d)
	}
}

// A client port reused for a connection to another Service, whose server
// side this joiner never sees, must not inherit the first connection's
// backend.
func TestReusedPortDoesNotInheritABackend(t *testing.T) {
	t0 := time.Unix(1000, 0)
	j := New(Config{})
	first, srv := clientRec(1000, flow.VerdictClosed), serverRec(1000, flow.VerdictClosed, api1)
	first.ConnStart, srv.ConnStart = t0, t0.Add(80*time.Microsecond)
	j.Join([]flow.Record{first, srv})
	again := clientRec(1000, flow.VerdictClosed)
	again.ConnStart = t0.Add(1500 * time.Millisecond)
	again.Destination.Service = &flow.ServiceRef{Namespace: "db", Name: "db"}
	j.Join([]flow.Record{again})
	out := j.Join(nil)
	if len(out) != 1 || out[0].Destination.Pod != "" || out[0].Destination.Kind != flow.KindService {
		t.Fatalf("reused port joined to %+v", out)
	}
	if s := j.Stats(); s.Matched != 1 || s.Unmatched != 1 {
		t.Errorf("stats %+v, want 1 matched, 1 unmatched", s)
	}
}

// Linux gives one source port to connections to different destinations at
// once; each client record takes the server side that began with it.
func TestConcurrentConnectionsOnOnePort(t *testing.T) {
	t0 := time.Unix(1000, 0)
	api2 := api1
	api2.Pod = "api-2"
	c1, c2 := clientRec(1000, flow.VerdictClosed), clientRec(1000, flow.VerdictClosed)
	c1.ConnStart, c2.ConnStart = t0, t0.Add(300*time.Millisecond)
	s1, s2 := serverRec(1000, flow.VerdictClosed, api1), serverRec(1000, flow.VerdictClosed, api2)
	s1.ConnStart, s2.ConnStart = t0.Add(90*time.Microsecond), t0.Add(300*time.Millisecond+70*time.Microsecond)
	out := New(Config{}).Join([]flow.Record{c2, s1, c1, s2})
	got := map[time.Time]string{}
	for _, r := range out {
		if r.Observer == "client" {
			got[r.ConnStart] = r.Destination.Pod
		}
	}
	if got[c1.ConnStart] != "api-1" || got[c2.ConnStart] != "api-2" {
		t.Fatalf("client records joined to %v, want api-1 then api-2", got)
	}
}
