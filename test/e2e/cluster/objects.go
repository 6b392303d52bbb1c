package cluster

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// No controller runs in the test cluster, so these helpers create what the
// controllers and kubelet would have: ReplicaSets for Deployments, Jobs for
// CronJobs, Pods with ownerReferences, pod and node status, EndpointSlices.

// testImage is never pulled; it only has to pass validation.
const testImage = "flowlens.invalid/e2e:latest"

// CreateNamespace creates a namespace with a fresh name, base-<5 hex>, and
// returns the name. Namespaces are never deleted: without the namespace
// controller they would stay Terminating forever, and etcd is per test.
func CreateNamespace(t testing.TB, c kubernetes.Interface, base string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%s", base, randomHex(3)[:5])
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("cluster: create namespace %s: %v", name, err)
	}
	return name
}

// CreateNodeObject creates the Node object of a simulated node: Ready, with
// its underlay address as InternalIP and its pod CIDR.
func CreateNodeObject(t testing.TB, c kubernetes.Interface, node *Node) *corev1.Node {
	t.Helper()
	ctx := context.Background()
	obj := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   node.Name,
			Labels: map[string]string{"kubernetes.io/hostname": node.Name, "kubernetes.io/os": "linux"},
		},
		Spec: corev1.NodeSpec{PodCIDR: node.PodCIDR.String(), PodCIDRs: []string{node.PodCIDR.String()}},
	}
	created, err := c.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("cluster: create node %s: %v", node.Name, err)
	}
	now := metav1.Now()
	created.Status = corev1.NodeStatus{
		Phase: corev1.NodeRunning,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: node.IP.String()},
			{Type: corev1.NodeHostName, Address: node.Name},
		},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: KubeVersion, OperatingSystem: "linux", Architecture: "amd64"},
	}
	updated, err := c.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("cluster: node %s status: %v", node.Name, err)
	}
	return updated
}

func podTemplate(labels map[string]string, restart corev1.RestartPolicy) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{
			RestartPolicy: restart,
			Containers:    []corev1.Container{{Name: "main", Image: testImage}},
		},
	}
}

// CreateDeployment creates a Deployment and the ReplicaSet it would own
// (named <name>-<pod-template-hash>). Pods of the Deployment are owned by
// the ReplicaSet: PodObject(ns, podName, nil, rs).
func CreateDeployment(t testing.TB, c kubernetes.Interface, ns, name string, labels map[string]string) (*appsv1.Deployment, *appsv1.ReplicaSet) {
	t.Helper()
	ctx := context.Background()
	replicas := int32(1)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels, corev1.RestartPolicyAlways),
		},
	}
	d, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("cluster: create deployment %s/%s: %v", ns, name, err)
	}
	hash := randomHex(5)[:10]
	rsLabels := maps.Clone(labels)
	rsLabels["pod-template-hash"] = hash
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name + "-" + hash, Labels: rsLabels,
			OwnerReferences: []metav1.OwnerReference{ControllerRef(d)},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: rsLabels},
			Template: podTemplate(rsLabels, corev1.RestartPolicyAlways),
		},
	}
	rs, err = c.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("cluster: create replicaset for %s/%s: %v", ns, name, err)
	}
	return d, rs
}

// CreateStatefulSet creates a StatefulSet; its pods are owned by it directly.
func CreateStatefulSet(t testing.TB, c kubernetes.Interface, ns, name string, labels map[string]string) *appsv1.StatefulSet {
	t.Helper()
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template:    podTemplate(labels, corev1.RestartPolicyAlways),
		},
	}
	s, err := c.AppsV1().StatefulSets(ns).Create(context.Background(), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("cluster: create statefulset %s/%s: %v", ns, name, err)
	}
	return s
}

// CreateDaemonSet creates a DaemonSet; its pods are owned by it directly.
func CreateDaemonSet(t testing.TB, c kubernetes.Interface, ns, name string, labels map[string]string) *appsv1.DaemonSet {
	t.Helper()
	d := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels, corev1.RestartPolicyAlways),
		},
	}
	d, err := c.AppsV1().DaemonSets(ns).Create(context.Background(), d, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("cluster: create daemonset %s/%s: %v", ns, name, err)
	}
	return d
}

// CreateCronJob creates a CronJob and one Job it owns (named
// <name>-<scheduled minute>, as the CronJob controller names them). Pods of
// the run are owned by the Job.
func CreateCronJob(t testing.TB, c kubernetes.Interface, ns, name string, labels map[string]string) (*batchv1.CronJob, *batchv1.Job) {
	t.Helper()
	ctx := context.Background()
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: batchv1.CronJobSpec{
			Schedule: "*/5 * * * *",
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       batchv1.JobSpec{Template: podTemplate(labels, corev1.RestartPolicyOnFailure)},
			},
		},
	}
	cj, err := c.BatchV1().CronJobs(ns).Create(ctx, cj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("cluster: create cronjob %s/%s: %v", ns, name, err)
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: fmt.Sprintf("%s-%d", name, time.Now().Unix()/60), Labels: labels,
			OwnerReferences: []metav1.OwnerReference{ControllerRef(cj)},
		},
		Spec: batchv1.JobSpec{Template: podTemplate(labels, corev1.RestartPolicyOnFailure)},
	}
	job, err = c.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("cluster: create job for cronjob %s/%s: %v", ns, name, err)
	}
	return cj, job
}

