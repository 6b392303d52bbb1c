package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/flowlens/flowlens/internal/cli"
	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/test/e2e/cluster"
)

// deployDir holds the shipped manifests; go test runs in this package's
// directory.
var deployDir = filepath.Join("..", "..", "deploy")

// TestDeployServerDryRun sends every manifest under deploy/ to a real
// kube-apiserver as `kubectl apply --dry-run=server`: defaulting,
// validation (strict: an unknown field fails) and admission run, nothing is
// stored. Each object must come back accepted.
func TestDeployServerDryRun(t *testing.T) {
	testutil.RequirePrivileged(t)
	files := deployManifests(t)
	cp := cluster.StartControlPlane(t)

	// A dry run stores nothing, so a namespace the manifests make would not
	// exist for the objects inside it: create those for real first.
	for _, f := range files {
		for _, o := range f.objects {
			if o.GetKind() != "Namespace" {
				continue
			}
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.GetName()}}
			_, err := cp.Client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("create namespace %s: %v", o.GetName(), err)
			}
		}
	}
	for _, f := range files {
		t.Run(filepath.Base(f.path), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := cp.Kubectl("apply", "--dry-run=server", "-o", "name", "-f", f.path)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("kubectl apply --dry-run=server -f %s: %v\n%s%s", f.path, err, stdout.String(), stderr.String())
			}
			var want []string
			for _, o := range f.objects {
				want = append(want, kubectlName(o.GroupVersionKind(), o.GetName()))
			}
			got := strings.Fields(stdout.String())
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("accepted objects = %q, want %q\nstderr: %s", got, want, stderr.String())
			}
		})
	}
}

// TestDeployAgentLeastPrivilege reads the agent's DaemonSet as shipped: not
// privileged, exactly the capabilities the README lists, and flags that
// `flowlens up` has. Pure: it runs under -short too.
func TestDeployAgentLeastPrivilege(t *testing.T) {
	ds := agentDaemonSet(t)
	pod := ds.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("containers = %d, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("the agent has no securityContext with capabilities")
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("privileged is not explicitly false")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities dropped = %q, want [ALL]", sc.Capabilities.Drop)
	}
	var added []string
	for _, c := range sc.Capabilities.Add {
		added = append(added, "CAP_"+string(c))
	}
	slices.Sort(added)
	if want := readmeCapabilities(t); !slices.Equal(added, want) {
		t.Errorf("capabilities added = %q, the README says %q", added, want)
	}
	if !pod.HostPID || pod.HostNetwork || pod.HostIPC {
		t.Errorf("hostPID, hostNetwork, hostIPC = %v, %v, %v, want true, false, false", pod.HostPID, pod.HostNetwork, pod.HostIPC)
	}
	if pod.ServiceAccountName != "flowlens" {
		t.Errorf("serviceAccountName = %q, want flowlens (deploy/rbac.yaml)", pod.ServiceAccountName)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(t corev1.Toleration) bool { return t.Key == "" && t.Operator == corev1.TolerationOpExists }) {
		t.Errorf("tolerations = %+v, want one tolerating every taint", pod.Tolerations)
	}

	// Every flag is one of `flowlens up`'s, with a value it takes.
	if len(c.Args) == 0 || c.Args[0] != "up" {
		t.Fatalf("args = %q, want `up` first", c.Args)
	}
	up, _, err := cli.New().Find([]string{"up"})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.ParseFlags(c.Args[1:]); err != nil {
		t.Fatalf("flowlens up %s: %v", strings.Join(c.Args[1:], " "), err)
	}
	if rest := up.Flags().Args(); len(rest) != 0 {
		t.Errorf("arguments that are not flags: %q", rest)
	}
	flag := func(name string) string { return up.Flags().Lookup(name).Value.String() }

	// --cgroup-root is the host's cgroup2 root, mounted read-only.
	root := mountOf(t, pod, c, flag("cgroup-root"))
	if !root.mount.ReadOnly || root.volume.HostPath == nil || root.volume.HostPath.Path != "/sys/fs/cgroup" {
		t.Errorf("--cgroup-root %s: read-only %v, hostPath %+v, want the host's /sys/fs/cgroup read-only", flag("cgroup-root"), root.mount.ReadOnly, root.volume.HostPath)
	}
	// The flows stay on a unix socket in a pod-private directory.
	listen := flag("listen")
	sock, ok := strings.CutPrefix(strings.Trim(listen, "[]"), "unix:")
	if !ok || strings.Contains(sock, ",") {
		t.Fatalf("--listen = %s, want one unix socket", listen)
	}
	if run := mountOf(t, pod, c, filepath.Dir(sock)); run.volume.EmptyDir == nil {
		t.Errorf("the API socket's directory is volume %s, want an emptyDir", run.volume.Name)
	}
	// Prometheus and the probes reach the metrics listener on the pod's port.
	if got := flag("metrics-listen"); got != ":9090" {
		t.Errorf("--metrics-listen = %q, want :9090", got)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || c.Ports[0].ContainerPort != 9090 {
		t.Errorf("ports = %+v, want metrics 9090", c.Ports)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		want := map[string]string{"readiness": "/readyz", "liveness": "/healthz"}[name]
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe = %+v, want GET %s on port metrics", name, p, want)
		}
	}
	if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("resources = %+v, want memory requests and limits", c.Resources)
	}
}

