package wire

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/flowlens/flowlens/api/flowlens/v1"
	"github.com/flowlens/flowlens/internal/flow"
)

// fill sets every field reachable from v to a value that is not zero,
// distinct per field where the type allows (n counts fields), so a field
// the wire forgets, or two it swaps, shows as a difference.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Struct:
		switch v.Interface().(type) {
		case time.Time:
			v.Set(reflect.ValueOf(time.Unix(1_700_000_000+int64(*n), int64(*n)).UTC()))
			return
		case netip.Addr:
			v.Set(reflect.ValueOf(netip.AddrFrom4([4]byte{10, 0, 0, byte(*n)})))
			return
		}
		for i := range v.NumField() {
			fill(v.Field(i), n)
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), n)
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		v.SetMapIndex(k, e)
	case reflect.String:
		v.SetString("s" + strings.Repeat("x", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if v.CanInt() {
			v.SetInt(int64(*n))
		} else {
			v.SetUint(uint64(*n))
		}
	default:
		panic("fill: no value for " + v.Type().String())
	}
}

// fullRecord has every field set, the closed sets to valid values.
func fullRecord() flow.Record {
	var r flow.Record
	n := 0
	fill(reflect.ValueOf(&r).Elem(), &n)
	r.Observer, r.Protocol, r.Verdict, r.IPVersion = "server", flow.UDP, flow.VerdictUnanswered, 6
	r.Source.Kind, r.Destination.Kind = flow.KindService, flow.KindWorld
	r.Destination.IP = netip.MustParseAddr("2001:db8::7")
	r.Drops = map[string]uint64{"netfilter_drop": 20, "no_socket": 1}
	g := &r.Requests[0]
	g.Protocol, g.Status, g.Failed = flow.HTTP, 503, g.Count
	g.Headers = map[string]string{"x-request-id": "7f3a", "user-agent": "curl/8.5"}
	dns := flow.Requests{Protocol: flow.DNS, Query: "api.example.com", QType: "AAAA", RCode: "noerror", Count: 3,
		Answers: []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1")}}
	r.Requests = append(r.Requests, dns)
	return r
}

// roundTrip encodes, marshals, unmarshals and decodes recs as a hub gets them.
func roundTrip(t *testing.T, recs ...flow.Record) []flow.Record {
	t.Helper()
	b := &pb.Batch{Seq: 1}
	for i := range recs {
		p, err := Encode(&recs[i])
		if err != nil {
			t.Fatalf("encode %d: %v", i, err)
		}
		b.Records = append(b.Records, p)
	}
	data, err := proto.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var got pb.Batch
	if err := proto.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	out, err := Records(&got)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

func TestRoundTripEveryField(t *testing.T) {
	want := fullRecord()
	// The filler must reach every field, or a new one could be zero on
	// both sides and pass unnoticed.
	assertNoZeroField(t, reflect.ValueOf(want), "Record")
	got := roundTrip(t, want)
	if !reflect.DeepEqual(got, []flow.Record{want}) {
		t.Fatalf("round trip changed the record:\n got %+v\nwant %+v", got[0], want)
	}
}

func assertNoZeroField(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	if v.IsZero() {
		t.Errorf("%s is zero in the test record", path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		assertNoZeroField(t, v.Elem(), path)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() || v.Type() == reflect.TypeFor[netip.Addr]() {
			return
		}
		for i := range v.NumField() {
			assertNoZeroField(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	}
}

func TestRoundTripZeroValues(t *testing.T) {
	// Unset times, pointers and maps stay unset: 0 is not 1970 and an empty
	// label set is not a nil one that became empty.
	r := flow.Record{Observer: "unknown", Protocol: flow.TCP, Verdict: flow.VerdictClosed, IPVersion: 4,
		Source: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1")}, Destination: flow.Endpoint{IP: netip.MustParseAddr("::ffff:10.0.0.2"), Labels: map[string]string{}}}
	got := roundTrip(t, r)[0]
	r.Destination.Labels = nil
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("got %+v\nwant %+v", got, r)
	}
}

func TestEveryEnumValue(t *testing.T) {
	base := fullRecord()
	check := func(r flow.Record) {
		t.Helper()
		if got := roundTrip(t, r)[0]; !reflect.DeepEqual(got, r) {
			t.Errorf("got %s/%s/%s/%s, want %s/%s/%s/%s", got.Observer, got.Protocol, got.Verdict, got.Source.Kind, r.Observer, r.Protocol, r.Verdict, r.Source.Kind)
		}
	}
	for _, v := range flow.Verdicts {
		r := base
		r.Verdict = v
		check(r)
	}
	for _, k := range append([]flow.Kind{""}, flow.Kinds...) {
		r := base
		r.Source.Kind = k
		check(r)
	}
	for _, p := range []flow.Protocol{flow.TCP, flow.UDP} {
		r := base
		r.Protocol = p
		check(r)
	}
	for _, o := range []flow.Role{flow.RoleUnknown, flow.RoleClient, flow.RoleServer} {
		r := base
		r.Observer = o.String()
		check(r)
	}
	for _, p := range flow.L7Protocols {
		r := base
		r.Requests = []flow.Requests{{Protocol: p, Count: 1}}
		check(r)
	}
	// Every enum value of the protocol has a flow value: a new one added to
	// the .proto but not here fails.
	for name, n := range map[string]int{"verdict": len(pb.Verdict_name), "kind": len(pb.Kind_name), "protocol": len(pb.Protocol_name), "observer": len(pb.Observer_name), "l7": len(pb.L7Protocol_name)} {
		have := map[string]int{"verdict": len(verdictOf) + 1, "kind": len(kindOf), "protocol": len(protocolOf) + 1, "observer": len(observerOf), "l7": len(l7ProtocolOf) + 1}[name]
		if have != n {
			t.Errorf("%s: the protocol has %d values, wire maps %d (+ unspecified)", name, n, have)
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		field  string
		mutate func(*flow.Record)
	}{
		{"observer", func(r *flow.Record) { r.Observer = "" }},
		{"protocol", func(r *flow.Record) { r.Protocol = "sctp" }},
		{"verdict", func(r *flow.Record) { r.Verdict = "" }},
		{"ip_version", func(r *flow.Record) { r.IPVersion = 5 }},
		{"source.ip", func(r *flow.Record) { r.Source.IP = netip.Addr{} }},
		{"destination.ip", func(r *flow.Record) { r.Destination.IP = netip.MustParseAddr("fe80::1%eth0") }},
		{"destination.kind", func(r *flow.Record) { r.Destination.Kind = "cat" }},
		{"node", func(r *flow.Record) { r.Node = "\xff" }},
		{"source.pod", func(r *flow.Record) { r.Source.Pod = strings.Repeat("p", MaxString+1) }},
		{"source.command", func(r *flow.Record) { r.Source.Command = strings.Repeat("c", MaxString+1) }},
		{"destination.workload.name", func(r *flow.Record) { r.Destination.Workload.Name = "\xc3" }},
		{"source.service.namespace", func(r *flow.Record) { r.Source.Service.Namespace = strings.Repeat("n", MaxString+1) }},
		{"source.labels", func(r *flow.Record) { r.Source.Labels = map[string]string{"": "v"} }},
		{"requests[0].protocol", func(r *flow.Record) { r.Requests[0].Protocol = "ftp" }},
		{"requests[0].status", func(r *flow.Record) { r.Requests[0].Status = -1 }},
		{"requests[1].failed", func(r *flow.Record) { r.Requests[1].Failed = 4 }},
		{"requests[1].dns_answers[1]", func(r *flow.Record) { r.Requests[1].Answers[1] = netip.Addr{} }},
		{"requests[1].dns_query", func(r *flow.Record) { r.Requests[1].Query = "\xff" }},
		{"destination.dns_name", func(r *flow.Record) { r.Destination.DNSName = strings.Repeat("d", MaxString+1) }},
		{"source.labels[k]", func(r *flow.Record) {
			r.Source.Labels = map[string]string{"k": strings.Repeat("v", MaxLabelValueLen+1)}
		}},
	} {
		r := fullRecord()
		tc.mutate(&r)
		_, err := Encode(&r)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: got %v, want an error on that field", tc.field, err)
		}
	}
	// A process may name itself with bytes that are not UTF-8: carried.
	r := fullRecord()
	r.Source.Command = "\xff\x1b[2J"
	if got := roundTrip(t, r)[0].Source.Command; got != r.Source.Command {
		t.Errorf("command %q came back as %q", r.Source.Command, got)
	}
}

func TestRecordsRefuses(t *testing.T) {
	good := fullRecord()
	valid := func() *pb.Record {
		p, err := Encode(&good)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	labels := map[string]string{}
	for i := range MaxLabels + 1 {
		labels[strings.Repeat("k", i+1)] = "v"
	}
	reasons := map[string]uint64{}
	for i := range MaxDropReasons + 1 {
		reasons[fmt.Sprintf("r%d", i)] = 1
	}
	for _, tc := range []struct {
		field, msg string
		mutate     func(*pb.Record)
	}{
		{"source.ip", "5 bytes, want 4 or 16", func(p *pb.Record) { p.Source.Ip = []byte{1, 2, 3, 4, 5} }},
		{"destination.ip", "0 bytes, want 4 or 16", func(p *pb.Record) { p.Destination.Ip = nil }},
		{"destination.port", "65536 is above 65535", func(p *pb.Record) { p.Destination.Port = 65536 }},
		{"verdict", "unknown value 0", func(p *pb.Record) { p.Verdict = 0 }},
		{"verdict", "unknown value 42", func(p *pb.Record) { p.Verdict = 42 }},
		{"protocol", "unknown value 3", func(p *pb.Record) { p.Protocol = 3 }},
		{"observer", "unknown value 9", func(p *pb.Record) { p.Observer = 9 }},
		{"source.kind", "unknown value 6", func(p *pb.Record) { p.Source.Kind = 6 }},
		{"ip_version", "0, want 4 or 6", func(p *pb.Record) { p.IpVersion = 0 }},
		{"source", "missing", func(p *pb.Record) { p.Source = nil }},
		{"source.labels", "257 entries, at most 256", func(p *pb.Record) { p.Source.Labels = labels }},
		{"source.labels", "key of 318 bytes, at most 317", func(p *pb.Record) { p.Source.Labels = map[string]string{strings.Repeat("k", 318): ""} }},
		{"drops", "reason \"Netfilter\" is not snake_case", func(p *pb.Record) { p.Drops = map[string]uint64{"Netfilter": 1} }},
		{"drops", "a reason of 0 bytes, want 1 to 64", func(p *pb.Record) { p.Drops = map[string]uint64{"": 1} }},
		{"drops", "a reason of 65 bytes, want 1 to 64", func(p *pb.Record) { p.Drops = map[string]uint64{strings.Repeat("d", 65): 1} }},
		{"drops", "257 reasons, at most 256", func(p *pb.Record) { p.Drops = reasons }},
		{"requests", "257 groups, at most 256", func(p *pb.Record) { p.Requests = make([]*pb.Requests, MaxRequestGroups+1) }},
		{"requests[1]", "missing", func(p *pb.Record) { p.Requests[1] = nil }},
		{"requests[0].protocol", "unknown value 0", func(p *pb.Record) { p.Requests[0].Protocol = 0 }},
		{"requests[0].protocol", "unknown value 5", func(p *pb.Record) { p.Requests[0].Protocol = 5 }},
		{"requests[0].status", "1000 is above 999", func(p *pb.Record) { p.Requests[0].Status = 1000 }},
		{"requests[1].failed", "4 failed of 3 requests", func(p *pb.Record) { p.Requests[1].Failed = 4 }},
		{"requests[1].dns_answers", "9 answers, at most 8", func(p *pb.Record) { p.Requests[1].DnsAnswers = make([][]byte, 9) }},
		{"requests[1].dns_answers[0]", "3 bytes, want 4 or 16", func(p *pb.Record) { p.Requests[1].DnsAnswers[0] = []byte{1, 2, 3} }},
		{"requests[0].http_headers", "key of 65 bytes, at most 64", func(p *pb.Record) { p.Requests[0].HttpHeaders = map[string]string{strings.Repeat("h", 65): ""} }},
		{"requests[0].http_headers[x-id]", "value of 1025 bytes, at most 1024", func(p *pb.Record) {
			p.Requests[0].HttpHeaders = map[string]string{"x-id": strings.Repeat("v", MaxString+1)}
		}},
		{"requests[0].path", "1025 bytes, at most 1024", func(p *pb.Record) { p.Requests[0].Path = strings.Repeat("/", MaxString+1) }},
		{"source.dns_name", "not UTF-8", func(p *pb.Record) { p.Source.DnsName = "\xc3" }},
	} {
		b := &pb.Batch{Records: []*pb.Record{valid(), valid(), valid()}}
		tc.mutate(b.Records[2])
		recs, err := Records(b)
		want := "record 2: " + tc.field + ": " + tc.msg
		if err == nil || err.Error() != want || recs != nil {
			t.Errorf("got %v, want %q", err, want)
		}
	}
	if _, err := Records(&pb.Batch{Records: []*pb.Record{nil}}); err == nil || err.Error() != "record 0: record: missing" {
		t.Errorf("nil record: %v", err)
	}
}
