package history

import (
	"database/sql/driver"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/topology"
)

// column maps one field of T to one table column: get gives the value to
// append (nil for NULL), set takes a scanned value back (nil for NULL).
// Each helper below builds both from one accessor, so a field cannot be
// written one way and read another.
type column[T any] struct {
	name, typ string
	get       func(*T) any
	set       func(*T, any) error
}

// number is a field stored as the DuckDB type that scans back as N.
func number[T any, N uint16 | uint32 | uint64 | int32 | int64](name, typ string, f func(*T) *N) column[T] {
	return column[T]{name, typ + " NOT NULL",
		func(t *T) any { return *f(t) },
		func(t *T, v any) error {
			n, ok := v.(N)
			if !ok {
				return fmt.Errorf("column %s: %T, want %T", name, v, n)
			}
			*f(t) = n
			return nil
		}}
}

func text[T any, S ~string](name string, f func(*T) *S) column[T] {
	return column[T]{name, "VARCHAR NOT NULL",
		func(t *T) any { return string(*f(t)) },
		func(t *T, v any) error {
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("column %s: %T, want string", name, v)
			}
			*f(t) = S(s)
			return nil
		}}
}

func boolean[T any](name string, f func(*T) *bool) column[T] {
	return column[T]{name, "BOOLEAN NOT NULL",
		func(t *T) any { return *f(t) },
		func(t *T, v any) error {
			b, ok := v.(bool)
			if !ok {
				return fmt.Errorf("column %s: %T, want bool", name, v)
			}
			*f(t) = b
			return nil
		}}
}

// stamp keeps a time to the nanosecond; the zero time is NULL. Times come
// back in UTC.
func stamp[T any](name string, f func(*T) *time.Time) column[T] {
	return column[T]{name, "TIMESTAMP_NS",
		func(t *T) any {
			if f(t).IsZero() {
				return nil
			}
			return *f(t)
		},
		func(t *T, v any) error {
			switch v := v.(type) {
			case nil:
				*f(t) = time.Time{}
			case time.Time:
				*f(t) = v.UTC()
			default:
				return fmt.Errorf("column %s: %T, want a time", name, v)
			}
			return nil
		}}
}

// address keeps an address as text (zone included); the zero Addr is NULL.
func address[T any](name string, f func(*T) *netip.Addr) column[T] {
	return column[T]{name, "VARCHAR",
		func(t *T) any {
			if !f(t).IsValid() {
				return nil
			}
			return f(t).String()
		},
		func(t *T, v any) error {
			switch v := v.(type) {
			case nil:
				*f(t) = netip.Addr{}
			case string:
				a, err := netip.ParseAddr(v)
				if err != nil {
					return fmt.Errorf("column %s: %w", name, err)
				}
				*f(t) = a
			default:
				return fmt.Errorf("column %s: %T, want string", name, v)
			}
			return nil
		}}
}

// mapping keeps a map as a MAP(VARCHAR, valType), keys sorted; a nil map
// is NULL. V is what DuckDB scans valType back as.
func mapping[T any, V string | uint64](name, valType string, f func(*T) *map[string]V) column[T] {
	return column[T]{name, "MAP(VARCHAR, " + valType + ")",
		func(t *T) any {
			m := *f(t)
			if m == nil {
				return nil
			}
			var om duckdb.OrderedMap
			for _, k := range slices.Sorted(maps.Keys(m)) {
				om.Set(k, m[k])
			}
			return om
		},
		func(t *T, v any) error {
			switch v := v.(type) {
			case nil:
				*f(t) = nil
			case duckdb.OrderedMap:
				m := make(map[string]V, v.Len())
				vals := v.Values()
				for i, k := range v.Keys() {
					ks, ok1 := k.(string)
					vs, ok2 := vals[i].(V)
					if !ok1 || !ok2 {
						return fmt.Errorf("column %s: entry %T=%T, want string=%T", name, k, vals[i], vs)
					}
					m[ks] = vs
				}
				*f(t) = m
			default:
				return fmt.Errorf("column %s: %T, want a map", name, v)
			}
			return nil
		}}
}

// nested prefixes the columns of a struct field of T.
func nested[T, E any](prefix string, f func(*T) *E, cols []column[E]) []column[T] {
	out := make([]column[T], len(cols))
	for i, c := range cols {
		out[i] = column[T]{prefix + c.name, c.typ,
			func(t *T) any { return c.get(f(t)) },
			func(t *T, v any) error { return c.set(f(t), v) }}
	}
	return out
}

