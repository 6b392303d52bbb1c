package history

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

var t0 = time.Date(2026, 11, 24, 6, 40, 0, 0, time.UTC)

func open(t *testing.T, cfg Config) *DB {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	db, err := Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// filled returns a record with every field set, to a value derived from
// seed: a field added to flow.Record is set too, so a table that does not
// store it fails the round trip.
func filled(seed int) flow.Record {
	var r flow.Record
	n := seed * 1000
	fill(reflect.ValueOf(&r).Elem(), &n)
	return r
}

func fill(v reflect.Value, n *int) {
	*n++
	switch x := v.Addr().Interface().(type) {
	case *time.Time:
		*x = t0.Add(time.Duration(*n)*time.Second + time.Duration(*n)) // nanoseconds kept
		return
	case *netip.Addr:
		*x = netip.AddrFrom4([4]byte{10, byte(*n >> 16), byte(*n >> 8), byte(*n)})
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n%100 + 1)) // ip_version is a TINYINT
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i), n)
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for i := range 2 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(k, n)
			fill(e, n)
			m.SetMapIndex(k, e)
			_ = i
		}
		v.Set(m)
	default:
		panic(fmt.Sprintf("fill: a field of kind %s: teach fill and the columns about it", v.Kind()))
	}
}

// sparse is a record with the zero value where a field may have one:
// nil pointers and maps, zero times, no addresses.
func sparse(at time.Time) flow.Record {
	return flow.Record{Time: at, Node: "n", Protocol: flow.UDP,
		Source: flow.Endpoint{Labels: map[string]string{}}, Destination: flow.Endpoint{Port: 53}}
}

func TestRecordRoundTrip(t *testing.T) {
	db := open(t, Config{})
	in := []flow.Record{filled(1), sparse(t0.Add(time.Hour)), filled(2)}
	in[2].Source.IP = netip.MustParseAddr("fe80::1%eth0")
	ctx := context.Background()
	if err := db.Append(ctx, []Event{{Pos: 1, Time: t0, Agent: "a", Incarnation: 1, Seq: 1, Records: in}}); err != nil {
		t.Fatal(err)
	}
	var replayed []flow.Record
	if err := db.Replay(ctx, 0, func(e Event) error { replayed = append(replayed, e.Records...); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.Checkpoint(ctx, Checkpoint{Pos: 1, Time: t0, Flows: in}); err != nil {
		t.Fatal(err)
	}
	flows, err := db.Flows(ctx, FlowQuery{})
	if err != nil {
		t.Fatal(err)
	}
	want := []flow.Record{in[0], in[2], in[1]} // flows come by time
	for name, got := range map[string][]flow.Record{"log": replayed, "flows": flows} {
		if name == "log" {
			got = []flow.Record{got[0], got[2], got[1]}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s round trip:\n got %+v\nwant %+v", name, got, want)
		}
	}
}
