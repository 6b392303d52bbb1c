// Package wire converts flow records to and from the protobuf messages of
// the agent → hub stream (api/flowlens/v1), and checks what it decodes: a
// hub takes batches from the network, so every field that could make a
// record meaningless or unbounded is refused with an error naming the
// record and the field. It is pure: no I/O, no clock.
//
// The encoder runs the same check on what it produced, so an agent finds
// a record the hub would refuse before sending it, instead of having a
// whole batch refused and resent forever.
package wire

import (
	"fmt"
	"net/netip"
	"time"
	"unicode/utf8"

	pb "github.com/flowlens/flowlens/api/flowlens/v1"
	"github.com/flowlens/flowlens/internal/flow"
)

// Bounds of what one record may carry. Kubernetes' own limits fit inside
// them (names of 253 bytes, label keys of 253+1+63 and values of 63), so a
// record an agent made from real metadata is never refused.
const (
	MaxString        = 1024 // any name, command or id
	MaxLabels        = 256  // labels of one endpoint
	MaxLabelKeyLen   = 317
	MaxLabelValueLen = 63
	MaxDropReasons   = 256 // the kernel side's reason slots
	MaxDropReasonLen = 64
	MaxRequestGroups = 256 // request groups of one record
	MaxHeaders       = 32  // allow-listed HTTP headers of one group
	MaxHeaderNameLen = 64
	MaxHTTPStatus    = 999
)

var protocols = map[flow.Protocol]pb.Protocol{flow.TCP: pb.Protocol_PROTOCOL_TCP, flow.UDP: pb.Protocol_PROTOCOL_UDP}

var observers = map[string]pb.Observer{
	flow.RoleUnknown.String(): pb.Observer_OBSERVER_UNKNOWN,
	flow.RoleClient.String():  pb.Observer_OBSERVER_CLIENT,
	flow.RoleServer.String():  pb.Observer_OBSERVER_SERVER,
}

var verdicts = map[flow.Verdict]pb.Verdict{
	flow.VerdictEstablished: pb.Verdict_VERDICT_ESTABLISHED,
	flow.VerdictClosed:      pb.Verdict_VERDICT_CLOSED,
	flow.VerdictReset:       pb.Verdict_VERDICT_RESET,
	flow.VerdictRefused:     pb.Verdict_VERDICT_REFUSED,
	flow.VerdictTimeout:     pb.Verdict_VERDICT_TIMEOUT,
	flow.VerdictUnreachable: pb.Verdict_VERDICT_UNREACHABLE,
	flow.VerdictFailed:      pb.Verdict_VERDICT_FAILED,
	flow.VerdictAnswered:    pb.Verdict_VERDICT_ANSWERED,
	flow.VerdictUnanswered:  pb.Verdict_VERDICT_UNANSWERED,
}

var kinds = map[flow.Kind]pb.Kind{
	"":                 pb.Kind_KIND_NONE,
	flow.KindPod:       pb.Kind_KIND_POD,
	flow.KindService:   pb.Kind_KIND_SERVICE,
	flow.KindNode:      pb.Kind_KIND_NODE,
	flow.KindAPIServer: pb.Kind_KIND_APISERVER,
	flow.KindWorld:     pb.Kind_KIND_WORLD,
}

var l7Protocols = map[flow.L7Protocol]pb.L7Protocol{
	flow.HTTP:     pb.L7Protocol_L7_PROTOCOL_HTTP,
	flow.DNS:      pb.L7Protocol_L7_PROTOCOL_DNS,
	flow.Postgres: pb.L7Protocol_L7_PROTOCOL_POSTGRES,
	flow.Redis:    pb.L7Protocol_L7_PROTOCOL_REDIS,
}

// The decoders' tables, inverted once.
var (
	protocolOf   = invert(protocols)
	observerOf   = invert(observers)
	verdictOf    = invert(verdicts)
	kindOf       = invert(kinds)
	l7ProtocolOf = invert(l7Protocols)
)