// ControllerRef is the ownerReference a controller puts on what it creates.
// owner must be one of the workload kinds the helpers above create.
func ControllerRef(owner metav1.Object) metav1.OwnerReference {
	var apiVersion, kind string
	switch owner.(type) {
	case *appsv1.Deployment:
		apiVersion, kind = "apps/v1", "Deployment"
	case *appsv1.ReplicaSet:
		apiVersion, kind = "apps/v1", "ReplicaSet"
	case *appsv1.StatefulSet:
		apiVersion, kind = "apps/v1", "StatefulSet"
	case *appsv1.DaemonSet:
		apiVersion, kind = "apps/v1", "DaemonSet"
	case *batchv1.CronJob:
		apiVersion, kind = "batch/v1", "CronJob"
	case *batchv1.Job:
		apiVersion, kind = "batch/v1", "Job"
	case *corev1.Service:
		apiVersion, kind = "v1", "Service"
	default:
		panic(fmt.Sprintf("cluster: ControllerRef: unsupported owner %T", owner))
	}
	yes := true
	return metav1.OwnerReference{
		APIVersion: apiVersion, Kind: kind, Name: owner.GetName(), UID: owner.GetUID(),
		Controller: &yes, BlockOwnerDeletion: &yes,
	}
}

// PodObject returns a Pod to pass to Node.RunPod. With an owner (a
// ReplicaSet, StatefulSet, DaemonSet or Job), the pod gets the owner's
// template labels and a controller ownerReference; with nil it is a bare pod.
func PodObject(ns, name string, labels map[string]string, owner metav1.Object) *corev1.Pod {
	all := map[string]string{}
	var refs []metav1.OwnerReference
	if owner != nil {
		switch o := owner.(type) {
		case *appsv1.ReplicaSet:
			maps.Copy(all, o.Spec.Template.Labels)
		case *appsv1.StatefulSet:
			maps.Copy(all, o.Spec.Template.Labels)
			all["statefulset.kubernetes.io/pod-name"] = name
		case *appsv1.DaemonSet:
			maps.Copy(all, o.Spec.Template.Labels)
		case *batchv1.Job:
			maps.Copy(all, o.Spec.Template.Labels)
		}
		refs = []metav1.OwnerReference{ControllerRef(owner)}
	}
	maps.Copy(all, labels)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: all, OwnerReferences: refs},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "main", Image: testImage}},
		},
	}
}

// RunPod creates obj in the API server, scheduled on this node, builds the
// simulated pod with the UID the server assigned, and writes the status a
// kubelet would: Running and Ready, podIP(s), hostIP(s), and a container
// status whose containerID ("containerd://<id>") matches the cgroup. The QoS
// class of the cgroup path follows the one the server computed, unless
// opts.QOS is set.
func (node *Node) RunPod(t testing.TB, c kubernetes.Interface, obj *corev1.Pod, ip netip.Addr, opts PodOptions) *Pod {
	t.Helper()
	return node.runPod(t, c, obj, ip, false, opts)
}

// RunHostNetworkPod is RunPod for a hostNetwork pod: it shares the node's
// network namespace and address.
func (node *Node) RunHostNetworkPod(t testing.TB, c kubernetes.Interface, obj *corev1.Pod, opts PodOptions) *Pod {
	t.Helper()
	return node.runPod(t, c, obj, node.IP, true, opts)
}

