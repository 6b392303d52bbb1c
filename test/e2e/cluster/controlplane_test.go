package cluster

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/flowlens/flowlens/internal/testutil"
)

// TestControlPlane starts etcd and kube-apiserver, creates a topology and its
// API objects (every workload kind), checks what reads back, checks RBAC for
// a non-admin identity, and restarts the apiserver.
func TestControlPlane(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := probe(t)
	cp := StartControlPlane(t)
	c := cp.Client
	ctx := context.Background()

	n := NewNetwork(t)
	a := n.AddNode("node-a", netip.MustParsePrefix("10.244.1.0/24"))
	b := n.AddNode("node-b", netip.MustParsePrefix("10.244.2.0/24"))
	for _, node := range []*Node{a, b} {
		obj := CreateNodeObject(t, c, node)
		if got := obj.Status.Addresses[0]; got.Type != corev1.NodeInternalIP || got.Address != node.IP.String() {
			t.Fatalf("node %s address %v, want InternalIP %s", node.Name, got, node.IP)
		}
	}

	ns := CreateNamespace(t, c, "shop")
	labels := map[string]string{"app": "web"}
	_, rs := CreateDeployment(t, c, ns, "web", labels)
	web1 := a.RunPod(t, c, PodObject(ns, rs.Name+"-abcde", nil, rs), netip.MustParseAddr("10.244.1.10"), PodOptions{})
	web2 := b.RunPod(t, c, PodObject(ns, rs.Name+"-fghij", nil, rs), netip.MustParseAddr("10.244.2.10"), PodOptions{CgroupDriver: Systemd})
	sts := CreateStatefulSet(t, c, ns, "db", map[string]string{"app": "db"})
	a.RunPod(t, c, PodObject(ns, "db-0", nil, sts), netip.MustParseAddr("10.244.1.11"), PodOptions{})
	ds := CreateDaemonSet(t, c, ns, "agent", map[string]string{"app": "agent"})
	agent := b.RunHostNetworkPod(t, c, PodObject(ns, "agent-x1y2z", nil, ds), PodOptions{})
	_, job := CreateCronJob(t, c, ns, "report", map[string]string{"app": "report"})
	b.RunPod(t, c, PodObject(ns, job.Name+"-q8w7e", nil, job), netip.MustParseAddr("10.244.2.11"), PodOptions{})
	client := a.RunPod(t, c, PodObject(ns, "client", map[string]string{"app": "client"}, nil), netip.MustParseAddr("10.244.1.12"), PodOptions{})

	// Read a pod back and follow its owners: Pod -> ReplicaSet -> Deployment.
	got, err := c.CoreV1().Pods(ns).Get(ctx, web1.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.UID != web1.UID || got.Status.PodIP != "10.244.1.10" || got.Status.PodIPs[0].IP != "10.244.1.10" ||
		got.Status.HostIP != a.IP.String() || got.Spec.NodeName != "node-a" || got.Status.Phase != corev1.PodRunning {
		t.Fatalf("pod read back: uid %s ip %s host %s node %s phase %s", got.UID, got.Status.PodIP, got.Status.HostIP, got.Spec.NodeName, got.Status.Phase)
	}
	if cid := got.Status.ContainerStatuses[0].ContainerID; cid != "containerd://"+web1.ContainerID {
		t.Fatalf("containerID %s, want containerd://%s", cid, web1.ContainerID)
	}
	if !strings.Contains(web1.CgroupPath, "/pod"+string(got.UID)+"/"+web1.ContainerID) {
		t.Fatalf("cgroup %s does not name pod %s", web1.CgroupPath, got.UID)
	}
	owner := got.OwnerReferences[0]
	rsGot, err := c.AppsV1().ReplicaSets(ns).Get(ctx, owner.Name, metav1.GetOptions{})
	if err != nil || owner.Kind != "ReplicaSet" || owner.UID != rsGot.UID {
		t.Fatalf("pod owner %+v: %v", owner, err)
	}
	if o := rsGot.OwnerReferences[0]; o.Kind != "Deployment" || o.Name != "web" {
		t.Fatalf("replicaset owner %+v", o)
	}
	for name, kind := range map[string]string{"db-0": "StatefulSet", agent.Name: "DaemonSet", job.Name + "-q8w7e": "Job"} {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || p.OwnerReferences[0].Kind != kind {
			t.Fatalf("pod %s: owner %v, %v; want %s", name, p.OwnerReferences, err, kind)
		}
	}
	if j, _ := c.BatchV1().Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{}); j.OwnerReferences[0].Kind != "CronJob" {
		t.Fatalf("job owner %v", j.OwnerReferences)
	}
	if p, _ := c.CoreV1().Pods(ns).Get(ctx, agent.Name, metav1.GetOptions{}); !p.Spec.HostNetwork || p.Status.PodIP != b.IP.String() {
		t.Fatalf("host-network pod: hostNetwork %v ip %s", p.Spec.HostNetwork, p.Status.PodIP)
	}

	// A Service in the API and in iptables, answered by the pods it lists.
	s1 := startServer(t, web1.Command(bin, "serve", ":8080", "web-1"))
	s2 := startServer(t, web2.Command(bin, "serve", ":8080", "web-2"))
	n.RunService(t, c, ServiceSpec{
		Namespace: ns, Name: "web", ClusterIP: netip.MustParseAddr("10.96.10.10"), Port: 80, TargetPort: 8080,
		Mode: RoundRobin, Backends: []*Pod{web1, web2}, Selector: labels,
	})
	slices, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
	if err != nil || len(slices.Items) != 1 || len(slices.Items[0].Endpoints) != 2 || slices.Items[0].Endpoints[1].TargetRef.UID != web2.UID {
		t.Fatalf("endpointslices: %+v, %v", slices, err)
	}
	if c := countLines(dial(t, client.Command(bin, "dial", "10.96.10.10:80", "6"))); c["web-1"] != 3 || c["web-2"] != 3 {
		t.Fatalf("answers %v, want 3 each", c)
	}
	if n1, n2 := s1.stop(), s2.stop(); n1 != 3 || n2 != 3 {
		t.Fatalf("servers accepted %d, %d; want 3 each", n1, n2)
	}

	t.Run("rbac", func(t *testing.T) {
		canI := func(kubeconfig string) string {
			out, _ := cp.Kubectl("--kubeconfig="+kubeconfig, "auth", "can-i", "list", "pods", "--all-namespaces").CombinedOutput()
			return strings.TrimSpace(string(out))
		}
		certUser := cp.UserKubeconfig(t, "system:serviceaccount:flowlens:flowlens", "system:serviceaccounts", "system:serviceaccounts:flowlens")
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "flowlens"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		saToken := cp.ServiceAccountKubeconfig(t, "flowlens", "flowlens")
		for _, kc := range []string{certUser, saToken} {
			if got := canI(kc); got != "no" {
				t.Fatalf("before binding, can-i list pods = %q, want no", got)
			}
		}
		role := &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "flowlens-e2e-reader"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
		}
		if _, err := c.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "flowlens-e2e-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "flowlens", Name: "flowlens"}},
		}
		if _, err := c.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// RBAC changes reach the authorizer through an informer: poll.
		for _, kc := range []string{certUser, saToken} {
			deadline := time.Now().Add(10 * time.Second)
			for canI(kc) != "yes" {
				if time.Now().After(deadline) {
					t.Fatalf("after binding, can-i list pods = %q, want yes", canI(kc))
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		// And the identity works from Go too, but only for what it was granted.
		cfg, err := clientcmd.BuildConfigFromFlags("", saToken)
		if err != nil {
			t.Fatal(err)
		}
		sa := kubernetes.NewForConfigOrDie(cfg)
		if pods, err := sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil || len(pods.Items) != 6 {
			t.Fatalf("service account lists %d pods, %v; want 6", len(pods.Items), err)
		}
		if _, err := sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); err == nil {
			t.Fatal("service account listed secrets without a grant")
		}
	})

	t.Run("restart", func(t *testing.T) {
		if err := cp.Stop(); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := c.CoreV1().Pods(ns).Get(short, web1.Name, metav1.GetOptions{}); err == nil {
			t.Fatal("apiserver answered while stopped")
		}
		start := time.Now()
		if err := cp.Start(); err != nil {
			t.Fatal(err)
		}
		t.Logf("apiserver restarted in %v", time.Since(start).Round(time.Millisecond))
		p, err := c.CoreV1().Pods(ns).Get(ctx, web1.Name, metav1.GetOptions{})
		if err != nil || p.UID != web1.UID || p.Status.PodIP != web1.IP.String() {
			t.Fatalf("after restart: %v, %v", p, err)
		}
	})
}
