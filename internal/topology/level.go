package topology

import (
	"fmt"
	"net/netip"

	"github.com/flowlens/flowlens/internal/flow"
)

// Level is how coarsely a graph names its endpoints.
type Level string

const (
	LevelPod       Level = "pod"
	LevelWorkload  Level = "workload"
	LevelService   Level = "service"
	LevelNamespace Level = "namespace"
	LevelNode      Level = "node"
	LevelExternal  Level = "external"
	LevelProcess   Level = "process"
	LevelContainer Level = "container"
)

// Levels lists every level, in the order the API documents them.
var Levels = []Level{LevelPod, LevelWorkload, LevelService, LevelNamespace, LevelNode,
	LevelExternal, LevelProcess, LevelContainer}

// ParseLevel reads a level's name as the API and the CLI spell it.
func ParseLevel(s string) (Level, error) {
	for _, l := range Levels {
		if string(l) == s {
			return l, nil
		}
	}
	return "", fmt.Errorf("unknown level %q: want one of pod, workload, service, namespace, node, external, process, container", s)
}

// Node kinds: what a graph node stands for.
const (
	NodePod       = "pod"
	NodeWorkload  = "workload"
	NodeService   = "service"
	NodeNamespace = "namespace"
	NodeHost      = "node"      // a Kubernetes node, or a plain host
	NodeExternal  = "external"  // named by nothing but its address
	NodeProcess   = "process"   // a command on a host (or in a container)
	NodeContainer = "container" // a container on a host
	NodeAPIServer = "apiserver"
)

// Node is one vertex of a graph. Its ID is made of what it names only, so
// the same thing has the same ID in every window and every query.
type Node struct {
	ID        string `json:"id"`                  // e.g. "workload:shop/Deployment/api"
	Kind      string `json:"kind"`                // pod, workload, service, namespace, node, external, process, container, apiserver
	Namespace string `json:"namespace,omitempty"` // Kubernetes namespace, where it has one
	Name      string `json:"name"`                // e.g. "Deployment/api", "10.0.0.9", "host-1/curl"
}

// ident is everything any level may name an endpoint by: the finest
// identity the store keeps. It is comparable, so it is its own map key.
type ident struct {
	kind         flow.Kind
	namespace    string
	pod          string
	workloadKind string
	workloadName string
	serviceNS    string // destinations only: the Service the client dialed
	serviceName  string
	nodeName     string // the Kubernetes node, or the plain host an observed process runs on
	command      string // observed processes only (and their peers named by the join)
	containerID  string
	addr         netip.Addr // only when nothing else names the endpoint
	dnsName      string     // with addr: the name the observing side resolved it from
}

// identOf keeps what names ep. host is the node that observed the record,
// where a plain host's processes run. A pid is not kept: processes are
// named by command, which survives restarts and keeps the graph small.
func identOf(ep *flow.Endpoint, host string, destination bool) ident {
	id := ident{kind: ep.Kind, namespace: ep.Namespace, pod: ep.Pod, nodeName: ep.NodeName,
		command: ep.Command, containerID: ep.ContainerID}
	if ep.Workload != nil {
		id.workloadKind, id.workloadName = ep.Workload.Kind, ep.Workload.Name
	}
	if destination && ep.Service != nil {
		id.serviceNS, id.serviceName = ep.Service.Namespace, ep.Service.Name
	}
	local := ep.Command != "" || ep.PID != 0 || ep.ContainerID != ""
	if id.nodeName == "" && local {
		id.nodeName = host
	}
	if ep.Kind == flow.KindWorld || ep.Kind == "" && !local {
		id.addr, id.dnsName = ep.IP, ep.DNSName
	}
	return id
}

// name is the graph node ident stands for at level l. Each level names an
// endpoint by its own rule when the endpoint has that name, and otherwise
// by the most specific name the endpoint has (fallback).
func (id *ident) name(l Level) Node {
	switch l {
	case LevelWorkload, LevelExternal:
		if id.workloadName != "" {
			return id.workload()
		}
	case LevelService:
		if id.serviceName != "" {
			return Node{ID: "service:" + id.serviceNS + "/" + id.serviceName, Kind: NodeService,
				Namespace: id.serviceNS, Name: id.serviceName}
		}
		if id.workloadName != "" {
			return id.workload()
		}
	case LevelNamespace:
		if id.namespace != "" && id.kind != flow.KindAPIServer {
			return Node{ID: "namespace:" + id.namespace, Kind: NodeNamespace, Name: id.namespace}
		}
	case LevelNode:
		if id.nodeName != "" {
			return Node{ID: "node:" + id.nodeName, Kind: NodeHost, Name: id.nodeName}
		}
	case LevelContainer:
		if id.containerID != "" {
			return Node{ID: "container:" + id.nodeName + "/" + id.containerID, Kind: NodeContainer,
				Namespace: id.namespace, Name: id.nodeName + "/" + id.containerID}
		}
		if id.command != "" && id.pod == "" {
			return Node{ID: "node:" + id.nodeName, Kind: NodeHost, Name: id.nodeName}
		}
	case LevelProcess:
		if id.command != "" {
			return id.process()
		}
	}
	return id.fallback()
}

func (id *ident) workload() Node {
	name := id.workloadKind + "/" + id.workloadName
	return Node{ID: "workload:" + id.namespace + "/" + name, Kind: NodeWorkload, Namespace: id.namespace, Name: name}
}

func (id *ident) process() Node {
	name := id.nodeName + "/" + id.command
	if id.containerID != "" {
		name = id.nodeName + "/" + id.containerID + "/" + id.command
	}
	return Node{ID: "process:" + name, Kind: NodeProcess, Namespace: id.namespace, Name: name}
}

// fallback is the most specific name an endpoint has: its pod, the
// Service whose backend is unknown, the node, the API server, the
// process, and last the DNS name its address was resolved from, or the
// address.
func (id *ident) fallback() Node {
	switch {
	case id.pod != "":
		return Node{ID: "pod:" + id.namespace + "/" + id.pod, Kind: NodePod, Namespace: id.namespace, Name: id.pod}
	case id.kind == flow.KindAPIServer:
		return Node{ID: "apiserver", Kind: NodeAPIServer, Name: "apiserver"}
	case id.serviceName != "":
		return Node{ID: "service:" + id.serviceNS + "/" + id.serviceName, Kind: NodeService,
			Namespace: id.serviceNS, Name: id.serviceName}
	case id.command != "":
		return id.process()
	case id.nodeName != "":
		return Node{ID: "node:" + id.nodeName, Kind: NodeHost, Name: id.nodeName}
	case id.dnsName != "":
		// One node per name, whichever of its addresses was dialed.
		return Node{ID: "external:" + id.dnsName, Kind: NodeExternal, Name: id.dnsName}
	case id.addr.IsValid():
		return Node{ID: "external:" + id.addr.String(), Kind: NodeExternal, Name: id.addr.String()}
	}
	return Node{ID: "unknown", Kind: NodeExternal, Name: "unknown"}
}

// external reports whether the endpoint is named by its address alone.
func (id *ident) external() bool { return id.addr.IsValid() }
