// Package cluster is the end-to-end harness: a small Kubernetes cluster on one
// machine, real where flowlens looks (kernel sockets, netns, cgroups,
// conntrack, the API server) and simulated where it does not (no kubelet,
// no container runtime, no controllers).
//
// # Control plane
//
// StartControlPlane runs a real etcd and kube-apiserver (built by
// hack/kube/build.sh from the versions pinned in hack/kube/go.mod, cached in
// ${FLOWLENS_CACHE:-/var/cache/flowlens}/kube/<version>/bin) on free
// 127.0.0.1 ports, with a CA made for the test, RBAC authorization, the
// ServiceAccount admission plugin off and no endpoint reconciler. It writes
// an admin kubeconfig (client certificate in system:masters) and can issue
// kubeconfigs for other identities: UserKubeconfig (client certificate,
// e.g. for "system:serviceaccount:flowlens:flowlens") and
// ServiceAccountKubeconfig (a bound token from the TokenRequest API).
// Stop and Start stop and restart the apiserver alone on the same port;
// etcd keeps the data.
//
// Run hack/kube/build.sh once before the tests: a cold build of
// kube-apiserver takes several minutes, longer than go test's default
// timeout allows for comfort. Later runs find the binaries and start the
// control plane in a few seconds.
//
// # Network
//
// NewNetwork, AddNode and AddPod build this (addresses are examples; every
// netns, link and cgroup name starts with the Network's Prefix, a fresh
// "fl<4 hex>-" per Network):
//
//	                  netns <p>underlay
//	            +--- bridge <p>ul (no address) ---+
//	            | <p>u1                     <p>u2 |
//	            | veth                       veth |
//	netns <p>node-a (node "a")         netns <p>node-b (node "b")
//	  <p>eth0 172.30.0.11/24              <p>eth0 172.30.0.12/24
//	  10.244.2.0/24 via 172.30.0.12       10.244.1.0/24 via 172.30.0.11
//	  10.96.0.0/16 dev <p>br              10.96.0.0/16 dev <p>br
//	  ip_forward=1; iptables nat          ip_forward=1; iptables nat
//	  KUBE-SERVICES -> SVC -> SEP (DNAT)  KUBE-SERVICES -> SVC -> SEP (DNAT)
//	  bridge <p>br 10.244.1.1/24          bridge <p>br 10.244.2.1/24
//	     | <p>v1       | <p>v2               | <p>v3
//	netns <p>pod1-..  netns <p>pod2-..    netns <p>pod3-..
//	  <p>eth0           <p>eth0             <p>eth0
//	  10.244.1.10/32    10.244.1.11/32      10.244.2.20/32
//	  default via 10.244.1.1                default via 10.244.2.1
//
//	(<p> is the Network's Prefix; no default route, no link to the host)
//
// No namespace has a link to the host namespace or a default route, so
// nothing leaves the test network, and every veth is created with both
// ends already inside it. Pods hold their address as a /32 with the
// bridge address as gateway, so all pod traffic, even between pods of one
// node, is routed by the node namespace: kube-proxy-style DNAT in the
// node's nat PREROUTING (pods) and OUTPUT (host-network processes) chains
// sees every connection, and conntrack undoes it on the reply, without
// relying on br_netfilter (which is turned off in node namespaces where the
// kernel has it, so that every kernel takes the same path). IPv6 is off in
// every namespace to keep captures free of router solicitations.
//
// AddHostNetworkPod makes a pod that shares its node's netns and address.
// AddServiceDNAT (on Network, because it programs every node, including
// nodes added later) installs a ClusterIP with random or round-robin
// (`-m statistic --mode nth`) backend choice, hairpin masquerade, and
// REJECT when there are no backends.
//
// # Processes and cgroups
//
// Pod.Command returns an exec.Cmd that runs `nsenter --net=<pod netns> --
// prog args`, started by clone3 directly in the pod's container cgroup
// (SysProcAttr.UseCgroupFD). nsenter exec()s the program under the same pid,
// so the program's sockets carry the pod's netns and cgroup from its first
// instruction. The cgroup is kubelet-shaped, below a per-run root in the
// cgroup v2 mount found in /proc/self/mountinfo:
//
//	<cgroup2>/<prefix>kubelet/kubepods/besteffort/pod<uid>/<64-hex id>           (CgroupFS)
//	<cgroup2>/<prefix>kubelet/kubepods.slice/kubepods-besteffort.slice/
//	    kubepods-besteffort-pod<uid with _>.slice/cri-containerd-<id>.scope      (Systemd)
//
// <cgroup2>/<prefix>kubelet is what a kubelet's --cgroup-root would be
// (Network.KubeletCgroupRoot): flowlens must be told it
// (--kubelet-cgroup-root), since it reads pods only directly below it.
// PodOptions.CgroupPath puts a container cgroup anywhere else below it, for
// cgroups that must claim no pod. Node.Command runs a process in the node
// netns, in a per-node cgroup outside kubepods (like a system daemon).
//
// # API objects
//
// No controller runs, so helpers create what they would have: CreateNamespace
// (fresh names), CreateNodeObject, CreateDeployment (with its ReplicaSet),
// CreateStatefulSet, CreateDaemonSet, CreateCronJob (with a Job), PodObject
// (ownerReferences), Node.RunPod and Node.RunHostNetworkPod (create the Pod,
// build the simulated pod with the server-assigned UID, then write Running
// status with podIP/hostIP and a containerID matching the cgroup),
// CreateService, CreateEndpointSlice and Network.RunService (Service +
// EndpointSlice + DNAT).
//
// # Cleanup
//
// Everything is removed at t.Cleanup, and also on SIGINT/SIGTERM: pod and
// node processes are killed through cgroup.kill of the harness's own cgroups
// (only processes it started live there), etcd and kube-apiserver by pid,
// then namespaces (with their links and iptables rules) and cgroups are
// deleted. Children get Pdeathsig=SIGKILL, so a hard kill or a test timeout
// leaves no process; the netns and empty cgroups it leaves are swept by the
// next run, which finds the dead owner's prefix under /run/flowlens-e2e.
package cluster
