package k8smeta

import (
	"net/netip"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/flowlens/flowlens/internal/identity"
)

// slim is what an informer's store keeps of an object: the identity value
// and the metadata the informer itself reads. The decoded object (managed
// fields, specs, annotations: most of a pod's bytes) is garbage as soon as
// the transform returns.
type slim[T any] struct {
	namespace, name, resourceVersion string
	v                                T
}

// GetObjectMeta makes slim a metav1.ObjectMetaAccessor. The store keys
// objects by namespace/name, and the informer compares resource versions
// to tell updates from resyncs (an update with an unchanged version is not
// delivered), so these three must be kept.
func (s *slim[T]) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: s.namespace, Name: s.name, ResourceVersion: s.resourceVersion}
}

// transform returns an informer transform that replaces objects of type O
// with their slim form. Anything else passes unchanged: tombstones and
// resyncs carry objects that are slim already.
func transform[O metav1.Object, T any](conv func(O) T) cache.TransformFunc {
	return func(obj any) (any, error) {
		o, ok := obj.(O)
		if !ok {
			return obj, nil
		}
		return &slim[T]{namespace: o.GetNamespace(), name: o.GetName(), resourceVersion: o.GetResourceVersion(), v: conv(o)}, nil
	}
}

func podOf(p *corev1.Pod) identity.Pod {
	out := identity.Pod{
		UID:         string(p.UID),
		Namespace:   p.Namespace,
		Name:        p.Name,
		HostNetwork: p.Spec.HostNetwork,
		NodeName:    p.Spec.NodeName,
		Labels:      p.Labels,
		Controller:  controllerOf(p),
	}
	// A finished pod keeps its address in status, but the network plugin
	// has freed it for the next pod: it must not claim it any more.
	if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
		for _, ip := range p.Status.PodIPs {
			out.IPs = appendAddr(out.IPs, ip.IP)
		}
		if len(p.Status.PodIPs) == 0 {
			out.IPs = appendAddr(out.IPs, p.Status.PodIP)
		}
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for _, c := range list {
			if c.ContainerID == "" {
				continue
			}
			if out.Containers == nil {
				out.Containers = map[string]string{}
			}
			out.Containers[c.ContainerID] = c.Name
		}
	}
	return out
}

func serviceOf(s *corev1.Service) identity.Service {
	out := identity.Service{Namespace: s.Namespace, Name: s.Name}
	ips := s.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{s.Spec.ClusterIP}
	}
	for _, ip := range ips {
		// "None" (headless) and "" (ExternalName) do not parse.
		out.ClusterIPs = appendAddr(out.ClusterIPs, ip)
	}
	for _, p := range s.Spec.Ports {
		out.Ports = append(out.Ports, identity.ServicePort{Port: uint16(p.Port), NodePort: uint16(p.NodePort), Protocol: string(p.Protocol)})
	}
	return out
}

func nodeOf(n *corev1.Node) identity.Node {
	out := identity.Node{Name: n.Name}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			out.Addrs = appendAddr(out.Addrs, a.Address)
		}
	}
	return out
}

func replicaSetOf(rs *appsv1.ReplicaSet) identity.Owner {
	return identity.Owner{Kind: "ReplicaSet", Namespace: rs.Namespace, Name: rs.Name, Controller: controllerOf(rs)}
}

func jobOf(j *batchv1.Job) identity.Owner {
	return identity.Owner{Kind: "Job", Namespace: j.Namespace, Name: j.Name, Controller: controllerOf(j)}
}

// endpointsOf lists every address:port of an EndpointSlice. Readiness is
// ignored: an API server endpoint that is not ready is still the API
// server.
func endpointsOf(es *discoveryv1.EndpointSlice) []netip.AddrPort {
	var out []netip.AddrPort
	for _, e := range es.Endpoints {
		for _, s := range e.Addresses {
			a, err := netip.ParseAddr(s)
			if err != nil {
				continue
			}
			for _, p := range es.Ports {
				if p.Port != nil {
					out = append(out, netip.AddrPortFrom(a, uint16(*p.Port)))
				}
			}
		}
	}
	return out
}

func controllerOf(o metav1.Object) *identity.OwnerRef {
	if ref := metav1.GetControllerOfNoCopy(o); ref != nil {
		return &identity.OwnerRef{Kind: ref.Kind, Name: ref.Name}
	}
	return nil
}

// appendAddr appends s if it is an address; API objects hold strings that
// validation already checked, so anything else is an empty field.
func appendAddr(out []netip.Addr, s string) []netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return append(out, a)
	}
	return out
}
