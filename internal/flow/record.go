package flow

import (
	"net/netip"
	"time"
)

// Protocol is the L4 protocol of a flow.
type Protocol string

const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
)

// Verdict summarises how a flow's interval ended.
type Verdict string

const (
	VerdictEstablished Verdict = "established" // open at the end of the interval
	VerdictClosed      Verdict = "closed"      // closed without a reset
	VerdictReset       Verdict = "reset"       // closed, and a reset was sent or received
	VerdictRefused     Verdict = "refused"     // connect answered by RST
	VerdictTimeout     Verdict = "timeout"     // connect never answered (kernel timeout or caller gave up)
	VerdictUnreachable Verdict = "unreachable" // connect failed with host/net unreachable
	VerdictFailed      Verdict = "failed"      // connect failed for another reason
	VerdictAnswered    Verdict = "answered"    // UDP: datagrams went both ways
	VerdictUnanswered  Verdict = "unanswered"  // UDP: datagrams only from the source
)

// Verdicts lists every verdict, for validating filters.
var Verdicts = []Verdict{VerdictEstablished, VerdictClosed, VerdictReset, VerdictRefused,
	VerdictTimeout, VerdictUnreachable, VerdictFailed, VerdictAnswered, VerdictUnanswered}

// Kind says what an endpoint is, as far as identity could tell. It is empty
// where no cluster metadata is configured (a plain Linux host).
type Kind string

const (
	KindPod       Kind = "pod"       // a pod, including a host-network one told apart by its cgroup
	KindService   Kind = "service"   // a Service address whose backend is not known
	KindNode      Kind = "node"      // a node's own address
	KindAPIServer Kind = "apiserver" // the Kubernetes API server
	KindWorld     Kind = "world"     // outside the cluster
)

// Kinds lists every kind, for validating filters.
var Kinds = []Kind{KindPod, KindService, KindNode, KindAPIServer, KindWorld}

// Workload is the controller a pod belongs to, followed up the owner chain:
// a ReplicaSet's Deployment, a Job's CronJob.
type Workload struct {
	Kind string `json:"kind"` // Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod
	Name string `json:"name"`
}

// ServiceRef names the Service an endpoint's address belongs to.
type ServiceRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// Endpoint is one end of a flow. Process fields are set on the side the
// record was observed from; the other side carries its address only until a
// later stage (the hub) joins both observations. Cluster fields are filled
// by identity from the address and, on the observing side, the cgroup.
type Endpoint struct {
	IP          netip.Addr `json:"ip"`
	Port        uint16     `json:"port"`
	Netns       uint32     `json:"netns,omitempty"`
	PID         uint32     `json:"pid,omitempty"`
	Command     string     `json:"command,omitempty"`
	CgroupID    uint64     `json:"cgroup_id,omitempty"`
	ContainerID string     `json:"container_id,omitempty"`

	Kind        Kind              `json:"kind,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
	Pod         string            `json:"pod,omitempty"`
	Container   string            `json:"container,omitempty"`
	Workload    *Workload         `json:"workload,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	NodeName    string            `json:"node_name,omitempty"`    // the node the pod runs on, or the node itself
	HostNetwork bool              `json:"host_network,omitempty"` // a pod sharing its node's address
	Service     *ServiceRef       `json:"service,omitempty"`      // the Service address the source connected to
	// DNSName is the name the observing side resolved this address from,
	// when its DNS answer was seen: how external hosts are named.
	DNSName string `json:"dns_name,omitempty"`
}

// RTT is a minimum, average and maximum in microseconds: of the smoothed
// round-trip time over the sockets of a record in one interval, or of
// their connect latency.
type RTT struct {
	MinMicros uint32 `json:"min_us"`
	AvgMicros uint32 `json:"avg_us"`
	MaxMicros uint32 `json:"max_us"`
}

// Record is one flow for one interval: a single connection (or UDP
// conversation) as seen from one side, with the deltas of that interval.
// Source is always the side that opened the connection.
type Record struct {
	Time      time.Time `json:"time"`       // end of the interval
	Start     time.Time `json:"start"`      // start of the interval
	Node      string    `json:"node"`       // host that observed it
	Observer  string    `json:"observer"`   // "client" or "server": the socket that saw it
	Protocol  Protocol  `json:"protocol"`   // tcp or udp
	IPVersion int       `json:"ip_version"` // 4 or 6
	Verdict   Verdict   `json:"verdict"`
	// ConnStart is when the connection (or UDP conversation) was first
	// seen by the kernel: identity names the endpoints as they were then,
	// so an address reused by another pod later is not misattributed.
	ConnStart time.Time `json:"connection_start"`

	Source      Endpoint `json:"source"`
	Destination Endpoint `json:"destination"`

	// TCP connection lifecycle in this interval.
	Opened      uint32 `json:"connections_opened,omitempty"`
	Closed      uint32 `json:"connections_closed,omitempty"`
	Refused     uint32 `json:"connections_refused,omitempty"`
	TimedOut    uint32 `json:"connections_timed_out,omitempty"`
	FailedOther uint32 `json:"connections_failed_other,omitempty"`
	ResetsBySrc uint32 `json:"resets_from_source,omitempty"`
	ResetsByDst uint32 `json:"resets_from_destination,omitempty"`
	Retransmits uint32 `json:"retransmits,omitempty"` // segments the observer retransmitted
	RTT         *RTT   `json:"rtt,omitempty"`
	// ConnectLatency is how long the connections opened in the interval
	// took from connect() to established (client side; min/avg/max, µs),
	// and SYNRetrans how many SYNs they, and the connects that failed,
	// had to send again: the signature of a drop or a full queue.
	ConnectLatency *RTT   `json:"connect_latency,omitempty"`
	SYNRetrans     uint32 `json:"syn_retransmits,omitempty"`
	// Drops are the packets of this flow the kernel dropped, by its
	// reason (snake_case skb_drop_reason names: "netfilter_drop"), on
	// either host side, counted in the interval they were matched to the
	// flow: a failed connect's dropped SYNs with its failure.
	Drops map[string]uint64 `json:"drops,omitempty"`

	// Traffic in this interval, by direction.
	BytesToDst     uint64 `json:"bytes_to_destination"`
	BytesToSrc     uint64 `json:"bytes_to_source"`
	SegmentsToDst  uint32 `json:"segments_to_destination,omitempty"` // TCP
	SegmentsToSrc  uint32 `json:"segments_to_source,omitempty"`
	DatagramsToDst uint32 `json:"datagrams_to_destination,omitempty"` // UDP
	DatagramsToSrc uint32 `json:"datagrams_to_source,omitempty"`
	RetransToDst   uint32 `json:"retransmits_to_destination,omitempty"` // TCP segments sent again
	RetransToSrc   uint32 `json:"retransmits_to_source,omitempty"`

	// Requests are the application requests of this flow that completed
	// in the interval, as the observing socket saw them.
	Requests []Requests `json:"requests,omitempty"`
}

// Observing returns the endpoint whose socket made the record: the
// destination of a server's record, else the source.
func (r *Record) Observing() *Endpoint {
	if r.Observer == RoleServer.String() {
		return &r.Destination
	}
	return &r.Source
}
