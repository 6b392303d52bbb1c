package enrich

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/identity"
)

type cgroupsFunc func(uint64) (cgroup.Container, bool)

func (f cgroupsFunc) Lookup(id uint64) (cgroup.Container, bool) { return f(id) }

type processesFunc func(uint32) (cgroup.Container, bool)

func (f processesFunc) Lookup(pid uint32) (cgroup.Container, bool) { return f(pid) }

type identitiesFunc func(*flow.Endpoint, identity.Hints) identity.Claim

func (f identitiesFunc) Resolve(ep *flow.Endpoint, h identity.Hints) identity.Claim { return f(ep, h) }

func TestRecordsAskCgroupsOnlyForTheObservingSide(t *testing.T) {
	const id = "4f1c000000000000000000000000000000000000000000000000000000000000"
	start := time.Unix(100, 0)
	type call struct {
		ip string
		h  identity.Hints
	}
	var calls []call
	e := Enricher{
		Cgroups: cgroupsFunc(func(cg uint64) (cgroup.Container, bool) {
			if cg != 42 {
				t.Errorf("looked up cgroup %d", cg)
			}
			return cgroup.Container{ContainerID: id, PodUID: "uid-1", Runtime: "containerd"}, true
		}),
		Identities: identitiesFunc(func(ep *flow.Endpoint, h identity.Hints) identity.Claim {
			calls = append(calls, call{ep.IP.String(), h})
			ep.Pod = "named"
			if h.PodUID != "" {
				return identity.ClaimNamed
			}
			return identity.ClaimNone
		}),
	}
	recs := []flow.Record{{ConnStart: start,
		Source:      flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), CgroupID: 42},
		Destination: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.2")}}}
	if e.Record(&recs[0]) {
		t.Error("early, though identity confirmed the pod")
	}
	want := []call{{"10.0.0.1", identity.Hints{PodUID: "uid-1", ContainerID: id, At: start}},
		{"10.0.0.2", identity.Hints{At: start, Destination: true}}}
	if len(calls) != 2 || calls[0] != want[0] || calls[1] != want[1] {
		t.Fatalf("calls %+v, want %+v", calls, want)
	}
	if recs[0].Source.ContainerID != id || recs[0].Destination.ContainerID != "" || recs[0].Source.Pod != "named" {
		t.Errorf("records %+v", recs[0])
	}
}

func TestRecordsWithoutSources(t *testing.T) {
	recs := []flow.Record{{Source: flow.Endpoint{CgroupID: 1}}}
	if (Enricher{}).Record(&recs[0]) {
		t.Error("early without identity")
	}
	if recs[0].Source.ContainerID != "" {
		t.Errorf("named without a source: %+v", recs[0].Source)
	}
}

// On a cgroup v1 host the socket's v2 cgroup names nothing; the process's
// v1 cgroups name the pod.
func TestRecordsFallBackToTheProcess(t *testing.T) {
	const id = "9d4f000000000000000000000000000000000000000000000000000000000000"
	var gotUID string
	e := Enricher{
		Cgroups: cgroupsFunc(func(uint64) (cgroup.Container, bool) { return cgroup.Container{Path: "/"}, true }),
		Processes: processesFunc(func(pid uint32) (cgroup.Container, bool) {
			if pid != 7 {
				t.Errorf("looked up pid %d", pid)
			}
			return cgroup.Container{PodUID: "uid-v1", ContainerID: id, Runtime: "cri"}, true
		}),
		Identities: identitiesFunc(func(ep *flow.Endpoint, h identity.Hints) identity.Claim {
			if ep.PID == 7 {
				gotUID = h.PodUID
			}
			return identity.ClaimNone
		}),
	}
	recs := []flow.Record{{Source: flow.Endpoint{CgroupID: 1, PID: 7}, Destination: flow.Endpoint{}}}
	e.Record(&recs[0])
	if gotUID != "uid-v1" || recs[0].Source.ContainerID != id {
		t.Fatalf("pod UID %q, container %q: want the process's", gotUID, recs[0].Source.ContainerID)
	}
}

// A record is early exactly when identity cannot confirm the observing
// side's pod yet, whichever the reason.
func TestRecordEarlyIsAPendingClaim(t *testing.T) {
	for claim, want := range map[identity.Claim]bool{
		identity.ClaimNone: false, identity.ClaimNamed: false,
		identity.ClaimUnknownPod: true, identity.ClaimUnlistedContainer: true,
	} {
		e := Enricher{
			Cgroups: cgroupsFunc(func(uint64) (cgroup.Container, bool) { return cgroup.Container{PodUID: "uid"}, true }),
			Identities: identitiesFunc(func(_ *flow.Endpoint, h identity.Hints) identity.Claim {
				if h.PodUID == "" {
					return identity.ClaimNone
				}
				return claim
			}),
		}
		r := flow.Record{Source: flow.Endpoint{CgroupID: 1}}
		if got := e.Record(&r); got != want {
			t.Errorf("claim %v: early %v, want %v", claim, got, want)
		}
	}
}
