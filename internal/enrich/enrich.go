// Package enrich names what the kernel reports by number. On the observing
// side of a record the socket's cgroup says which container and pod it
// belongs to; every address says which pod, Service, node or outside host
// it was when the connection began. It runs once per interval over the
// records conntable emits, before the join (package publish composes them
// and decides how long a record waits):
//
//	conntable.Flush ─▶ Enricher.Record ─▶ join ─▶ ring, hub
//	                     cgroup id ─▶ container id, pod UID   (Cgroups)
//	                     else pid ─▶ its v1 cgroups ─▶ same   (Processes)
//	                     address, pod UID, time ─▶ names       (Identities)
package enrich

import (
	"github.com/flowlens/flowlens/internal/cgroup"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/identity"
)

// Cgroups tells what a cgroup id stands for.
type Cgroups interface {
	Lookup(id uint64) (cgroup.Container, bool)
}

// Processes tells which container a process runs in, from its cgroups in
// every hierarchy. On cgroup v1 hosts kubelet's pod cgroups exist only in
// the v1 hierarchies, and the v2 cgroup a socket carries names nothing.
type Processes interface {
	Lookup(pid uint32) (cgroup.Container, bool)
}

// Identities names an endpoint from its address, and on the observing side
// from the pod and container its cgroup belongs to, as of the hinted time,
// and says whether it could confirm the cgroup's claim to a pod.
type Identities interface {
	Resolve(ep *flow.Endpoint, h identity.Hints) identity.Claim
}

// Enricher fills names on records in place. Any source may be nil: a plain
// Linux host has cgroups but no cluster.
type Enricher struct {
	Cgroups    Cgroups
	Processes  Processes
	Identities Identities
}

// Record names both endpoints of r. It reports whether r came early: the
// observing side's cgroup names a pod that identity cannot confirm yet (the
// pod, or its container's status, has not arrived), so r is named by
// address alone for now.
func (e Enricher) Record(r *flow.Record) (early bool) {
	early = e.endpoint(&r.Source, identity.Hints{At: r.ConnStart})
	return e.endpoint(&r.Destination, identity.Hints{At: r.ConnStart, Destination: true}) || early
}

func (e Enricher) endpoint(ep *flow.Endpoint, h identity.Hints) (early bool) {
	var c cgroup.Container
	if ep.CgroupID != 0 && e.Cgroups != nil {
		c, _ = e.Cgroups.Lookup(ep.CgroupID)
	}
	if c.PodUID == "" && ep.PID != 0 && e.Processes != nil {
		if pc, ok := e.Processes.Lookup(ep.PID); ok && (pc.PodUID != "" || c.ContainerID == "") {
			c = pc
		}
	}
	ep.ContainerID = c.ContainerID
	if e.Identities == nil {
		return false
	}
	h.PodUID, h.ContainerID = c.PodUID, c.ContainerID
	return e.Identities.Resolve(ep, h).Pending()
}