// optional maps a pointer field of T to its struct's columns, made
// nullable: all NULL when the pointer is nil. The pointed-to columns are
// never NULL themselves, so a non-nil pointer reads back non-nil.
func optional[T, E any](prefix string, f func(*T) **E, cols []column[E]) []column[T] {
	out := make([]column[T], len(cols))
	for i, c := range cols {
		out[i] = column[T]{prefix + c.name, strings.TrimSuffix(c.typ, " NOT NULL"),
			func(t *T) any {
				if *f(t) == nil {
					return nil
				}
				return c.get(*f(t))
			},
			func(t *T, v any) error {
				if v == nil {
					return nil
				}
				if *f(t) == nil {
					*f(t) = new(E)
				}
				return c.set(*f(t), v)
			}}
	}
	return out
}

func u16[T any](name string, f func(*T) *uint16) column[T] { return number(name, "USMALLINT", f) }
func u32[T any](name string, f func(*T) *uint32) column[T] { return number(name, "UINTEGER", f) }
func u64[T any](name string, f func(*T) *uint64) column[T] { return number(name, "UBIGINT", f) }

var rttColumns = []column[flow.RTT]{
	u32("min_us", func(r *flow.RTT) *uint32 { return &r.MinMicros }),
	u32("avg_us", func(r *flow.RTT) *uint32 { return &r.AvgMicros }),
	u32("max_us", func(r *flow.RTT) *uint32 { return &r.MaxMicros }),
}

var endpointColumns = slices.Concat(
	[]column[flow.Endpoint]{
		address("ip", func(e *flow.Endpoint) *netip.Addr { return &e.IP }),
		u16("port", func(e *flow.Endpoint) *uint16 { return &e.Port }),
		u32("netns", func(e *flow.Endpoint) *uint32 { return &e.Netns }),
		u32("pid", func(e *flow.Endpoint) *uint32 { return &e.PID }),
		text("command", func(e *flow.Endpoint) *string { return &e.Command }),
		u64("cgroup_id", func(e *flow.Endpoint) *uint64 { return &e.CgroupID }),
		text("container_id", func(e *flow.Endpoint) *string { return &e.ContainerID }),
		text("kind", func(e *flow.Endpoint) *flow.Kind { return &e.Kind }),
		text("namespace", func(e *flow.Endpoint) *string { return &e.Namespace }),
		text("pod", func(e *flow.Endpoint) *string { return &e.Pod }),
		text("container", func(e *flow.Endpoint) *string { return &e.Container }),
	},
	optional("workload_", func(e *flow.Endpoint) **flow.Workload { return &e.Workload }, []column[flow.Workload]{
		text("kind", func(w *flow.Workload) *string { return &w.Kind }),
		text("name", func(w *flow.Workload) *string { return &w.Name }),
	}),
	[]column[flow.Endpoint]{
		mapping("labels", "VARCHAR", func(e *flow.Endpoint) *map[string]string { return &e.Labels }),
		text("node_name", func(e *flow.Endpoint) *string { return &e.NodeName }),
		boolean("host_network", func(e *flow.Endpoint) *bool { return &e.HostNetwork }),
		text("dns_name", func(e *flow.Endpoint) *string { return &e.DNSName }),
	},
	optional("service_", func(e *flow.Endpoint) **flow.ServiceRef { return &e.Service }, []column[flow.ServiceRef]{
		text("namespace", func(s *flow.ServiceRef) *string { return &s.Namespace }),
		text("name", func(s *flow.ServiceRef) *string { return &s.Name }),
	}),
)

