// Package filter selects flow records. The same named parameters serve the
// HTTP API (query parameters), the CLI (flags of the same names) and, later,
// metrics: one definition, parsed once, applied as plain functions.
//
// Semantics follow hubble observe: repeated values of one parameter match if
// any matches; different parameters must all match.
package filter

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/flowlens/flowlens/internal/flow"
)

// Filter reports whether a record is selected.
type Filter func(*flow.Record) bool

// All matches when every filter matches (and when there are none).
func All(fs ...Filter) Filter {
	return func(r *flow.Record) bool {
		for _, f := range fs {
			if !f(r) {
				return false
			}
		}
		return true
	}
}

// Any matches when at least one filter matches.
func Any(fs ...Filter) Filter {
	return func(r *flow.Record) bool {
		for _, f := range fs {
			if f(r) {
				return true
			}
		}
		return false
	}
}

// Param is one filter parameter: its name (query key and CLI flag) and how
// one value becomes a filter: of the record, or (group) of one request
// group, for the request filters that must all hold of the same group.
type Param struct {
	Name  string
	Usage string
	parse func(string) (Filter, error)
	group func(string) (groupFilter, error)
}

// Params lists every parameter, in the order the CLI shows them.
var Params = []Param{
	{"from-ip", "source IP or CIDR", ipParam(func(r *flow.Record) netip.Addr { return r.Source.IP }), nil},
	{"to-ip", "destination IP or CIDR", ipParam(func(r *flow.Record) netip.Addr { return r.Destination.IP }), nil},
	{"ip", "source or destination IP or CIDR", ipParam(func(r *flow.Record) netip.Addr { return r.Source.IP },
		func(r *flow.Record) netip.Addr { return r.Destination.IP }), nil},
	{"port", "source or destination port", uintParam(16, func(r *flow.Record) []uint64 {
		return []uint64{uint64(r.Source.Port), uint64(r.Destination.Port)}
	}), nil},
	{"to-port", "destination port", uintParam(16, func(r *flow.Record) []uint64 { return []uint64{uint64(r.Destination.Port)} }), nil},
	{"protocol", "tcp or udp; http, dns, postgres or redis: a record with requests of that protocol", protocolParam, nil},
	{"verdict", "established, closed, reset, refused, timeout, unreachable, failed, answered, unanswered; dropped: a record with drops", verdictParam, nil},
	{"drop-reason", "a kernel drop reason the record counts (netfilter_drop, no_socket); a leading part matches at _ (netfilter, tcp)", dropReasonParam, nil},
	{"from-pid", "source process id", uintParam(32, func(r *flow.Record) []uint64 { return []uint64{uint64(r.Source.PID)} }), nil},
	{"to-pid", "destination process id", uintParam(32, func(r *flow.Record) []uint64 { return []uint64{uint64(r.Destination.PID)} }), nil},
	{"from-netns", "source network namespace inode", uintParam(32, func(r *flow.Record) []uint64 { return []uint64{uint64(r.Source.Netns)} }), nil},
	{"to-netns", "destination network namespace inode", uintParam(32, func(r *flow.Record) []uint64 { return []uint64{uint64(r.Destination.Netns)} }), nil},
	{"from-command", "source process command", stringParam(func(r *flow.Record) string { return r.Source.Command }), nil},
	{"to-command", "destination process command", stringParam(func(r *flow.Record) string { return r.Destination.Command }), nil},
	{"observer", "client or server: which side observed the flow", stringParam(func(r *flow.Record) string { return r.Observer }), nil},
	{"node", "node that observed the flow", stringParam(func(r *flow.Record) string { return r.Node }), nil},
	{"from-pod", "source pod as namespace/name; a name prefix matches (default/frontend matches frontend-7d9f…)", podParam(src), nil},
	{"to-pod", "destination pod as namespace/name, or name prefix", podParam(dst), nil},
	{"from-workload", "source workload as [namespace/]kind/name (deploy/frontend, sts/db, ds, job, cronjob, rs, pod)", workloadParam(src), nil},
	{"to-workload", "destination workload as [namespace/]kind/name", workloadParam(dst), nil},
	{"to-service", "destination Service as namespace/name or name", serviceParam, nil},
	{"namespace", "either endpoint's namespace (pod or Service)", namespaceParam, nil},
	{"from-label", "source pod label k=v (or k: has the label)", labelParam(src), nil},
	{"to-label", "destination pod label k=v (or k)", labelParam(dst), nil},
	{"from-kind", "source kind: pod, service, node, apiserver, world", kindParam(src), nil},
	{"to-kind", "destination kind: pod, service, node, apiserver, world", kindParam(dst), nil},
	// Request filters: a record matches when one of its request groups
	// matches all of them.
	{Name: "http-status", Usage: "HTTP status of a request: a code (404) or a class (5xx)", group: httpStatusParam},
	{Name: "http-method", Usage: "HTTP method of a request (GET)", group: httpMethodParam},
	{Name: "http-path", Usage: "HTTP path template of a request, * matching anything ('/users/*')", group: httpPathParam},
	{Name: "dns-rcode", Usage: "DNS response code of a query (noerror, nxdomain, servfail, ...)", group: dnsRCodeParam},
	{Name: "dns-query", Usage: "DNS question name, * matching anything ('*.example.com')", group: dnsQueryParam},
}

