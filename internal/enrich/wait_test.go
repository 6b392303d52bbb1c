package enrich

import (
	"net/netip"
	"testing"

	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/identity"
)

// lagging is identity whose watch has delivered only the pods in known.
type lagging struct{ known map[string]string }

func (l *lagging) Resolve(ep *flow.Endpoint, h identity.Hints) {
	ep.Pod = l.known[h.PodUID]
}

func podRecord(port uint16, cgroupID uint64) flow.Record {
	return flow.Record{Observer: "client",
		Source:      flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), Port: port, CgroupID: cgroupID},
		Destination: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Port: 80}}
}

func newWaiter(l *lagging, maxWait, maxHeld int) *Waiter {
	uids := map[uint64]string{1: "uid-old", 2: "uid-new"}
	return &Waiter{MaxWait: maxWait, MaxHeld: maxHeld, Names: Enricher{
		Cgroups: cgroupsFunc(func(id uint64) (cgroup.Container, bool) {
			return cgroup.Container{PodUID: uids[id]}, uids[id] != ""
		}),
		Identities: l,
	}}
}

func TestWaiterHoldsRecordsUntilTheirPodArrives(t *testing.T) {
	l := &lagging{known: map[string]string{"uid-old": "old"}}
	w := newWaiter(l, 3, 0)
	out := w.Records([]flow.Record{podRecord(1, 1), podRecord(2, 2), podRecord(3, 0)})
	if len(out) != 2 || out[0].Source.Pod != "old" || out[1].Source.Port != 3 {
		t.Fatalf("first interval released %+v; want the known pod's and the host's", out)
	}
	if s := w.Stats(); s.Held != 1 {
		t.Fatalf("held %d, want 1", s.Held)
	}
	l.known["uid-new"] = "new" // the watch catches up
	out = w.Records([]flow.Record{podRecord(4, 1)})
	if len(out) != 2 || out[0].Source.Port != 2 || out[0].Source.Pod != "new" || out[1].Source.Port != 4 {
		t.Fatalf("second interval released %+v; want the late record first, named", out)
	}
	if s := w.Stats(); s.NamedLate != 1 || s.Unnamed != 0 || s.Held != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestWaiterGivesUpAfterMaxWait(t *testing.T) {
	w := newWaiter(&lagging{known: map[string]string{}}, 2, 0)
	for i, want := range []int{0, 0, 1} {
		var in []flow.Record
		if i == 0 {
			in = []flow.Record{podRecord(1, 2)}
		}
		if out := w.Records(in); len(out) != want {
			t.Fatalf("interval %d released %d, want %d", i, len(out), want)
		}
	}
	if s := w.Stats(); s.Unnamed != 1 || s.Held != 0 {
		t.Errorf("stats %+v, want 1 unnamed, none held", s)
	}
}

func TestWaiterIsBounded(t *testing.T) {
	w := newWaiter(&lagging{known: map[string]string{}}, 3, 2)
	out := w.Records([]flow.Record{podRecord(1, 2), podRecord(2, 2), podRecord(3, 2)})
	if len(out) != 1 || out[0].Source.Port != 3 {
		t.Fatalf("released %+v, want only the one past the bound", out)
	}
	if s := w.Stats(); s.Held != 2 || s.Overflow != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestWaiterWithoutIdentityHoldsNothing(t *testing.T) {
	w := &Waiter{Names: Enricher{Cgroups: cgroupsFunc(func(uint64) (cgroup.Container, bool) {
		return cgroup.Container{PodUID: "uid"}, true
	})}}
	if out := w.Records([]flow.Record{podRecord(1, 1)}); len(out) != 1 {
		t.Fatalf("released %d, want 1", len(out))
	}
}