// recordColumns is the one mapping of a flow.Record to columns, used by
// the log and the flows table.
var recordColumns = slices.Concat(
	[]column[flow.Record]{
		stamp("time", func(r *flow.Record) *time.Time { return &r.Time }),
		stamp("start", func(r *flow.Record) *time.Time { return &r.Start }),
		text("node", func(r *flow.Record) *string { return &r.Node }),
		text("observer", func(r *flow.Record) *string { return &r.Observer }),
		text("protocol", func(r *flow.Record) *flow.Protocol { return &r.Protocol }),
		{"ip_version", "TINYINT NOT NULL",
			func(r *flow.Record) any { return int8(r.IPVersion) },
			func(r *flow.Record, v any) error {
				n, ok := v.(int8)
				if !ok {
					return fmt.Errorf("column ip_version: %T, want int8", v)
				}
				r.IPVersion = int(n)
				return nil
			}},
		text("verdict", func(r *flow.Record) *flow.Verdict { return &r.Verdict }),
		stamp("connection_start", func(r *flow.Record) *time.Time { return &r.ConnStart }),
	},
	nested("src_", func(r *flow.Record) *flow.Endpoint { return &r.Source }, endpointColumns),
	nested("dst_", func(r *flow.Record) *flow.Endpoint { return &r.Destination }, endpointColumns),
	[]column[flow.Record]{
		u32("opened", func(r *flow.Record) *uint32 { return &r.Opened }),
		u32("closed", func(r *flow.Record) *uint32 { return &r.Closed }),
		u32("refused", func(r *flow.Record) *uint32 { return &r.Refused }),
		u32("timed_out", func(r *flow.Record) *uint32 { return &r.TimedOut }),
		u32("failed_other", func(r *flow.Record) *uint32 { return &r.FailedOther }),
		u32("resets_by_src", func(r *flow.Record) *uint32 { return &r.ResetsBySrc }),
		u32("resets_by_dst", func(r *flow.Record) *uint32 { return &r.ResetsByDst }),
		u32("retransmits", func(r *flow.Record) *uint32 { return &r.Retransmits }),
	},
	optional("rtt_", func(r *flow.Record) **flow.RTT { return &r.RTT }, rttColumns),
	optional("connect_latency_", func(r *flow.Record) **flow.RTT { return &r.ConnectLatency }, rttColumns),
	[]column[flow.Record]{
		u32("syn_retransmits", func(r *flow.Record) *uint32 { return &r.SYNRetrans }),
		u64("bytes_to_dst", func(r *flow.Record) *uint64 { return &r.BytesToDst }),
		u64("bytes_to_src", func(r *flow.Record) *uint64 { return &r.BytesToSrc }),
		u32("segments_to_dst", func(r *flow.Record) *uint32 { return &r.SegmentsToDst }),
		u32("segments_to_src", func(r *flow.Record) *uint32 { return &r.SegmentsToSrc }),
		u32("datagrams_to_dst", func(r *flow.Record) *uint32 { return &r.DatagramsToDst }),
		u32("datagrams_to_src", func(r *flow.Record) *uint32 { return &r.DatagramsToSrc }),
		u32("retrans_to_dst", func(r *flow.Record) *uint32 { return &r.RetransToDst }),
		u32("retrans_to_src", func(r *flow.Record) *uint32 { return &r.RetransToSrc }),
		mapping("drops", "UBIGINT", func(r *flow.Record) *map[string]uint64 { return &r.Drops }),
		list("requests", func(r *flow.Record) *[]flow.Requests { return &r.Requests }, requestColumns),
	},
)

// requestColumns are one flow.Requests as a struct of a list.
var requestColumns = slices.Concat(
	[]column[flow.Requests]{
		text("protocol", func(g *flow.Requests) *flow.L7Protocol { return &g.Protocol }),
		boolean("tls", func(g *flow.Requests) *bool { return &g.TLS }),
		text("method", func(g *flow.Requests) *string { return &g.Method }),
		text("path", func(g *flow.Requests) *string { return &g.Path }),
		text("host", func(g *flow.Requests) *string { return &g.Host }),
		mapping("http_headers", "VARCHAR", func(g *flow.Requests) *map[string]string { return &g.Headers }),
		{"status", "INTEGER NOT NULL",
			func(g *flow.Requests) any { return int32(g.Status) },
			func(g *flow.Requests, v any) error {
				n, ok := v.(int32)
				if !ok {
					return fmt.Errorf("column status: %T, want int32", v)
				}
				g.Status = int(n)
				return nil
			}},
		text("dns_query", func(g *flow.Requests) *string { return &g.Query }),
		text("dns_type", func(g *flow.Requests) *string { return &g.QType }),
		text("dns_rcode", func(g *flow.Requests) *string { return &g.RCode }),
		addresses("dns_answers", func(g *flow.Requests) *[]netip.Addr { return &g.Answers }),
		text("error", func(g *flow.Requests) *string { return &g.Error }),
		u32("count", func(g *flow.Requests) *uint32 { return &g.Count }),
		u32("failed", func(g *flow.Requests) *uint32 { return &g.Failed }),
	},
	optional("latency_", func(g *flow.Requests) **flow.RTT { return &g.Latency }, rttColumns),
)