func (node *Node) runPod(t testing.TB, c kubernetes.Interface, obj *corev1.Pod, ip netip.Addr, hostNetwork bool, opts PodOptions) *Pod {
	t.Helper()
	ctx := context.Background()
	obj = obj.DeepCopy()
	obj.Spec.NodeName = node.Name
	obj.Spec.HostNetwork = hostNetwork
	if len(obj.Spec.Containers) == 0 {
		obj.Spec.Containers = []corev1.Container{{Name: "main", Image: testImage}}
	}
	if opts.ContainerName == "" {
		opts.ContainerName = obj.Spec.Containers[0].Name
	}
	created, err := c.CoreV1().Pods(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("cluster: create pod %s/%s: %v", obj.Namespace, obj.Name, err)
	}
	if opts.QOS == "" {
		opts.QOS = QOSClass(strings.ToLower(string(created.Status.QOSClass)))
	}
	p, err := node.addPod(created.Namespace, created.Name, created.UID, ip, hostNetwork, opts)
	if err != nil {
		t.Fatalf("cluster: pod %s/%s on %s: %v", obj.Namespace, obj.Name, node.Name, err)
	}

	now := metav1.Now()
	cond := func(typ corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: typ, Status: corev1.ConditionTrue, LastTransitionTime: now}
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers), cond(corev1.PodInitialized), cond(corev1.PodReady),
		cond(corev1.ContainersReady), cond(corev1.PodScheduled),
	}
	created.Status.HostIP = node.IP.String()
	created.Status.HostIPs = []corev1.HostIP{{IP: node.IP.String()}}
	created.Status.PodIP = ip.String()
	created.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	created.Status.StartTime = &now
	started := true
	for _, ctr := range created.Spec.Containers {
		st := corev1.ContainerStatus{
			Name: ctr.Name, Image: ctr.Image, ImageID: ctr.Image, Ready: true, Started: &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}
		// Only the first container is simulated; others get ids of their own
		// that no process uses.
		if ctr.Name == p.ContainerName {
			st.ContainerID = "containerd://" + p.ContainerID
		} else {
			st.ContainerID = "containerd://" + randomHex(32)
		}
		created.Status.ContainerStatuses = append(created.Status.ContainerStatuses, st)
	}
	p.Object, err = c.CoreV1().Pods(created.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("cluster: pod %s/%s status: %v", obj.Namespace, obj.Name, err)
	}
	return p
}

// CreateService creates a ClusterIP Service with the given cluster IP.
func CreateService(t testing.TB, c kubernetes.Interface, ns, name string, clusterIP netip.Addr, selector map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeClusterIP,
			ClusterIP:  clusterIP.String(),
			ClusterIPs: []string{clusterIP.String()},
			Selector:   selector,
			Ports:      ports,
		},
	}
	svc, err := c.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("cluster: create service %s/%s: %v", ns, name, err)
	}
	return svc
}

// CreateEndpointSlice creates the EndpointSlice the EndpointSlice controller
// would write for svc with the given ready backends.
func CreateEndpointSlice(t testing.TB, c kubernetes.Interface, svc *corev1.Service, pods ...*Pod) *discoveryv1.EndpointSlice {
	t.Helper()
	yes, no := true, false
	managedBy := "flowlens-e2e"
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: svc.Namespace,
			Name:      svc.Name + "-" + randomHex(3)[:5],
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svc.Name,
				discoveryv1.LabelManagedBy:   managedBy,
			},
			OwnerReferences: []metav1.OwnerReference{ControllerRef(svc)},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, sp := range svc.Spec.Ports {
		name, proto := sp.Name, sp.Protocol
		port := sp.TargetPort.IntVal
		if port == 0 {
			port = sp.Port
		}
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: &name, Protocol: &proto, Port: &port})
	}
	for _, p := range pods {
		nodeName := p.Node.Name
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{p.IP.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &yes, Serving: &yes, Terminating: &no},
			NodeName:   &nodeName,
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		})
	}
	es, err := c.DiscoveryV1().EndpointSlices(svc.Namespace).Create(context.Background(), es, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("cluster: create endpointslice for %s/%s: %v", svc.Namespace, svc.Name, err)
	}
	return es
}

// ServiceSpec is one single-port ClusterIP Service for Network.RunService.
type ServiceSpec struct {
	Namespace, Name string
	ClusterIP       netip.Addr
	Protocol        corev1.Protocol // default TCP
	Port            uint16
	TargetPort      uint16 // default Port
	Mode            LBMode
	// Backends are the ready endpoints; their labels are not checked
	// against Selector (no controller reads it).
	Backends []*Pod
	Selector map[string]string
}

// RunService creates the Service and its EndpointSlice in the API server and
// the matching DNAT rules in every node.
func (n *Network) RunService(t testing.TB, c kubernetes.Interface, s ServiceSpec) *corev1.Service {
	t.Helper()
	if s.Protocol == "" {
		s.Protocol = corev1.ProtocolTCP
	}
	if s.TargetPort == 0 {
		s.TargetPort = s.Port
	}
	svc := CreateService(t, c, s.Namespace, s.Name, s.ClusterIP, s.Selector, corev1.ServicePort{
		Name: strings.ToLower(string(s.Protocol)), Protocol: s.Protocol,
		Port: int32(s.Port), TargetPort: intstr.FromInt32(int32(s.TargetPort)),
	})
	CreateEndpointSlice(t, c, svc, s.Backends...)
	var backends []netip.AddrPort
	for _, p := range s.Backends {
		backends = append(backends, netip.AddrPortFrom(p.IP, s.TargetPort))
	}
	n.AddServiceDNAT(ServiceDNAT{
		Protocol: strings.ToLower(string(s.Protocol)), ClusterIP: s.ClusterIP, Port: s.Port,
		Backends: backends, Mode: s.Mode,
	})
	return svc
}