func src(r *flow.Record) *flow.Endpoint { return &r.Source }
func dst(r *flow.Record) *flow.Endpoint { return &r.Destination }

// Parse builds the filter selected by the known parameters in q; other keys
// are ignored so that callers can mix in their own (last, follow).
func Parse(q url.Values) (Filter, error) {
	var all []Filter
	var groups []groupFilter
	for _, p := range Params {
		vals := split(q[p.Name])
		if len(vals) == 0 {
			continue
		}
		var anyOf []Filter
		var anyGroup []groupFilter
		for _, v := range vals {
			var err error
			if p.group != nil {
				var g groupFilter
				g, err = p.group(v)
				anyGroup = append(anyGroup, g)
			} else {
				var f Filter
				f, err = p.parse(v)
				anyOf = append(anyOf, f)
			}
			if err != nil {
				return nil, fmt.Errorf("filter %s=%q: %w", p.Name, v, err)
			}
		}
		if p.group != nil {
			groups = append(groups, anyGroupOf(anyGroup))
		} else {
			all = append(all, Any(anyOf...))
		}
	}
	if len(groups) > 0 {
		all = append(all, someGroup(groups))
	}
	return All(all...), nil
}

// split accepts both repeated parameters and comma-separated lists.
func split(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func ipParam(fields ...func(*flow.Record) netip.Addr) func(string) (Filter, error) {
	return func(v string) (Filter, error) {
		var pfx netip.Prefix
		var err error
		if strings.Contains(v, "/") {
			pfx, err = netip.ParsePrefix(v)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(v)
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return nil, err
		}
		pfx = pfx.Masked()
		return func(r *flow.Record) bool {
			for _, f := range fields {
				if pfx.Contains(f(r)) {
					return true
				}
			}
			return false
		}, nil
	}
}

func uintParam(bits int, field func(*flow.Record) []uint64) func(string) (Filter, error) {
	return func(v string) (Filter, error) {
		n, err := strconv.ParseUint(v, 10, bits)
		if err != nil {
			return nil, fmt.Errorf("not a %d-bit unsigned number", bits)
		}
		return func(r *flow.Record) bool { return slices.Contains(field(r), n) }, nil
	}
}

func stringParam(field func(*flow.Record) string) func(string) (Filter, error) {
	return func(v string) (Filter, error) {
		return func(r *flow.Record) bool { return field(r) == v }, nil
	}
}

func protocolParam(v string) (Filter, error) {
	v = strings.ToLower(v)
	if l7 := flow.L7Protocol(v); slices.Contains(flow.L7Protocols, l7) {
		return func(r *flow.Record) bool {
			return slices.ContainsFunc(r.Requests, func(g flow.Requests) bool { return g.Protocol == l7 })
		}, nil
	}
	p := flow.Protocol(v)
	if p != flow.TCP && p != flow.UDP {
		return nil, fmt.Errorf("protocol must be tcp, udp, http, dns, postgres or redis")
	}
	return func(r *flow.Record) bool { return r.Protocol == p }, nil
}

// VerdictDropped selects records with drops, whatever their verdict: a
// failed connect whose SYNs were dropped, or any flow that lost packets.
const VerdictDropped = "dropped"

func verdictParam(v string) (Filter, error) {
	want := flow.Verdict(strings.ToLower(v))
	if want == VerdictDropped {
		return func(r *flow.Record) bool { return len(r.Drops) > 0 }, nil
	}
	if !slices.Contains(flow.Verdicts, want) {
		return nil, fmt.Errorf("unknown verdict")
	}
	return func(r *flow.Record) bool { return r.Verdict == want }, nil
}

// splitNamespaced splits "ns/rest" at the first slash; without one the
// namespace is "" (any).
func splitNamespaced(v string) (ns, rest string) {
	if i := strings.IndexByte(v, '/'); i >= 0 {
		return v[:i], v[i+1:]
	}
	return "", v
}

func podParam(ep func(*flow.Record) *flow.Endpoint) func(string) (Filter, error) {
	return func(v string) (Filter, error) {
		ns, name := splitNamespaced(v)
		if ns == "" && name == "" {
			return nil, fmt.Errorf("want namespace/name")
		}
		return func(r *flow.Record) bool {
			e := ep(r)
			return e.Pod != "" && (ns == "" || e.Namespace == ns) && strings.HasPrefix(e.Pod, name)
		}, nil
	}
}

// workloadKinds maps the short names operators type (kubectl's) to the
// kinds records carry.
var workloadKinds = map[string]string{
	"deploy": "Deployment", "deployment": "Deployment", "sts": "StatefulSet", "statefulset": "StatefulSet",
	"ds": "DaemonSet", "daemonset": "DaemonSet", "job": "Job", "cronjob": "CronJob", "cj": "CronJob",
	"rs": "ReplicaSet", "replicaset": "ReplicaSet", "pod": "Pod", "po": "Pod",
}

// WorkloadShortName is the short kind name records are printed with
// (deploy/frontend), the inverse of what the filters accept.
func WorkloadShortName(kind string) string {
	switch kind {
	case "Deployment":
		return "deploy"
	case "StatefulSet":
		return "sts"
	case "DaemonSet":
		return "ds"
	case "ReplicaSet":
		return "rs"
	}
	return strings.ToLower(kind)
}

func workloadParam(ep func(*flow.Record) *flow.Endpoint) func(string) (Filter, error) {
	return func(v string) (Filter, error) {
		parts := strings.Split(v, "/")
		var ns, kind, name string
		switch len(parts) {
		case 1:
			name = parts[0]
		case 2:
			kind, name = parts[0], parts[1]
		case 3:
			ns, kind, name = parts[0], parts[1], parts[2]
		default:
			return nil, fmt.Errorf("want [namespace/]kind/name")
		}
		if kind != "" {
			k, ok := workloadKinds[strings.ToLower(kind)]
			if !ok {
				return nil, fmt.Errorf("unknown workload kind %q", kind)
			}
			kind = k
		}
		return func(r *flow.Record) bool {
			e := ep(r)
			return e.Workload != nil && e.Workload.Name == name && (kind == "" || e.Workload.Kind == kind) &&
				(ns == "" || e.Namespace == ns)
		}, nil
	}
}

func serviceParam(v string) (Filter, error) {
	ns, name := splitNamespaced(v)
	return func(r *flow.Record) bool {
		s := r.Destination.Service
		return s != nil && s.Name == name && (ns == "" || s.Namespace == ns)
	}, nil
}

func namespaceParam(v string) (Filter, error) {
	in := func(e *flow.Endpoint) bool {
		return e.Namespace == v || (e.Service != nil && e.Service.Namespace == v)
	}
	return func(r *flow.Record) bool { return in(&r.Source) || in(&r.Destination) }, nil
}

func labelParam(ep func(*flow.Record) *flow.Endpoint) func(string) (Filter, error) {
	return func(v string) (Filter, error) {
		key, val, hasVal := strings.Cut(v, "=")
		if key == "" {
			return nil, fmt.Errorf("want key=value or key")
		}
		return func(r *flow.Record) bool {
			got, ok := ep(r).Labels[key]
			return ok && (!hasVal || got == val)
		}, nil
	}
}

func kindParam(ep func(*flow.Record) *flow.Endpoint) func(string) (Filter, error) {
	return func(v string) (Filter, error) {
		k := flow.Kind(strings.ToLower(v))
		if !slices.Contains(flow.Kinds, k) {
			return nil, fmt.Errorf("unknown kind")
		}
		return func(r *flow.Record) bool { return ep(r).Kind == k }, nil
	}
}

func dropReasonParam(v string) (Filter, error) {
	v = strings.ToLower(v)
	for _, c := range []byte(v) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return nil, fmt.Errorf("not a drop reason: letters, digits and _ only")
		}
	}
	return func(r *flow.Record) bool {
		for reason := range r.Drops {
			if reason == v || strings.HasPrefix(reason, v+"_") {
				return true
			}
		}
		return false
	}, nil
}