func invert[K, V comparable](m map[K]V) map[V]K {
	out := make(map[V]K, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

// FieldError is a refused record: which one in its batch, which field, why.
type FieldError struct {
	Index int    // the record's index in its batch
	Field string // dotted path, e.g. source.ip
	Msg   string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("record %d: %s: %s", e.Index, e.Field, e.Msg)
}

// Records decodes and checks every record of a batch; the first one refused
// makes it refuse the batch, whose error is a *FieldError.
func Records(b *pb.Batch) ([]flow.Record, error) {
	out := make([]flow.Record, len(b.GetRecords()))
	for i, r := range b.GetRecords() {
		if err := decode(r, &out[i]); err != nil {
			err.Index = i
			return nil, err
		}
	}
	return out, nil
}

// Encode converts one record for a batch. A record that cannot be carried
// (a value without an enum, an invalid address) or that a hub would refuse
// is a *FieldError (Index 0), as Records would return: the agent drops it
// rather than have the hub refuse its batch.
func Encode(r *flow.Record) (*pb.Record, error) {
	p, err := encode(r)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func encode(r *flow.Record) (*pb.Record, *FieldError) {
	p := &pb.Record{
		TimeUnixNano:      unixNano(r.Time),
		StartUnixNano:     unixNano(r.Start),
		Node:              r.Node,
		IpVersion:         uint32(r.IPVersion),
		ConnStartUnixNano: unixNano(r.ConnStart),
		Opened:            r.Opened,
		Closed:            r.Closed,
		Refused:           r.Refused,
		TimedOut:          r.TimedOut,
		FailedOther:       r.FailedOther,
		ResetsBySrc:       r.ResetsBySrc,
		ResetsByDst:       r.ResetsByDst,
		Retransmits:       r.Retransmits,
		Rtt:               encodeRTT(r.RTT),
		ConnectLatency:    encodeRTT(r.ConnectLatency),
		SynRetrans:        r.SYNRetrans,
		BytesToDst:        r.BytesToDst,
		BytesToSrc:        r.BytesToSrc,
		SegmentsToDst:     r.SegmentsToDst,
		SegmentsToSrc:     r.SegmentsToSrc,
		DatagramsToDst:    r.DatagramsToDst,
		DatagramsToSrc:    r.DatagramsToSrc,
		RetransToDst:      r.RetransToDst,
		RetransToSrc:      r.RetransToSrc,
		Drops:             r.Drops,
	}
	var ok bool
	if p.Observer, ok = observers[r.Observer]; !ok {
		return nil, fieldErr("observer", "%q is not client, server or unknown", r.Observer)
	}
	if p.Protocol, ok = protocols[r.Protocol]; !ok {
		return nil, fieldErr("protocol", "%q is not tcp or udp", r.Protocol)
	}
	if p.Verdict, ok = verdicts[r.Verdict]; !ok {
		return nil, fieldErr("verdict", "unknown verdict %q", r.Verdict)
	}
	var err *FieldError
	if p.Source, err = encodeEndpoint("source", &r.Source); err != nil {
		return nil, err
	}
	if p.Destination, err = encodeEndpoint("destination", &r.Destination); err != nil {
		return nil, err
	}
	if p.Requests, err = encodeRequests(r.Requests); err != nil {
		return nil, err
	}
	// The same check the hub runs, on what the hub would receive.
	if err := check(p); err != nil {
		return nil, err
	}
	return p, nil
}

func encodeEndpoint(field string, e *flow.Endpoint) (*pb.Endpoint, *FieldError) {
	if !e.IP.IsValid() || e.IP.Zone() != "" {
		return nil, fieldErr(field+".ip", "%q is not an address without a zone", e.IP)
	}
	kind, ok := kinds[e.Kind]
	if !ok {
		return nil, fieldErr(field+".kind", "unknown kind %q", e.Kind)
	}
	p := &pb.Endpoint{
		Ip:          e.IP.AsSlice(),
		Port:        uint32(e.Port),
		Netns:       e.Netns,
		Pid:         e.PID,
		Command:     []byte(e.Command),
		CgroupId:    e.CgroupID,
		ContainerId: e.ContainerID,
		Kind:        kind,
		Namespace:   e.Namespace,
		Pod:         e.Pod,
		Container:   e.Container,
		Labels:      e.Labels,
		NodeName:    e.NodeName,
		HostNetwork: e.HostNetwork,
		DnsName:     e.DNSName,
	}
	if e.Workload != nil {
		p.Workload = &pb.Workload{Kind: e.Workload.Kind, Name: e.Workload.Name}
	}
	if e.Service != nil {
		p.Service = &pb.ServiceRef{Namespace: e.Service.Namespace, Name: e.Service.Name}
	}
	return p, nil
}

func encodeRequests(groups []flow.Requests) ([]*pb.Requests, *FieldError) {
	if len(groups) == 0 {
		return nil, nil
	}
	out := make([]*pb.Requests, len(groups))
	for i := range groups {
		g := &groups[i]
		proto, ok := l7Protocols[g.Protocol]
		if !ok {
			return nil, fieldErr(fmt.Sprintf("requests[%d].protocol", i), "unknown protocol %q", g.Protocol)
		}
		if g.Status < 0 || g.Status > MaxHTTPStatus {
			return nil, fieldErr(fmt.Sprintf("requests[%d].status", i), "%d is not 0 to %d", g.Status, MaxHTTPStatus)
		}
		p := &pb.Requests{
			Protocol: proto, Tls: g.TLS, Method: g.Method, Path: g.Path, Host: g.Host,
			Status: uint32(g.Status), DnsQuery: g.Query, DnsType: g.QType, DnsRcode: g.RCode,
			Error: g.Error, Count: g.Count, Failed: g.Failed, Latency: encodeRTT(g.Latency), HttpHeaders: g.Headers,
		}
		for j, a := range g.Answers {
			if !a.IsValid() || a.Zone() != "" {
				return nil, fieldErr(fmt.Sprintf("requests[%d].dns_answers[%d]", i, j), "%q is not an address without a zone", a)
			}
			p.DnsAnswers = append(p.DnsAnswers, a.AsSlice())
		}
		out[i] = p
	}
	return out, nil
}

// checkRequests checks request groups as an agent's parsers make them:
// bounded strings, a known protocol, no more failures than requests.
func checkRequests(groups []*pb.Requests) *FieldError {
	if len(groups) > MaxRequestGroups {
		return fieldErr("requests", "%d groups, at most %d", len(groups), MaxRequestGroups)
	}
	for i, p := range groups {
		field := func(name string) string { return fmt.Sprintf("requests[%d]%s", i, name) }
		if p == nil {
			return fieldErr(field(""), "missing")
		}
		if _, ok := l7ProtocolOf[p.GetProtocol()]; !ok {
			return fieldErr(field(".protocol"), "unknown value %d", p.GetProtocol())
		}
		if p.GetStatus() > MaxHTTPStatus {
			return fieldErr(field(".status"), "%d is above %d", p.GetStatus(), MaxHTTPStatus)
		}
		if p.GetFailed() > p.GetCount() {
			return fieldErr(field(".failed"), "%d failed of %d requests", p.GetFailed(), p.GetCount())
		}
		if len(p.GetDnsAnswers()) > flow.MaxAnswers {
			return fieldErr(field(".dns_answers"), "%d answers, at most %d", len(p.GetDnsAnswers()), flow.MaxAnswers)
		}
		for _, s := range []struct{ name, v string }{
			{".method", p.GetMethod()}, {".path", p.GetPath()}, {".host", p.GetHost()}, {".dns_query", p.GetDnsQuery()},
			{".dns_type", p.GetDnsType()}, {".dns_rcode", p.GetDnsRcode()}, {".error", p.GetError()},
		} {
			if msg := stringProblem(s.v); msg != "" {
				return fieldErr(field(s.name), "%s", msg)
			}
		}
		if err := checkMap(field(".http_headers"), p.GetHttpHeaders(), MaxHeaders, MaxHeaderNameLen, MaxString); err != nil {
			return err
		}
		for j, b := range p.GetDnsAnswers() {
			if _, ok := netip.AddrFromSlice(b); !ok {
				return fieldErr(field(fmt.Sprintf(".dns_answers[%d]", j)), "%d bytes, want 4 or 16", len(b))
			}
		}
	}
	return nil
}

// fillRequests converts request groups checkRequests passed.
func fillRequests(groups []*pb.Requests) []flow.Requests {
	if len(groups) == 0 {
		return nil
	}
	out := make([]flow.Requests, len(groups))
	for i, p := range groups {
		g := &out[i]
		g.Protocol = l7ProtocolOf[p.GetProtocol()]
		if len(p.GetHttpHeaders()) > 0 {
			g.Headers = make(map[string]string, len(p.GetHttpHeaders()))
			for k, v := range p.GetHttpHeaders() {
				g.Headers[k] = v
			}
		}
		for _, b := range p.GetDnsAnswers() {
			a, _ := netip.AddrFromSlice(b)
			g.Answers = append(g.Answers, a)
		}
		g.TLS, g.Method, g.Path, g.Host, g.Status = p.GetTls(), p.GetMethod(), p.GetPath(), p.GetHost(), int(p.GetStatus())
		g.Query, g.QType, g.RCode, g.Error = p.GetDnsQuery(), p.GetDnsType(), p.GetDnsRcode(), p.GetError()
		g.Count, g.Failed, g.Latency = p.GetCount(), p.GetFailed(), decodeRTT(p.GetLatency())
	}
	return out
}

func encodeRTT(r *flow.RTT) *pb.RTT {
	if r == nil {
		return nil
	}
	return &pb.RTT{MinUs: r.MinMicros, AvgUs: r.AvgMicros, MaxUs: r.MaxMicros}
}

// decode checks p and fills r; the error's Index is left for the caller.
func decode(p *pb.Record, r *flow.Record) *FieldError {
	if err := check(p); err != nil {
		return err
	}
	r.Observer, r.Protocol, r.Verdict = observerOf[p.GetObserver()], protocolOf[p.GetProtocol()], verdictOf[p.GetVerdict()]
	r.Time, r.Start, r.ConnStart = fromUnixNano(p.GetTimeUnixNano()), fromUnixNano(p.GetStartUnixNano()), fromUnixNano(p.GetConnStartUnixNano())
	r.Node = p.GetNode()
	r.IPVersion = int(p.GetIpVersion())
	fillEndpoint(p.GetSource(), &r.Source)
	fillEndpoint(p.GetDestination(), &r.Destination)
	r.Opened, r.Closed, r.Refused = p.GetOpened(), p.GetClosed(), p.GetRefused()
	r.TimedOut, r.FailedOther = p.GetTimedOut(), p.GetFailedOther()
	r.ResetsBySrc, r.ResetsByDst = p.GetResetsBySrc(), p.GetResetsByDst()
	r.Retransmits, r.SYNRetrans = p.GetRetransmits(), p.GetSynRetrans()
	r.RTT, r.ConnectLatency = decodeRTT(p.GetRtt()), decodeRTT(p.GetConnectLatency())
	r.BytesToDst, r.BytesToSrc = p.GetBytesToDst(), p.GetBytesToSrc()
	r.SegmentsToDst, r.SegmentsToSrc = p.GetSegmentsToDst(), p.GetSegmentsToSrc()
	r.DatagramsToDst, r.DatagramsToSrc = p.GetDatagramsToDst(), p.GetDatagramsToSrc()
	r.RetransToDst, r.RetransToSrc = p.GetRetransToDst(), p.GetRetransToSrc()
	if len(p.GetDrops()) > 0 {
		r.Drops = make(map[string]uint64, len(p.GetDrops()))
		for k, v := range p.GetDrops() {
			r.Drops[k] = v
		}
	}
	r.Requests = fillRequests(p.GetRequests())
	return nil
}

// check is what decode refuses, without building a record: the agent runs
// it on every record it ships, so it allocates nothing for a valid one.
func check(p *pb.Record) *FieldError {
	if p == nil {
		return fieldErr("record", "missing")
	}
	if _, ok := observerOf[p.GetObserver()]; !ok {
		return fieldErr("observer", "unknown value %d", p.GetObserver())
	}
	if _, ok := protocolOf[p.GetProtocol()]; !ok {
		return fieldErr("protocol", "unknown value %d", p.GetProtocol())
	}
	if _, ok := verdictOf[p.GetVerdict()]; !ok {
		return fieldErr("verdict", "unknown value %d", p.GetVerdict())
	}
	if v := p.GetIpVersion(); v != 4 && v != 6 {
		return fieldErr("ip_version", "%d, want 4 or 6", v)
	}
	if msg := stringProblem(p.GetNode()); msg != "" {
		return fieldErr("node", "%s", msg)
	}
	if err := checkEndpoint("source", p.GetSource()); err != nil {
		return err
	}
	if err := checkEndpoint("destination", p.GetDestination()); err != nil {
		return err
	}
	if err := checkDrops(p.GetDrops()); err != nil {
		return err
	}
	return checkRequests(p.GetRequests())
}

// checkDrops bounds drop reasons as the agent names them: snake_case names
// of the kernel's enum, which become metric labels downstream.
func checkDrops(drops map[string]uint64) *FieldError {
	if len(drops) > MaxDropReasons {
		return fieldErr("drops", "%d reasons, at most %d", len(drops), MaxDropReasons)
	}
	for k := range drops {
		if k == "" || len(k) > MaxDropReasonLen {
			return fieldErr("drops", "a reason of %d bytes, want 1 to %d", len(k), MaxDropReasonLen)
		}
		for _, c := range []byte(k) {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
				return fieldErr("drops", "reason %q is not snake_case", k)
			}
		}
	}
	return nil
}

func checkEndpoint(field string, p *pb.Endpoint) *FieldError {
	if p == nil {
		return fieldErr(field, "missing")
	}
	if _, ok := netip.AddrFromSlice(p.GetIp()); !ok {
		return fieldErr(field+".ip", "%d bytes, want 4 or 16", len(p.GetIp()))
	}
	if p.GetPort() > 0xffff {
		return fieldErr(field+".port", "%d is above 65535", p.GetPort())
	}
	if _, ok := kindOf[p.GetKind()]; !ok {
		return fieldErr(field+".kind", "unknown value %d", p.GetKind())
	}
	if len(p.GetCommand()) > MaxString {
		return fieldErr(field+".command", "%d bytes, at most %d", len(p.GetCommand()), MaxString)
	}
	for _, s := range []struct{ name, v string }{
		{"container_id", p.GetContainerId()}, {"namespace", p.GetNamespace()}, {"pod", p.GetPod()},
		{"container", p.GetContainer()}, {"node_name", p.GetNodeName()}, {"dns_name", p.GetDnsName()},
		{"workload.kind", p.GetWorkload().GetKind()}, {"workload.name", p.GetWorkload().GetName()},
		{"service.namespace", p.GetService().GetNamespace()}, {"service.name", p.GetService().GetName()},
	} {
		if msg := stringProblem(s.v); msg != "" {
			return fieldErr(field+"."+s.name, "%s", msg)
		}
	}
	if len(p.GetLabels()) > 0 {
		return checkMap(field+".labels", p.GetLabels(), MaxLabels, MaxLabelKeyLen, MaxLabelValueLen)
	}
	return nil
}

// fillEndpoint converts an endpoint checkEndpoint passed.
func fillEndpoint(p *pb.Endpoint, e *flow.Endpoint) {
	e.IP, _ = netip.AddrFromSlice(p.GetIp())
	e.Port, e.Kind = uint16(p.GetPort()), kindOf[p.GetKind()]
	e.Netns, e.PID, e.Command, e.CgroupID = p.GetNetns(), p.GetPid(), string(p.GetCommand()), p.GetCgroupId()
	e.ContainerID, e.Namespace, e.Pod, e.Container = p.GetContainerId(), p.GetNamespace(), p.GetPod(), p.GetContainer()
	e.NodeName, e.HostNetwork, e.DNSName = p.GetNodeName(), p.GetHostNetwork(), p.GetDnsName()
	if w := p.GetWorkload(); w != nil {
		e.Workload = &flow.Workload{Kind: w.GetKind(), Name: w.GetName()}
	}
	if s := p.GetService(); s != nil {
		e.Service = &flow.ServiceRef{Namespace: s.GetNamespace(), Name: s.GetName()}
	}
	if len(p.GetLabels()) > 0 {
		e.Labels = make(map[string]string, len(p.GetLabels()))
		for k, v := range p.GetLabels() {
			e.Labels[k] = v
		}
	}
}

// checkMap bounds a string map (labels, headers): entries, key and value
// lengths, UTF-8.
func checkMap(field string, m map[string]string, maxEntries, maxKey, maxValue int) *FieldError {
	if len(m) > maxEntries {
		return fieldErr(field, "%d entries, at most %d", len(m), maxEntries)
	}
	for k, v := range m {
		switch {
		case k == "":
			return fieldErr(field, "an empty key")
		case len(k) > maxKey:
			return fieldErr(field, "key of %d bytes, at most %d", len(k), maxKey)
		case len(v) > maxValue:
			return fieldErr(field+"["+k+"]", "value of %d bytes, at most %d", len(v), maxValue)
		case !utf8.ValidString(k) || !utf8.ValidString(v):
			return fieldErr(field, "not UTF-8")
		}
	}
	return nil
}

// stringProblem is what is wrong with a string field ("": nothing): a
// bound, and UTF-8, which protobuf requires of strings: a record that
// breaks it would fail its whole batch at marshalling. The field's name is
// built by the caller only when there is a problem.
func stringProblem(s string) string {
	if len(s) > MaxString {
		return fmt.Sprintf("%d bytes, at most %d", len(s), MaxString)
	}
	if !utf8.ValidString(s) {
		return "not UTF-8"
	}
	return ""
}

func decodeRTT(p *pb.RTT) *flow.RTT {
	if p == nil {
		return nil
	}
	return &flow.RTT{MinMicros: p.GetMinUs(), AvgMicros: p.GetAvgUs(), MaxMicros: p.GetMaxUs()}
}

// unixNano keeps the zero time as 0: time.Time{}.UnixNano() is not.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNano returns times in UTC, 0 as the zero time.
func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}
