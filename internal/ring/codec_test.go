package ring

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
)

// filled is a record with every field set (testutil.Fill): a field added
// to flow.Record that the codec does not carry fails the round trip.
func filled(seed int) flow.Record {
	var r flow.Record
	n := seed * 1000
	testutil.Fill(reflect.ValueOf(&r).Elem(), time.Unix(1_700_000_000, 0), &n)
	return r
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
	r := filled(1)
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
	r := filled(3)
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
