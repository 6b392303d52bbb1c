package k8smeta

import (
	"net/netip"
	"reflect"
	"testing"

	flag "github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/flowlens/flowlens/internal/identity"
)

func ctrl(kind, name string) []metav1.OwnerReference {
	yes, no := true, false
	return []metav1.OwnerReference{
		{Kind: "Other", Name: "not-the-controller", Controller: &no},
		{Kind: kind, Name: name, Controller: &yes},
	}
}

func TestPodOf(t *testing.T) {
	base := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1", UID: "uid-1", Labels: map[string]string{"app": "web"},
			OwnerReferences: ctrl("ReplicaSet", "web-5d")},
		Spec: corev1.PodSpec{NodeName: "node-a"},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.244.1.10",
			PodIPs:                []corev1.PodIP{{IP: "10.244.1.10"}, {IP: "fd00::10"}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", ContainerID: "containerd://i1"}},
			ContainerStatuses:     []corev1.ContainerStatus{{Name: "main", ContainerID: "containerd://c1"}, {Name: "waiting"}},
		},
	}
	want := identity.Pod{UID: "uid-1", Namespace: "ns", Name: "web-1", NodeName: "node-a",
		IPs: []netip.Addr{netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("fd00::10")}, Labels: map[string]string{"app": "web"},
		Controller: &identity.OwnerRef{Kind: "ReplicaSet", Name: "web-5d"},
		Containers: map[string]string{"containerd://i1": "init", "containerd://c1": "main"}}
	if got := podOf(&base); !reflect.DeepEqual(got, want) {
		t.Errorf("running pod\n got %+v\nwant %+v", got, want)
	}

	oldStatus := base.DeepCopy()
	oldStatus.Status.PodIPs = nil // only the singular field set
	if got := podOf(oldStatus).IPs; !reflect.DeepEqual(got, []netip.Addr{netip.MustParseAddr("10.244.1.10")}) {
		t.Errorf("podIP without podIPs: %v", got)
	}
	for _, phase := range []corev1.PodPhase{corev1.PodSucceeded, corev1.PodFailed} {
		done := base.DeepCopy()
		done.Status.Phase = phase
		if got := podOf(done).IPs; got != nil {
			t.Errorf("%s pod claims %v", phase, got)
		}
	}
	pending := base.DeepCopy()
	pending.Status = corev1.PodStatus{Phase: corev1.PodPending}
	pending.OwnerReferences = nil
	if got := podOf(pending); got.IPs != nil || got.Containers != nil || got.Controller != nil {
		t.Errorf("pending bare pod: %+v", got)
	}
}

func TestServiceOf(t *testing.T) {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00:96::10"},
			Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}, {Port: 53, Protocol: corev1.ProtocolUDP}}},
	}
	want := identity.Service{Namespace: "ns", Name: "web",
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00:96::10")},
		Ports:      []identity.ServicePort{{Port: 80, NodePort: 30080, Protocol: "TCP"}, {Port: 53, Protocol: "UDP"}}}
	if got := serviceOf(s); !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %+v\nwant %+v", got, want)
	}
	headless := &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "None", ClusterIPs: []string{"None"}}}
	external := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}}
	for _, s := range []*corev1.Service{headless, external} {
		if got := serviceOf(s).ClusterIPs; got != nil {
			t.Errorf("%+v: ClusterIPs %v", s.Spec, got)
		}
	}
}

func TestNodeOf(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "172.30.0.11"},
		{Type: corev1.NodeExternalIP, Address: "203.0.113.11"},
		{Type: corev1.NodeHostName, Address: "node-a"},
		{Type: corev1.NodeInternalDNS, Address: "node-a.internal"},
	}}}
	want := identity.Node{Name: "node-a", Addrs: []netip.Addr{netip.MustParseAddr("172.30.0.11"), netip.MustParseAddr("203.0.113.11")}}
	if got := nodeOf(n); !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %+v\nwant %+v", got, want)
	}
}

