package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// The ring keeps its records in this compact binary form, in one byte
// buffer: a flow.Record is ≈700 bytes full of pointers (strings, maps, RTTs,
// requests), and 65,536 of them were what every GC cycle of the agent
// scanned. Bytes hold no pointers: the collector skips them, and a record
// takes a few hundred bytes. Reads decode; they are rare next to writes.
//
// The encoding is private to the process: no version, no stability. Every
// field the JSON shows comes back as the JSON shows it (a nil and an empty
// map are both omitted, so both decode as nil; a time keeps its instant and
// its zone's offset).

// encodeRecord appends r's encoding to b.
func encodeRecord(b []byte, r *flow.Record) []byte {
	e := encoder{b}
	e.time(r.Time)
	e.time(r.Start)
	e.str(r.Node)
	e.str(r.Observer)
	e.str(string(r.Protocol))
	e.int(int64(r.IPVersion))
	e.str(string(r.Verdict))
	e.time(r.ConnStart)
	e.endpoint(&r.Source)
	e.endpoint(&r.Destination)
	for _, v := range [...]uint32{r.Opened, r.Closed, r.Refused, r.TimedOut, r.FailedOther, r.ResetsBySrc, r.ResetsByDst,
		r.Retransmits, r.SYNRetrans, r.SegmentsToDst, r.SegmentsToSrc, r.DatagramsToDst, r.DatagramsToSrc,
		r.RetransToDst, r.RetransToSrc} {
		e.uint(uint64(v))
	}
	e.rtt(r.RTT)
	e.rtt(r.ConnectLatency)
	e.uint(uint64(len(r.Drops)))
	for k, v := range r.Drops {
		e.str(k)
		e.uint(v)
	}
	e.uint(r.BytesToDst)
	e.uint(r.BytesToSrc)
	e.uint(uint64(len(r.Requests)))
	for i := range r.Requests {
		e.requests(&r.Requests[i])
	}
	return e.b
}

// decodeRecord fills r from an encoding encodeRecord made.
func decodeRecord(b []byte, r *flow.Record) error {
	d := decoder{b: b}
	r.Time = d.time()
	r.Start = d.time()
	r.Node = d.str()
	r.Observer = d.str()
	r.Protocol = flow.Protocol(d.str())
	r.IPVersion = int(d.int())
	r.Verdict = flow.Verdict(d.str())
	r.ConnStart = d.time()
	d.endpoint(&r.Source)
	d.endpoint(&r.Destination)
	for _, v := range [...]*uint32{&r.Opened, &r.Closed, &r.Refused, &r.TimedOut, &r.FailedOther, &r.ResetsBySrc, &r.ResetsByDst,
		&r.Retransmits, &r.SYNRetrans, &r.SegmentsToDst, &r.SegmentsToSrc, &r.DatagramsToDst, &r.DatagramsToSrc,
		&r.RetransToDst, &r.RetransToSrc} {
		*v = uint32(d.uint())
	}
	r.RTT = d.rtt()
	r.ConnectLatency = d.rtt()
	if n := d.count(); n > 0 {
		r.Drops = make(map[string]uint64, n)
		for range n {
			k := d.str()
			r.Drops[k] = d.uint()
		}
	}
	r.BytesToDst = d.uint()
	r.BytesToSrc = d.uint()
	if n := d.count(); n > 0 {
		r.Requests = make([]flow.Requests, n)
		for i := range r.Requests {
			d.requests(&r.Requests[i])
		}
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d bytes left over", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("decode a ring record: %w", d.err)
	}
	return nil
}

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }

func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *encoder) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}

// How a time's zone is kept: JSON shows only its offset.
const (
	zoneUTC = iota
	zoneLocal
	zoneFixed // any other: its offset at that instant, in seconds
)

func (e *encoder) time(t time.Time) {
	switch loc := t.Location(); loc {
	case time.UTC:
		e.b = append(e.b, zoneUTC)
	case time.Local:
		e.b = append(e.b, zoneLocal)
	default:
		_, off := t.Zone()
		e.b = append(e.b, zoneFixed)
		e.int(int64(off))
	}
	e.int(t.Unix())
	e.uint(uint64(t.Nanosecond()))
}

func (e *encoder) addr(a netip.Addr) {
	e.b = append(e.b, byte(a.BitLen()/8)) // 0, 4 or 16
	switch a.BitLen() {
	case 32:
		v := a.As4()
		e.b = append(e.b, v[:]...)
	case 128:
		v := a.As16()
		e.b = append(e.b, v[:]...)
		e.str(a.Zone())
	}
}

func (e *encoder) rtt(r *flow.RTT) {
	if r == nil {
		e.bool(false)
		return
	}
	e.bool(true)
	e.uint(uint64(r.MinMicros))
	e.uint(uint64(r.AvgMicros))
	e.uint(uint64(r.MaxMicros))
}

func (e *encoder) strings(m map[string]string) {
	e.uint(uint64(len(m)))
	for k, v := range m {
		e.str(k)
		e.str(v)
	}
}

