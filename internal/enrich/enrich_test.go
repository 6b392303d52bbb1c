package enrich

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/flow"
)

type cgroupsFunc func(uint64) (cgroup.Container, bool)

func (f cgroupsFunc) Lookup(id uint64) (cgroup.Container, bool) { return f(id) }

type identitiesFunc func(*flow.Endpoint, string, string, time.Time)

func (f identitiesFunc) Resolve(ep *flow.Endpoint, uid, cid string, at time.Time) {
	f(ep, uid, cid, at)
}

func TestRecordsAskCgroupsOnlyForTheObservingSide(t *testing.T) {
	const id = "4f1c000000000000000000000000000000000000000000000000000000000000"
	start := time.Unix(100, 0)
	type call struct {
		ip       string
		uid, cid string
		at       time.Time
	}
	var calls []call
	e := Enricher{
		Cgroups: cgroupsFunc(func(cg uint64) (cgroup.Container, bool) {
			if cg != 42 {
				t.Errorf("looked up cgroup %d", cg)
			}
			return cgroup.Container{ContainerID: id, PodUID: "uid-1", Runtime: "containerd"}, true
		}),
		Identities: identitiesFunc(func(ep *flow.Endpoint, uid, cid string, at time.Time) {
			calls = append(calls, call{ep.IP.String(), uid, cid, at})
			ep.Pod = "named"
		}),
	}
	recs := []flow.Record{{ConnStart: start,
		Source:      flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), CgroupID: 42},
		Destination: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.2")}}}
	e.Records(recs)
	want := []call{{"10.0.0.1", "uid-1", id, start}, {"10.0.0.2", "", "", start}}
	if len(calls) != 2 || calls[0] != want[0] || calls[1] != want[1] {
		t.Fatalf("calls %+v, want %+v", calls, want)
	}
	if recs[0].Source.ContainerID != id || recs[0].Destination.ContainerID != "" || recs[0].Source.Pod != "named" {
		t.Errorf("records %+v", recs[0])
	}
}

func TestRecordsWithoutSources(t *testing.T) {
	recs := []flow.Record{{Source: flow.Endpoint{CgroupID: 1}}}
	Enricher{}.Records(recs)
	if recs[0].Source.ContainerID != "" {
		t.Errorf("named without a source: %+v", recs[0].Source)
	}
}
