package publish

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/enrich"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/identity"
	"github.com/flowlens/flowlens/internal/join"
)

var (
	t0     = time.Unix(1000, 0)
	vipIP  = netip.MustParseAddr("10.96.0.20")
	podIP  = netip.MustParseAddr("10.244.2.20")
	client = flow.Endpoint{IP: netip.MustParseAddr("10.244.1.10"), Port: 43122}
)

type cgroupsFunc func(uint64) (cgroup.Container, bool)

func (f cgroupsFunc) Lookup(id uint64) (cgroup.Container, bool) { return f(id) }

// lagging is identity whose watch has delivered only the pods in known
// (by UID). It names the VIP a Service and any other address a pod of
// unknown name, as identity would name them by address.
type lagging struct{ known map[string]string }

func (l *lagging) Resolve(ep *flow.Endpoint, h identity.Hints) identity.Claim {
	ep.Kind, ep.Pod, ep.Service = "", "", nil
	if h.PodUID != "" {
		if name, ok := l.known[h.PodUID]; ok {
			ep.Kind, ep.Pod = flow.KindPod, name
			return identity.ClaimNamed
		}
	}
	switch {
	case ep.IP == vipIP && h.Destination:
		ep.Kind, ep.Service = flow.KindService, &flow.ServiceRef{Namespace: "backend", Name: "api"}
	default:
		ep.Kind = flow.KindPod
	}
	if h.PodUID != "" {
		return identity.ClaimUnknownPod
	}
	return identity.ClaimNone
}

// cgroup ids of the test: 2 is a new backend pod's, 3 a client pod's.
var podOfCgroup = map[uint64]string{2: "uid-new", 3: "uid-client"}

func newPublisher(cfg Config, l *lagging) (*Publisher, *[][]flow.Record) {
	var written [][]flow.Record
	names := enrich.Enricher{
		Cgroups: cgroupsFunc(func(id uint64) (cgroup.Container, bool) {
			return cgroup.Container{PodUID: podOfCgroup[id]}, podOfCgroup[id] != ""
		}),
		Identities: l,
	}
	cfg.Join = true
	p := New(cfg, names, func(recs []flow.Record) { written = append(written, slices.Clone(recs)) })
	return p, &written
}

func clientRec(port uint16, start time.Time) flow.Record {
	src := client
	src.Port = port
	return flow.Record{Observer: "client", Protocol: flow.TCP, Verdict: flow.VerdictClosed, ConnStart: start,
		Source: src, Destination: flow.Endpoint{IP: vipIP, Port: 80}, Opened: 1}
}

func serverRec(port uint16, start time.Time, cgroupID uint64) flow.Record {
	src := client
	src.Port = port
	return flow.Record{Observer: "server", Protocol: flow.TCP, Verdict: flow.VerdictClosed, ConnStart: start,
		Source: src, Destination: flow.Endpoint{IP: podIP, Port: 8080, CgroupID: cgroupID}, Opened: 1}
}

// summary is what a test compares of a written record.
type summary struct {
	observer, pod string
	service       bool
}

func summarize(recs []flow.Record) []summary {
	out := []summary{}
	for _, r := range recs {
		out = append(out, summary{r.Observer, r.Destination.Pod, r.Destination.Service != nil})
	}
	return out
}

func expect(t *testing.T, interval int, got []flow.Record, want ...summary) {
	t.Helper()
	if want == nil {
		want = []summary{}
	}
	if s := summarize(got); !slices.Equal(s, want) {
		t.Fatalf("interval %d wrote %+v, want %+v", interval, s, want)
	}
}

// The review's case: a brand-new backend's server record waits for its
// pod's metadata, which arrives in the third interval; the client record
// of the same connection, through the Service, waits with it and is
// joined, although the join alone would have given up after one interval.
func TestNewBackendKeepsItsService(t *testing.T) {
	l := &lagging{known: map[string]string{}}
	p, written := newPublisher(Config{}, l)
	p.Publish([]flow.Record{clientRec(1000, t0), serverRec(1000, t0.Add(80*time.Microsecond), 2)})
	p.Publish(nil)
	l.known["uid-new"] = "api-new" // the watch delivers the pod
	p.Publish(nil)
	w := *written
	expect(t, 1, w[0])
	expect(t, 2, w[1])
	expect(t, 3, w[2], summary{"server", "api-new", false}, summary{"client", "api-new", true})
	want := Stats{NamedLate: 1, Join: join.Stats{Matched: 1, Backends: 1}}
	if s := p.Stats(); s != want {
		t.Errorf("stats %+v, want %+v", s, want)
	}
}

// The two sides of a connection can be one interval apart.
func TestServerSideOneIntervalLate(t *testing.T) {
	p, written := newPublisher(Config{}, &lagging{known: map[string]string{"uid-new": "api-new"}})
	p.Publish([]flow.Record{clientRec(1000, t0)})
	p.Publish([]flow.Record{serverRec(1000, t0, 2)})
	w := *written
	expect(t, 1, w[0])
	expect(t, 2, w[1], summary{"client", "api-new", true}, summary{"server", "api-new", false})
	if s := p.Stats(); s.Join.Matched != 1 || s.Unmatched != 0 || s.Held != 0 {
		t.Errorf("stats %+v", s)
	}
}

