package join

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

var (
	t0     = time.Unix(1000, 0)
	client = flow.Endpoint{IP: netip.MustParseAddr("10.244.1.10"), Port: 43122, Kind: flow.KindPod, Pod: "client-1"}
	vip    = flow.Endpoint{IP: netip.MustParseAddr("10.96.0.20"), Port: 80, Kind: flow.KindService,
		Service: &flow.ServiceRef{Namespace: "backend", Name: "api"}}
	api1 = flow.Endpoint{IP: netip.MustParseAddr("10.244.2.20"), Port: 8080, Kind: flow.KindPod,
		Namespace: "backend", Pod: "api-1", NodeName: "b", Workload: &flow.Workload{Kind: "Deployment", Name: "api"}}
	api2 = func() flow.Endpoint { e := api1; e.Pod = "api-2"; return e }()
)

// clientRec is a client's record of a connection from port to the Service,
// begun at start.
func clientRec(port uint16, v flow.Verdict, start time.Time) flow.Record {
	src := client
	src.Port = port
	return flow.Record{Observer: "client", Protocol: flow.TCP, Verdict: v, Source: src, Destination: vip, Opened: 1, ConnStart: start}
}

func serverRec(port uint16, v flow.Verdict, backend flow.Endpoint, start time.Time) flow.Record {
	src := client
	src.Port = port
	return flow.Record{Observer: "server", Protocol: flow.TCP, Verdict: v, Source: src, Destination: backend, Opened: 1, ConnStart: start}
}

// interval drives j through one interval as its caller does: learn every
// record, then match the ambiguous ones. It returns the destination pod of
// each client record by its start ("" when unmatched).
func interval(j *Joiner, recs ...flow.Record) map[time.Time]string {
	j.Tick()
	for i := range recs {
		j.Learn(&recs[i])
	}
	got := map[time.Time]string{}
	for i := range recs {
		if r := &recs[i]; Ambiguous(r) {
			j.Match(r)
			got[r.ConnStart] = r.Destination.Pod
		}
	}
	return got
}

func TestSameIntervalMatches(t *testing.T) {
	j := New(Config{})
	c := clientRec(1000, flow.VerdictClosed, t0)
	s := serverRec(1000, flow.VerdictClosed, api1, t0.Add(80*time.Microsecond))
	j.Tick()
	j.Learn(&c)
	j.Learn(&s)
	if !j.Match(&c) {
		t.Fatal("no match")
	}
	if d := c.Destination; d.Pod != "api-1" || d.Kind != flow.KindPod || d.Service == nil || d.Service.Name != "api" ||
		d.IP != vip.IP || d.Port != 80 || d.Workload.Name != "api" || d.NodeName != "b" {
		t.Errorf("joined destination %+v", d)
	}
	if s := j.Stats(); s != (Stats{Matched: 1, Backends: 1}) {
		t.Errorf("stats %+v", s)
	}
}

func TestNotThroughServiceIsNotAmbiguous(t *testing.T) {
	r := clientRec(1000, flow.VerdictClosed, t0)
	r.Destination = api1
	if Ambiguous(&r) {
		t.Fatal("a client record to a pod address is ambiguous")
	}
	s := serverRec(1000, flow.VerdictClosed, api1, t0)
	s.Destination = vip // a server never sees a ClusterIP, but the rule is by observer
	if Ambiguous(&s) {
		t.Fatal("a server record is ambiguous")
	}
}

func TestSidesExpireAndAreBounded(t *testing.T) {
	j := New(Config{Linger: 2, Remember: 3, MaxBackends: 2})
	interval(j,
		serverRec(1, flow.VerdictClosed, api1, t0),
		serverRec(2, flow.VerdictEstablished, api1, t0),
		serverRec(3, flow.VerdictEstablished, api1, t0),
	)
	if s := j.Stats(); s.Backends != 2 || s.Dropped != 1 {
		t.Fatalf("stats %+v, want 2 backends, 1 dropped", s)
	}
	// Learned in interval 1: the closed one is kept through 1+Linger = 3,
	// the open one through 1+Remember = 4.
	for i, want := range []int{2, 2, 1, 0} { // intervals 2 to 5
		interval(j)
		if s := j.Stats(); s.Backends != want {
			t.Fatalf("interval %d: %d backends, want %d", i+2, s.Backends, want)
		}
	}
}

// Once TIME_WAIT is over the client port is reused for the same Service;
// the new connection takes the new backend.
func TestPortReuseTakesTheNewBackend(t *testing.T) {
	j := New(Config{})
	later := t0.Add(61 * time.Second)
	got := interval(j, clientRec(1000, flow.VerdictClosed, t0), serverRec(1000, flow.VerdictClosed, api1, t0))
	got2 := interval(j, clientRec(1000, flow.VerdictClosed, later), serverRec(1000, flow.VerdictClosed, api2, later))
	if got[t0] != "api-1" || got2[later] != "api-2" {
		t.Fatalf("joined to %q then %q, want api-1 then api-2", got[t0], got2[later])
	}
}

