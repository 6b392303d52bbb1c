package identity

import (
	"net/netip"
	"time"
)

// Config bounds the index.
type Config struct {
	// DeletedGrace is how long deleted pods, and addresses that left their
	// holder, still resolve: records are named after their connection's
	// start, up to a few intervals after it. Default 2m.
	DeletedGrace time.Duration
	// MaxPods caps pods kept, including deleted ones within grace. Beyond
	// it the oldest deleted pods are dropped early (and counted); live
	// pods are never dropped, they are the truth. Default 65536.
	MaxPods int
}

const (
	defaultDeletedGrace = 2 * time.Minute
	defaultMaxPods      = 65536
	// maxHolders bounds the holders remembered per address (and per node
	// port). An address churning faster than this within DeletedGrace
	// loses its oldest holders first; records that old are rare.
	maxHolders = 8
	// maxOwnerDepth bounds the controller chain walk, so that a cycle of
	// owner references (invalid, but possible in data) cannot loop.
	maxOwnerDepth = 4
)

// OwnerRef is the controller ownerReference of an object, by kind and name
// (the namespace is the object's own).
type OwnerRef struct {
	Kind string
	Name string
}

// Pod is what identity keeps of a pod.
type Pod struct {
	UID       string
	Namespace string
	Name      string
	// IPs are the pod's addresses (status.podIPs). They are ignored for
	// host-network pods, whose addresses are their node's.
	IPs         []netip.Addr
	HostNetwork bool
	NodeName    string
	Labels      map[string]string
	Controller  *OwnerRef
	// Containers maps container ids to container names, from the pod's
	// (init, ephemeral) container statuses: a cgroup names this pod only
	// through one of them. A runtime prefix such as "containerd://" is
	// stripped on upsert, so status ids can be passed as they are.
	Containers map[string]string
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Port     uint16
	NodePort uint16 // 0 unless the Service is NodePort or LoadBalancer
	// Protocol is informational: an endpoint carries no protocol, and node
	// ports are allocated from one range for all protocols, so a node
	// port number alone names its Service.
	Protocol string
}

// Service is what identity keeps of a Service.
type Service struct {
	Namespace  string
	Name       string
	ClusterIPs []netip.Addr // none for headless and ExternalName Services
	Ports      []ServicePort
}

// Node is what identity keeps of a Node.
type Node struct {
	Name  string
	Addrs []netip.Addr // InternalIP and ExternalIP addresses
}

// Owner is an edge of the controller chain: a ReplicaSet owned by a
// Deployment, a Job owned by a CronJob. Controller is nil for an owner
// without a controller of its own.
type Owner struct {
	Kind       string
	Namespace  string
	Name       string
	Controller *OwnerRef
}

// Stats counts what the index holds.
type Stats struct {
	Pods        int    // live pods
	PodAddrs    int    // addresses of live pods, host-network ones excluded: what names a pod by address
	DeletedPods int    // deleted pods still resolvable within grace
	Services    int    // live Services
	Nodes       int    // live Nodes
	Owners      int    // owners fed by UpsertOwner and not deleted
	Dropped     uint64 // deleted pods dropped before their grace ended, by MaxPods
}
