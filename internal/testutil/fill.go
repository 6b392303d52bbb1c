package testutil

import (
	"fmt"
	"net/netip"
	"reflect"
	"time"
)

// Fill sets every field v reaches to a value that is not its zero, made
// from the counter n (one step per field) and times from base: a round
// trip through a codec or a table that drops or mixes up a field fails, and
// so does one that a field added later does not reach. Ints stay below 101
// (a TINYINT column holds them); a kind it does not know panics, to be
// taught.
func Fill(v reflect.Value, base time.Time, n *int) {
	*n++
	switch x := v.Addr().Interface().(type) {
	case *time.Time:
		*x = base.Add(time.Duration(*n)*time.Second + time.Duration(*n)) // nanoseconds kept
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
		v.SetInt(int64(*n%100 + 1))
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Struct:
		for i := range v.NumField() {
			Fill(v.Field(i), base, n)
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		Fill(v.Elem(), base, n)
	case reflect.Slice:
		l := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			Fill(l.Index(i), base, n)
		}
		v.Set(l)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range 2 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			Fill(k, base, n)
			Fill(e, base, n)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	default:
		panic(fmt.Sprintf("Fill: a field of kind %s: teach Fill, and what it tests, about it", v.Kind()))
	}
}
