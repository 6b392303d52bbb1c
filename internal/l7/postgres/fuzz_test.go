package postgres

import (
	"testing"

	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/l7test"
)

// FuzzParser replays any exchange (l7test.Fuzz: the invariants of every
// parser) and checks PostgreSQL's bounds: requests, Sync markers,
// statements and portals held, and each request's sizes. Seeds are the
// real recordings (hack/l7capture/record.sh).
func FuzzParser(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		l7test.Fuzz(t, Protocol{}, b, l7test.Bounds[*parser]{
			Held: func(t *testing.T, p *parser) {
				if p.waiting > l7.MaxPending || len(p.queue) > 2*l7.MaxPending || len(p.statements) > maxStatement || len(p.portals) > maxStatement {
					t.Fatalf("holds %d requests, %d queued, %d statements, %d portals", p.waiting, len(p.queue), len(p.statements), len(p.portals))
				}
			},
			Request: func(t *testing.T, r l7.Request) {
				if len(r.Info.Method) > maxKeyword || len(r.Info.Error) > 5 {
					t.Fatalf("request %+v", r)
				}
			},
		})
	})
}

func benchmark(b *testing.B, name string, limit int) {
	l7test.Bench(b, Protocol{}, l7test.Cap(l7test.Load(b, "testdata/"+name+".samples"), limit))
}

// MB/s of the connection's bytes: whole (every byte read) and capped at
// 256 bytes a call as the kernel samples (hidden bytes skipped by count).
func BenchmarkSimple(b *testing.B)         { benchmark(b, "psql-1", 1<<20) }
func BenchmarkSimpleCapped(b *testing.B)   { benchmark(b, "psql-1", 256) }
func BenchmarkExtended(b *testing.B)       { benchmark(b, "pgbench-prepared-2", 1<<20) }
func BenchmarkExtendedCapped(b *testing.B) { benchmark(b, "pgbench-prepared-2", 256) }