// list keeps a slice field of T as a list of structs, one struct field per
// column of E, so SQL can unnest and query it; an empty slice is NULL and
// reads back nil.
func list[T, E any](name string, f func(*T) *[]E, cols []column[E]) column[T] {
	fields := make([]string, len(cols))
	for i, c := range cols {
		fields[i] = c.name + " " + strings.TrimSuffix(c.typ, " NOT NULL") // a struct's fields cannot be NOT NULL
	}
	return column[T]{name, "STRUCT(" + strings.Join(fields, ", ") + ")[]",
		func(t *T) any {
			es := *f(t)
			if len(es) == 0 {
				return nil
			}
			l := make([]any, len(es))
			for i := range es {
				m := make(map[string]any, len(cols))
				for _, c := range cols {
					m[c.name] = c.get(&es[i])
				}
				l[i] = m
			}
			return l
		},
		func(t *T, v any) error {
			*f(t) = nil
			if v == nil {
				return nil
			}
			l, ok := v.([]any)
			if !ok {
				return fmt.Errorf("column %s: %T, want a list", name, v)
			}
			es := make([]E, len(l))
			for i, e := range l {
				m, ok := e.(map[string]any)
				if !ok {
					return fmt.Errorf("column %s: entry %T, want a struct", name, e)
				}
				for _, c := range cols {
					if err := c.set(&es[i], m[c.name]); err != nil {
						return fmt.Errorf("column %s, entry %d: %w", name, i, err)
					}
				}
			}
			*f(t) = es
			return nil
		}}
}

// addresses keeps addresses as a VARCHAR list (zones included); none is an
// empty list that reads back nil.
func addresses[T any](name string, f func(*T) *[]netip.Addr) column[T] {
	return column[T]{name, "VARCHAR[] NOT NULL",
		func(t *T) any {
			l := make([]any, len(*f(t)))
			for i, a := range *f(t) {
				l[i] = a.String()
			}
			return l
		},
		func(t *T, v any) error {
			l, ok := v.([]any)
			if !ok {
				return fmt.Errorf("column %s: %T, want a list", name, v)
			}
			*f(t) = nil
			for _, e := range l {
				s, _ := e.(string)
				a, err := netip.ParseAddr(s)
				if err != nil {
					return fmt.Errorf("column %s: %w", name, err)
				}
				*f(t) = append(*f(t), a)
			}
			return nil
		}}
}

var identColumns = []column[topology.Ident]{
	text("kind", func(x *topology.Ident) *flow.Kind { return &x.Kind }),
	text("namespace", func(x *topology.Ident) *string { return &x.Namespace }),
	text("pod", func(x *topology.Ident) *string { return &x.Pod }),
	text("workload_kind", func(x *topology.Ident) *string { return &x.WorkloadKind }),
	text("workload_name", func(x *topology.Ident) *string { return &x.WorkloadName }),
	text("service_namespace", func(x *topology.Ident) *string { return &x.ServiceNamespace }),
	text("service_name", func(x *topology.Ident) *string { return &x.ServiceName }),
	text("node_name", func(x *topology.Ident) *string { return &x.NodeName }),
	text("command", func(x *topology.Ident) *string { return &x.Command }),
	text("container_id", func(x *topology.Ident) *string { return &x.ContainerID }),
	address("addr", func(x *topology.Ident) *netip.Addr { return &x.Addr }),
	text("dns_name", func(x *topology.Ident) *string { return &x.DNSName }),
}

// bins keeps a latency summary (RTT, connect) as a list of (bin, samples).
func bins(name string, f func(*topology.Counts) *[]topology.RTTBin) column[topology.Counts] {
	return column[topology.Counts]{name, "STRUCT(bin USMALLINT, samples UINTEGER)[]",
		func(c *topology.Counts) any {
			bs := *f(c)
			l := make([]any, len(bs))
			for i, b := range bs {
				l[i] = map[string]any{"bin": b.Index, "samples": b.Count}
			}
			return l
		},
		func(c *topology.Counts, v any) error {
			l, ok := v.([]any)
			if !ok {
				return fmt.Errorf("column %s: %T, want a list", name, v)
			}
			bs := f(c)
			*bs = nil
			for _, e := range l {
				m, _ := e.(map[string]any)
				i, ok1 := m["bin"].(uint16)
				n, ok2 := m["samples"].(uint32)
				if !ok1 || !ok2 {
					return fmt.Errorf("column %s: entry %v", name, e)
				}
				*bs = append(*bs, topology.RTTBin{Index: i, Count: n})
			}
			return nil
		}}
}