func TestHostNetworkPodBehindANodeAddress(t *testing.T) {
	node := flow.Endpoint{IP: netip.MustParseAddr("172.30.0.11"), Port: 9100, Kind: flow.KindNode, NodeName: "a"}
	agent := node
	agent.Kind, agent.Namespace, agent.Pod, agent.HostNetwork = flow.KindPod, "infra", "node-agent-x", true
	c := clientRec(1000, flow.VerdictClosed, t0)
	c.Destination = node
	j := New(Config{})
	interval(j, serverRec(1000, flow.VerdictClosed, agent, t0))
	if !Ambiguous(&c) || !j.Match(&c) {
		t.Fatal("no match")
	}
	if d := c.Destination; d.Pod != "node-agent-x" || !d.HostNetwork || d.Service != nil || d.NodeName != "a" {
		t.Fatalf("joined destination %+v", d)
	}
}

// A client port reused for a connection to another Service, whose server
// side this joiner never sees, must not inherit the first connection's
// backend: that one began before it.
func TestReusedPortDoesNotInheritABackend(t *testing.T) {
	j := New(Config{})
	again := t0.Add(1500 * time.Millisecond)
	interval(j, clientRec(1000, flow.VerdictClosed, t0), serverRec(1000, flow.VerdictClosed, api1, t0.Add(80*time.Microsecond)))
	if got := interval(j, clientRec(1000, flow.VerdictClosed, again)); got[again] != "" {
		t.Fatalf("reused port joined to %q", got[again])
	}
	if s := j.Stats(); s.Matched != 1 {
		t.Errorf("stats %+v, want 1 matched", s)
	}
}

// Linux gives one source port to connections to different destinations at
// once; each client record takes the server side that began with it.
func TestConcurrentConnectionsOnOnePort(t *testing.T) {
	c1, c2 := t0, t0.Add(300*time.Millisecond)
	got := interval(New(Config{}),
		clientRec(1000, flow.VerdictClosed, c2), serverRec(1000, flow.VerdictClosed, api1, c1.Add(90*time.Microsecond)),
		clientRec(1000, flow.VerdictClosed, c1), serverRec(1000, flow.VerdictClosed, api2, c2.Add(70*time.Microsecond)))
	if got[c1] != "api-1" || got[c2] != "api-2" {
		t.Fatalf("client records joined to %v, want api-1 then api-2", got)
	}
}

// A dropped first SYN is retried 1, 3, 7 s after it; the server's socket is
// born at the SYN that got through, the client's connection at the first.
// Those connections are joined like any other.
func TestRetriedSYNs(t *testing.T) {
	for _, delay := range []time.Duration{time.Second, 3 * time.Second, 7 * time.Second, 63 * time.Second} {
		got := interval(New(Config{}), clientRec(1000, flow.VerdictClosed, t0),
			serverRec(1000, flow.VerdictClosed, api1, t0.Add(delay+150*time.Microsecond)))
		if got[t0] != "api-1" {
			t.Errorf("server side %v after the client: joined to %q, want api-1", delay, got[t0])
		}
	}
	// Past the last retry, or before the client began: not its server side.
	for _, d := range []time.Duration{65 * time.Second, -1500 * time.Millisecond} {
		if got := interval(New(Config{}), clientRec(1000, flow.VerdictClosed, t0),
			serverRec(1000, flow.VerdictClosed, api1, t0.Add(d))); got[t0] != "" {
			t.Errorf("server side %v after the client: joined to %q, want none", d, got[t0])
		}
	}
}

// A retried connection and a reuse of its port: each server side goes to
// the client connection that began closest before it.
func TestRetriedSYNAndPortReuse(t *testing.T) {
	c1, c2 := t0, t0.Add(5*time.Second)
	// c1's first SYN was dropped and its server side began at 3 s; c2,
	// to another destination on the same port, at once.
	got := interval(New(Config{}),
		clientRec(1000, flow.VerdictClosed, c1), serverRec(1000, flow.VerdictClosed, api1, c1.Add(3*time.Second)),
		clientRec(1000, flow.VerdictClosed, c2), serverRec(1000, flow.VerdictClosed, api2, c2.Add(80*time.Microsecond)))
	if got[c1] != "api-1" || got[c2] != "api-2" {
		t.Fatalf("joined %v, want c1 api-1, c2 api-2", got)
	}
	// c1's server side is elsewhere (another node): c2's, 5 s after c1,
	// is within c1's retry window but closer to c2, so c1 stays unmatched.
	j := New(Config{})
	got = interval(j,
		clientRec(1000, flow.VerdictClosed, c1),
		clientRec(1000, flow.VerdictClosed, c2), serverRec(1000, flow.VerdictClosed, api2, c2.Add(80*time.Microsecond)))
	if got[c1] != "" || got[c2] != "api-2" {
		t.Fatalf("joined %v, want c1 unmatched, c2 api-2", got)
	}
	if s := j.Stats(); s.Matched != 1 {
		t.Errorf("matched %d, want 1", s.Matched)
	}
}

// A connection given up on stays given up while its later records are
// learned, and only that connection.
func TestGiveUp(t *testing.T) {
	j := New(Config{})
	c1, c2 := clientRec(1000, flow.VerdictEstablished, t0), clientRec(1000, flow.VerdictEstablished, t0.Add(time.Second))
	interval(j, c1, c2)
	j.GiveUp(&c1)
	interval(j, c1, c2)
	if !j.GivenUp(&c1) || j.GivenUp(&c2) {
		t.Fatalf("given up: c1 %v, c2 %v; want true, false", j.GivenUp(&c1), j.GivenUp(&c2))
	}
}
