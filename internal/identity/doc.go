// Package identity names the endpoints of flow records: which pod, Service,
// node or API server an address (and, on the observing side, a cgroup)
// belonged to when the connection started.
//
// It is pure: no clock of its own, no I/O, no client-go. The Kubernetes
// watcher (package k8smeta) feeds it pods, Services, Nodes and owners with
// the time each watch event arrived; the agent calls Resolve on each
// record's endpoints with the record's ConnStart (Hints). An Index is safe for
// concurrent use.
//
// # Resolve precedence
//
// The first rule that matches wins:
//
//  1. Cgroup. A pod UID from the socket's cgroup names that pod, even one
//     deleted within DeletedGrace, if the pod's status lists the cgroup's
//     container id (or the cgroup is the pod's own, with no container).
//     This is the only way to tell a host-network pod (HostNetwork true)
//     from its node, and the only way to name the container. A claim the
//     index cannot confirm (Resolve's Claim: the pod, or its container
//     status, has not arrived) falls through to the address rules, and the
//     caller may wait for it (package enrich does): the cgroup path is
//     only as trustworthy as who could create it, and the container status
//     comes from the kubelet that started it.
//  2. API server. ip:port is where the agent reaches the API server
//     (SetAPIServer), an endpoint of Service default/kubernetes
//     (SetAPIServerEndpoints), or a ClusterIP:port of that Service (then
//     Service is default/kubernetes too, also when that ClusterIP is where
//     the agent itself reaches it, as in a pod): Kind "apiserver".
//  3. Service, for a destination only (Hints.Destination): ip is a Service
//     ClusterIP at that time, or ip is a node address and port a NodePort
//     of a Service: Kind "service", Service and Namespace set (and NodeName
//     for a node port). A source is never a ClusterIP, and a node's
//     ephemeral port may equal a node port.
//  4. Pod. ip was held by a pod (not host-network) at that time: Kind
//     "pod", Namespace, Pod, Labels (a copy), NodeName, Workload.
//  5. Node. ip is a node address: Kind "node", NodeName. A host-network pod
//     seen from the other end lands here: by address alone it is its node.
//  6. Anything else: Kind "world".
//
// The workload follows the controller chain as far as owners are known:
// Pod -> ReplicaSet -> Deployment gives Deployment; a ReplicaSet whose owner
// is unknown gives ReplicaSet; Job -> CronJob gives CronJob, else Job;
// StatefulSet and DaemonSet (or any other controller) name themselves; a
// pod without a controller is its own workload (Kind "Pod").
//
// # Time
//
// Pod addresses are reused: a pod is deleted and a second later its address
// belongs to a new pod, while records of connections to the old one are
// still being resolved. So each address keeps a short history of holders,
// each over [from, to) in watch receipt time; to stays open while the
// holder has the address, and closes when the pod is deleted, when an
// update no longer lists the address (the watcher lists none for a pod
// that Succeeded or Failed: its address is free again although its status
// keeps it), or when another pod claims the address (the old holder's
// release was not seen yet). The holder at time t is the first holder, ordered by from,
// whose to is after t. Therefore:
//
//   - connections started before a deletion stay with the deleted pod;
//   - the gap between one holder's release and the next holder's claim
//     belongs to the next holder, because the watch reports a new pod
//     slightly after connections to it may already have started;
//   - a time before the first known claim belongs to the first holder.
//
// ClusterIPs, node ports and node addresses keep the same kind of history.
// Each history is bounded (8 holders per address); Expire drops holders
// whose interval ended more than DeletedGrace ago, and deleted pods past
// their grace. MaxPods bounds pods kept, dropping the oldest deleted pods
// first (counted in Stats.Dropped); live pods are never dropped.
//
// Owners (ReplicaSet -> Deployment, Job -> CronJob) have no history: an
// owner deleted while pods in the index still refer to it is kept until the
// last of them is gone, so late records of a rollout's old pods still name
// their Deployment.
package identity