var countsColumns = []column[topology.Counts]{
	u64("opened", func(c *topology.Counts) *uint64 { return &c.Opened }),
	u64("closed", func(c *topology.Counts) *uint64 { return &c.Closed }),
	u64("refused", func(c *topology.Counts) *uint64 { return &c.Refused }),
	u64("timed_out", func(c *topology.Counts) *uint64 { return &c.TimedOut }),
	u64("reset", func(c *topology.Counts) *uint64 { return &c.Reset }),
	u64("unreachable", func(c *topology.Counts) *uint64 { return &c.Unreachable }),
	u64("failed", func(c *topology.Counts) *uint64 { return &c.Failed }),
	u64("unanswered", func(c *topology.Counts) *uint64 { return &c.Unanswered }),
	u64("retrans_to_dst", func(c *topology.Counts) *uint64 { return &c.RetransToDst }),
	u64("retrans_to_src", func(c *topology.Counts) *uint64 { return &c.RetransToSrc }),
	u64("bytes_to_dst", func(c *topology.Counts) *uint64 { return &c.BytesToDst }),
	u64("bytes_to_src", func(c *topology.Counts) *uint64 { return &c.BytesToSrc }),
	u32("rtt_max_us", func(c *topology.Counts) *uint32 { return &c.RTTMax }),
	bins("rtt_bins", func(c *topology.Counts) *[]topology.RTTBin { return &c.RTTBins }),
	u64("records", func(c *topology.Counts) *uint64 { return &c.Records }),
	u64("syn_retransmits", func(c *topology.Counts) *uint64 { return &c.SYNRetrans }),
	u32("connect_max_us", func(c *topology.Counts) *uint32 { return &c.ConnectMax }),
	bins("connect_bins", func(c *topology.Counts) *[]topology.RTTBin { return &c.ConnectBins }),
	mapping("drops", "UBIGINT", func(c *topology.Counts) *map[string]uint64 { return &c.Drops }),
	list("requests", func(c *topology.Counts) *[]topology.RequestCounts { return &c.Requests }, []column[topology.RequestCounts]{
		text("protocol", func(x *topology.RequestCounts) *flow.L7Protocol { return &x.Protocol }),
		text("class", func(x *topology.RequestCounts) *string { return &x.Class }),
		u64("requests", func(x *topology.RequestCounts) *uint64 { return &x.Requests }),
		u64("failed", func(x *topology.RequestCounts) *uint64 { return &x.Failed }),
		u64("latency_samples", func(x *topology.RequestCounts) *uint64 { return &x.LatencySamples }),
		u64("latency_sum_us", func(x *topology.RequestCounts) *uint64 { return &x.LatencySumMicros }),
		u32("latency_min_us", func(x *topology.RequestCounts) *uint32 { return &x.LatencyMinMicros }),
		u32("latency_max_us", func(x *topology.RequestCounts) *uint32 { return &x.LatencyMaxMicros }),
	}),
}

// edgeColumns maps a topology.EdgeRow.
var edgeColumns = slices.Concat(
	[]column[topology.EdgeRow]{number("bucket", "BIGINT", func(r *topology.EdgeRow) *int64 { return &r.Bucket })},
	nested("src_", func(r *topology.EdgeRow) *topology.Ident { return &r.Src }, identColumns),
	nested("dst_", func(r *topology.EdgeRow) *topology.Ident { return &r.Dst }, identColumns),
	nested("", func(r *topology.EdgeRow) *topology.Counts { return &r.Counts }, countsColumns),
)

// ddl is the column list of a CREATE TABLE: prefix columns, then cols.
func ddl[T any](prefix string, cols []column[T]) string {
	var b strings.Builder
	b.WriteString(prefix)
	for i, c := range cols {
		if i > 0 || prefix != "" {
			b.WriteString(", ")
		}
		b.WriteString(c.name + " " + c.typ)
	}
	return b.String()
}

// prefixed is the comma-separated names of cols, each after prefix.
func prefixed[T any](prefix string, cols []column[T]) string {
	n := make([]string, len(cols))
	for i, c := range cols {
		n[i] = prefix + c.name
	}
	return strings.Join(n, ", ")
}

// values appends t's column values to row.
func values[T any](row []driver.Value, cols []column[T], t *T) []driver.Value {
	for _, c := range cols {
		row = append(row, c.get(t))
	}
	return row
}

// scanned sets t from the scanned values of cols.
func scanned[T any](t *T, cols []column[T], vals []any) error {
	for i, c := range cols {
		if err := c.set(t, vals[i]); err != nil {
			return err
		}
	}
	return nil
}