// manifestFile is one YAML file under deploy/ and the objects it holds.
type manifestFile struct {
	path    string
	objects []*unstructured.Unstructured
}

// deployManifests reads every YAML file under deploy/.
func deployManifests(t *testing.T) []manifestFile {
	t.Helper()
	var files []manifestFile
	err := filepath.WalkDir(deployDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !slices.Contains([]string{".yaml", ".yml"}, filepath.Ext(path)) {
			return err
		}
		objs, err := decodeObjects(path)
		if err != nil {
			return err
		}
		files = append(files, manifestFile{path: path, objects: objs})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no YAML under %s", deployDir)
	}
	return files
}

// decodeObjects reads the objects of a multi-document YAML file.
func decodeObjects(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := k8syaml.NewYAMLOrJSONDecoder(f, 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		if m == nil {
			continue // an empty document, between two ---
		}
		o := &unstructured.Unstructured{Object: m}
		if o.GetKind() == "" || o.GetName() == "" {
			return nil, fmt.Errorf("%s: an object without kind or name: %v", path, m)
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("%s holds no object", path)
	}
	return objs, nil
}

// kubectlName is how `kubectl -o name` names an object: kind.group/name.
func kubectlName(gvk schema.GroupVersionKind, name string) string {
	kind := strings.ToLower(gvk.Kind)
	if gvk.Group != "" {
		kind += "." + gvk.Group
	}
	return kind + "/" + name
}

// agentDaemonSet is the one DaemonSet under deploy/.
func agentDaemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	var found []*appsv1.DaemonSet
	for _, f := range deployManifests(t) {
		for _, o := range f.objects {
			if o.GetKind() != "DaemonSet" {
				continue
			}
			ds := &appsv1.DaemonSet{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, ds, true); err != nil {
				t.Fatalf("%s: DaemonSet %s: %v", f.path, o.GetName(), err)
			}
			found = append(found, ds)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d DaemonSets under %s, want 1", len(found), deployDir)
	}
	return found[0]
}

// capabilityRow is a row of the README's capability table: | `CAP_X` | why |
var capabilityRow = regexp.MustCompile("(?m)^\\| `(CAP_[A-Z_]+)` \\|")

// readmeCapabilities returns the capabilities the README's Deploying
// section lists in its table, sorted.
func readmeCapabilities(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Deploying\n")
	if !ok {
		t.Fatal("README.md has no ## Deploying section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var caps []string
	for _, m := range capabilityRow.FindAllStringSubmatch(section, -1) {
		caps = append(caps, m[1])
	}
	if len(caps) == 0 {
		t.Fatal("README's Deploying section lists no capability")
	}
	slices.Sort(caps)
	return caps
}

// podMount is a container's mount and the volume behind it.
type podMount struct {
	mount  corev1.VolumeMount
	volume corev1.Volume
}

// mountOf returns the mount of the container at exactly path.
func mountOf(t *testing.T, pod corev1.PodSpec, c corev1.Container, path string) podMount {
	t.Helper()
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == path })
	if i < 0 {
		t.Fatalf("nothing is mounted at %s", path)
	}
	m := c.VolumeMounts[i]
	j := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
	if j < 0 {
		t.Fatalf("mount %s names no volume %s", path, m.Name)
	}
	return podMount{mount: m, volume: pod.Volumes[j]}
}
