package ring

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

// fill sets every field v reaches to a value that is not its zero, made
// from seed: a field added to flow.Record that the codec does not carry
// fails the round trip.
func fill(t *testing.T, v reflect.Value, seed int) {
	switch x := v.Addr().Interface().(type) {
	case *time.Time:
		*x = time.Unix(1_700_000_000+int64(seed), int64(seed)*1001)
		return
	case *netip.Addr:
		*x = netip.AddrFrom4([4]byte{10, 0, byte(seed >> 8), byte(seed)})
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", seed))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(seed))
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(seed))
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, v.Field(i), seed*31+i+1)
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), seed+1)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(t, v.Index(i), seed+i+1)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for i := range 2 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(t, k, seed+i+1)
			fill(t, e, seed+i+7)
			v.SetMapIndex(k, e)
		}
	default:
		t.Fatalf("fill: no value for a %s: teach fill and the codec", v.Type())
	}
}

func roundTrip(t *testing.T, r *flow.Record) flow.Record {
	t.Helper()
	var got flow.Record
	if err := decodeRecord(encodeRecord(nil, r), &got); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestCodecCarriesEveryField(t *testing.T) {
	var r flow.Record
	fill(t, reflect.ValueOf(&r).Elem(), 1)
	r.Source.IP = netip.MustParseAddr("fe80::1%eth0")
	r.Start = r.Start.UTC()
	if got := roundTrip(t, &r); !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip changed the record:\ngot  %+v\nwant %+v", got, r)
	}
}

// What the API shows is what was written: empty maps and the zero time
// (both as JSON shows them), and times in any zone.
func TestCodecKeepsJSON(t *testing.T) {
	for name, r := range map[string]flow.Record{
		"zero":       {},
		"empty maps": {Drops: map[string]uint64{}, Source: flow.Endpoint{Labels: map[string]string{}}, Requests: []flow.Requests{{Headers: map[string]string{}}}},
		"zones": {Time: time.Date(2026, 3, 1, 2, 3, 4, 5, time.FixedZone("CET", 3600)), Start: time.Now(),
			ConnStart: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)},
		"ipv6": {Source: flow.Endpoint{IP: netip.MustParseAddr("2001:db8::1"), Port: 443}, Destination: flow.Endpoint{IP: netip.MustParseAddr("::ffff:10.0.0.1")}},
	} {
		got := roundTrip(t, &r)
		want, _ := json.Marshal(&r)
		have, _ := json.Marshal(&got)
		if string(have) != string(want) {
			t.Errorf("%s: JSON after the round trip\n%s\nwant\n%s", name, have, want)
		}
	}
}

func TestCodecRefusesTruncated(t *testing.T) {
	var r flow.Record
	fill(t, reflect.ValueOf(&r).Elem(), 3)
	b := encodeRecord(nil, &r)
	for n := range len(b) {
		var got flow.Record
		if err := decodeRecord(b[:n], &got); err == nil {
			t.Fatalf("decoded %d of %d bytes without an error", n, len(b))
		}
	}
}

// Records of every size, written in batches past the capacity, read back
// as written however the buffer wrapped and grew.
func TestRingKeepsRecordsAcrossWrapAndGrowth(t *testing.T) {
	const capacity = 50
	r := New(capacity)
	var written []flow.Record
	for batch := range 40 {
		var recs []flow.Record
		for i := range batch % 7 {
			n := len(written) + i
			recs = append(recs, flow.Record{Opened: uint32(n), Node: strings.Repeat("x", n*37%3000)})
		}
		r.Write(recs)
		written = append(written, recs...)
		oldest, next := r.Bounds()
		got, lost := r.Read(oldest, capacity, nil)
		if lost != 0 || uint64(len(got)) != next-oldest {
			t.Fatalf("batch %d: read %d lost %d, want %d", batch, len(got), lost, next-oldest)
		}
		for i, e := range got {
			if w := &written[oldest+uint64(i)]; e.Record.Opened != w.Opened || e.Record.Node != w.Node {
				t.Fatalf("batch %d: entry %d is record %d (%d bytes of node), want %d (%d)", batch, oldest+uint64(i),
					e.Record.Opened, len(e.Record.Node), w.Opened, len(w.Node))
			}
		}
	}
}