// A client record whose server side never comes goes out after Hold
// intervals, with its Service alone, counted.
func TestUnmatchedReleasedAfterHold(t *testing.T) {
	p, written := newPublisher(Config{Hold: 2}, &lagging{known: map[string]string{}})
	p.Publish([]flow.Record{clientRec(1000, t0)})
	p.Publish(nil)
	p.Publish(nil)
	w := *written
	expect(t, 1, w[0])
	expect(t, 2, w[1])
	expect(t, 3, w[2], summary{"client", "", true})
	if s := p.Stats(); s.Unmatched != 1 || s.Held != 0 || s.Join.Matched != 0 {
		t.Errorf("stats %+v, want 1 unmatched", s)
	}
}

// A server record that arrives an interval after its client and then waits
// for its pod until the client's own wait is over: the client waits with it.
func TestClientWaitsWithItsWaitingServerSide(t *testing.T) {
	l := &lagging{known: map[string]string{}}
	p, written := newPublisher(Config{Hold: 3}, l)
	p.Publish([]flow.Record{clientRec(1000, t0)})    // 1: client, deadline 4
	p.Publish([]flow.Record{serverRec(1000, t0, 2)}) // 2: server, pod unknown, deadline 5
	p.Publish(nil)                                   // 3
	p.Publish(nil)                                   // 4: the client's deadline
	l.known["uid-new"] = "api-new"                   //
	p.Publish(nil)                                   // 5: the pod arrives in the server's last interval
	w := *written
	for i := range 4 {
		expect(t, i+1, w[i])
	}
	expect(t, 5, w[4], summary{"server", "api-new", false}, summary{"client", "api-new", true})
	if s := p.Stats(); s.NamedLate != 1 || s.Unmatched != 0 || s.Join.Matched != 1 {
		t.Errorf("stats %+v", s)
	}
}

// A pod that never arrives: its records go out named by address after
// Hold intervals, counted once each.
func TestUnknownPodGivesUpAfterHold(t *testing.T) {
	p, written := newPublisher(Config{Hold: 2}, &lagging{known: map[string]string{}})
	r := clientRec(1000, t0)
	r.Destination.IP = podIP // not through a Service: only the names wait
	r.Source.CgroupID = 3
	p.Publish([]flow.Record{r})
	p.Publish(nil)
	p.Publish(nil)
	w := *written
	expect(t, 1, w[0])
	expect(t, 2, w[1])
	expect(t, 3, w[2], summary{"client", "", false})
	if s := p.Stats(); s.Unnamed != 1 || s.NamedLate != 0 || s.Held != 0 {
		t.Errorf("stats %+v, want 1 unnamed", s)
	}
}

func TestHeldIsBounded(t *testing.T) {
	p, written := newPublisher(Config{MaxHeld: 2}, &lagging{known: map[string]string{}})
	var recs []flow.Record
	for port := range uint16(3) {
		r := clientRec(1000+port, t0)
		r.Destination.IP, r.Source.CgroupID = podIP, 3
		recs = append(recs, r)
	}
	p.Publish(recs)
	if w := (*written)[0]; len(w) != 1 || w[0].Source.Port != 1002 {
		t.Fatalf("wrote %+v, want only the record past the bound", w)
	}
	if s := p.Stats(); s.Held != 2 || s.Overflow != 1 {
		t.Errorf("stats %+v", s)
	}
}

// The hub's publisher takes records its agents named: it must leave
// their names alone, what only the agent's cgroups could tell included.
func TestWithoutNamesRecordsKeepTheirs(t *testing.T) {
	var written []flow.Record
	p := New(Config{Join: true}, enrich.Enricher{}, func(recs []flow.Record) { written = append(written, recs...) })
	r := clientRec(1000, t0)
	r.Source.CgroupID, r.Source.ContainerID, r.Source.Pod = 1, "4f1c", "client-1"
	p.Publish([]flow.Record{r})
	if len(written) != 1 || written[0].Source.ContainerID != "4f1c" || written[0].Source.Pod != "client-1" {
		t.Fatalf("wrote %+v, want the record as named by its agent", written)
	}
}

func TestWithoutIdentityNothingWaits(t *testing.T) {
	var written []flow.Record
	names := enrich.Enricher{Cgroups: cgroupsFunc(func(uint64) (cgroup.Container, bool) { return cgroup.Container{PodUID: "uid"}, true })}
	p := New(Config{}, names, func(recs []flow.Record) { written = append(written, recs...) })
	r := clientRec(1000, t0)
	r.Source.CgroupID = 1
	p.Publish([]flow.Record{r})
	if len(written) != 1 {
		t.Fatalf("wrote %d, want 1", len(written))
	}
}

// A long-lived connection whose server side is elsewhere waits once: its
// later records go out at once, with the Service alone, each counted.
func TestGivenUpConnectionWaitsOnce(t *testing.T) {
	p, written := newPublisher(Config{Hold: 2}, &lagging{known: map[string]string{}})
	open := clientRec(1000, t0)
	open.Verdict = flow.VerdictEstablished
	p.Publish([]flow.Record{open})
	p.Publish(nil)
	p.Publish([]flow.Record{open}) // 3: the first record's wait ends; the next one needs none
	p.Publish([]flow.Record{open})
	w := *written
	expect(t, 1, w[0])
	expect(t, 2, w[1])
	expect(t, 3, w[2], summary{"client", "", true}, summary{"client", "", true})
	expect(t, 4, w[3], summary{"client", "", true})
	if s := p.Stats(); s.Unmatched != 3 || s.Held != 0 {
		t.Errorf("stats %+v, want 3 unmatched, none held", s)
	}
}