func TestOwnersOf(t *testing.T) {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-5d", OwnerReferences: ctrl("Deployment", "web")}}
	if got, want := replicaSetOf(rs), (identity.Owner{Kind: "ReplicaSet", Namespace: "ns", Name: "web-5d",
		Controller: &identity.OwnerRef{Kind: "Deployment", Name: "web"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("replicaset: %+v", got)
	}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "once"}}
	if got, want := jobOf(job), (identity.Owner{Kind: "Job", Namespace: "ns", Name: "once"}); !reflect.DeepEqual(got, want) {
		t.Errorf("job: %+v", got)
	}
}

func TestEndpointsOf(t *testing.T) {
	port, alt := int32(6443), int32(6444)
	es := &discoveryv1.EndpointSlice{
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"172.30.0.5"}}, {Addresses: []string{"172.30.0.6"}}},
		Ports:     []discoveryv1.EndpointPort{{Port: &port}, {Port: &alt}, {}},
	}
	want := []netip.AddrPort{
		netip.MustParseAddrPort("172.30.0.5:6443"), netip.MustParseAddrPort("172.30.0.5:6444"),
		netip.MustParseAddrPort("172.30.0.6:6443"), netip.MustParseAddrPort("172.30.0.6:6444"),
	}
	if got := endpointsOf(es); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestSlimInStore checks what the informer machinery needs of a slim
// object: a store key, a resource version, and tombstones passing the
// transform untouched.
func TestSlimInStore(t *testing.T) {
	tf := transform(podOf)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", ResourceVersion: "42", UID: "u"}}
	obj, err := tf(pod)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := obj.(*slim[identity.Pod])
	if !ok || s.v.UID != "u" {
		t.Fatalf("transform gave %#v", obj)
	}
	if key, err := cache.MetaNamespaceKeyFunc(obj); err != nil || key != "ns/p" {
		t.Errorf("store key %q, %v", key, err)
	}
	if m, err := meta.Accessor(obj); err != nil || m.GetResourceVersion() != "42" {
		t.Errorf("resource version: %v", err)
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: s}
	if got, _ := tf(tomb); got != any(tomb) {
		t.Errorf("tombstone transformed to %#v", got)
	}
	if got, _ := tf(s); got != any(s) {
		t.Errorf("slim object transformed again to %#v", got)
	}
}

func TestAPIServerHost(t *testing.T) {
	for _, tt := range []struct {
		in   string
		host string
		port uint16
	}{
		{"https://127.0.0.1:34567", "127.0.0.1", 34567},
		{"https://10.96.0.1:443", "10.96.0.1", 443},
		{"https://[fd00::1]:6443", "fd00::1", 6443},
		{"https://api.example.com", "api.example.com", 443},
		{"http://localhost", "localhost", 80},
		{"127.0.0.1:6443", "127.0.0.1", 6443},
		{"api.example.com", "api.example.com", 443},
	} {
		host, port, err := apiServerHost(tt.in)
		if err != nil || host != tt.host || port != tt.port {
			t.Errorf("apiServerHost(%q) = %q, %d, %v; want %q, %d", tt.in, host, port, err, tt.host, tt.port)
		}
	}
	for _, bad := range []string{"https://host:99999", "https://", ""} {
		if _, _, err := apiServerHost(bad); err == nil {
			t.Errorf("apiServerHost(%q): no error", bad)
		}
	}
}

func TestConfigEnabledAndFlags(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBECONFIG", "/etc/kube/config")
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.Flags(fs)
	if c.Kubeconfig != "/etc/kube/config" || !c.Enabled() {
		t.Errorf("from $KUBECONFIG: %+v enabled=%v", c, c.Enabled())
	}
	if err := fs.Parse([]string{"--kubeconfig="}); err != nil {
		t.Fatal(err)
	}
	if c.Enabled() {
		t.Error("enabled without kubeconfig or cluster")
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	if !c.Enabled() {
		t.Error("not enabled in a pod")
	}
}