func (e *encoder) endpoint(p *flow.Endpoint) {
	e.addr(p.IP)
	e.uint(uint64(p.Port))
	e.uint(uint64(p.Netns))
	e.uint(uint64(p.PID))
	e.str(p.Command)
	e.uint(p.CgroupID)
	e.str(p.ContainerID)
	e.str(string(p.Kind))
	e.str(p.Namespace)
	e.str(p.Pod)
	e.str(p.Container)
	e.bool(p.Workload != nil)
	if p.Workload != nil {
		e.str(p.Workload.Kind)
		e.str(p.Workload.Name)
	}
	e.strings(p.Labels)
	e.str(p.NodeName)
	e.bool(p.HostNetwork)
	e.bool(p.Service != nil)
	if p.Service != nil {
		e.str(p.Service.Namespace)
		e.str(p.Service.Name)
	}
	e.str(p.DNSName)
}

func (e *encoder) requests(q *flow.Requests) {
	e.str(string(q.Protocol))
	e.bool(q.TLS)
	e.str(q.Method)
	e.str(q.Path)
	e.str(q.Host)
	e.int(int64(q.Status))
	e.strings(q.Headers)
	e.str(q.Query)
	e.str(q.QType)
	e.str(q.RCode)
	e.uint(uint64(len(q.Answers)))
	for _, a := range q.Answers {
		e.addr(a)
	}
	e.str(q.Error)
	e.uint(uint64(q.Count))
	e.uint(uint64(q.Failed))
	e.rtt(q.Latency)
}

// decoder reads what encoder wrote. Its first error sticks, and every read
// after it gives zero values.
type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated")

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) uint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length, refusing one longer than what is left could hold.
func (d *decoder) count() int {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.fail(errShort)
		return 0
	}
	return int(n)
}

func (d *decoder) bytes(n int) []byte {
	if n > len(d.b) {
		d.fail(errShort)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if v := d.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) bool() bool { return d.byte() == 1 }

func (d *decoder) str() string {
	n := d.count()
	if n == 0 {
		return ""
	}
	return string(d.bytes(n))
}

func (d *decoder) time() time.Time {
	zone := d.byte()
	var off int64
	if zone == zoneFixed {
		off = d.int()
	}
	t := time.Unix(d.int(), int64(d.uint()))
	switch zone {
	case zoneUTC:
		return t.UTC()
	case zoneLocal:
		return t
	case zoneFixed:
		return t.In(time.FixedZone("", int(off)))
	}
	d.fail(fmt.Errorf("time zone kind %d", zone))
	return time.Time{}
}

func (d *decoder) addr() netip.Addr {
	switch n := d.byte(); n {
	case 0:
		return netip.Addr{}
	case 4:
		var v [4]byte
		copy(v[:], d.bytes(4))
		return netip.AddrFrom4(v)
	case 16:
		var v [16]byte
		copy(v[:], d.bytes(16))
		a := netip.AddrFrom16(v)
		if zone := d.str(); zone != "" {
			a = a.WithZone(zone)
		}
		return a
	default:
		d.fail(fmt.Errorf("address of %d bytes", n))
		return netip.Addr{}
	}
}

func (d *decoder) rtt() *flow.RTT {
	if !d.bool() {
		return nil
	}
	return &flow.RTT{MinMicros: uint32(d.uint()), AvgMicros: uint32(d.uint()), MaxMicros: uint32(d.uint())}
}

func (d *decoder) strings() map[string]string {
	n := d.count()
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := d.str()
		m[k] = d.str()
	}
	return m
}

func (d *decoder) endpoint(p *flow.Endpoint) {
	p.IP = d.addr()
	p.Port = uint16(d.uint())
	p.Netns = uint32(d.uint())
	p.PID = uint32(d.uint())
	p.Command = d.str()
	p.CgroupID = d.uint()
	p.ContainerID = d.str()
	p.Kind = flow.Kind(d.str())
	p.Namespace = d.str()
	p.Pod = d.str()
	p.Container = d.str()
	if d.bool() {
		p.Workload = &flow.Workload{Kind: d.str(), Name: d.str()}
	}
	p.Labels = d.strings()
	p.NodeName = d.str()
	p.HostNetwork = d.bool()
	if d.bool() {
		p.Service = &flow.ServiceRef{Namespace: d.str(), Name: d.str()}
	}
	p.DNSName = d.str()
}

func (d *decoder) requests(q *flow.Requests) {
	q.Protocol = flow.L7Protocol(d.str())
	q.TLS = d.bool()
	q.Method = d.str()
	q.Path = d.str()
	q.Host = d.str()
	q.Status = int(d.int())
	q.Headers = d.strings()
	q.Query = d.str()
	q.QType = d.str()
	q.RCode = d.str()
	if n := d.count(); n > 0 {
		q.Answers = make([]netip.Addr, n)
		for i := range q.Answers {
			q.Answers[i] = d.addr()
		}
	}
	q.Error = d.str()
	q.Count = uint32(d.uint())
	q.Failed = uint32(d.uint())
	q.Latency = d.rtt()
}
