package postgres

import (
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/l7test"
)

// FuzzParser feeds any exchange (l7test.Encode records) whole and capped to
// 40 bytes a call: no panic, requests within bounds, nothing held past
// them. Seeds are the real recordings (hack/l7capture/record.sh).
func FuzzParser(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		ms := l7test.Messages(l7test.Decode(b), 0)
		for _, ms := range [][]l7.Message{ms, l7test.Cap(ms, 40)} {
			if len(ms) > 0 {
				(Protocol{}).Detect(ms[0])
			}
			p := Protocol{}.New()
			var done []l7.Request
			for _, m := range ms {
				var err error
				if done, err = p.Feed(m, done); err != nil {
					break
				}
				pp := p.(*parser)
				if pp.waiting > l7.MaxPending || len(pp.queue) > 2*l7.MaxPending || len(pp.statements) > maxStatement || len(pp.portals) > maxStatement {
					t.Fatalf("holds %d requests, %d queued, %d statements, %d portals", pp.waiting, len(pp.queue), len(pp.statements), len(pp.portals))
				}
			}
			for _, r := range p.Expire(^uint64(0), done) {
				if r.Info.Protocol != flow.Postgres || len(r.Info.Method) > maxKeyword || len(r.Info.Error) > 5 {
					t.Fatalf("request %+v", r)
				}
			}
		}
	})
}

func benchmark(b *testing.B, name string, limit int) {
	ms := l7test.Cap(load(b, name), limit)
	var n int64
	for _, m := range ms {
		n += int64(m.Len)
	}
	b.SetBytes(n)
	b.ReportAllocs()
	var done []l7.Request
	for b.Loop() {
		p := Protocol{}.New()
		done = done[:0]
		for _, m := range ms {
			done, _ = p.Feed(m, done)
		}
	}
}

// MB/s of the connection's bytes: whole (every byte read) and capped at
// 256 bytes a call as the kernel samples (hidden bytes skipped by count).
func BenchmarkSimple(b *testing.B)         { benchmark(b, "psql-1", 1<<20) }
func BenchmarkSimpleCapped(b *testing.B)   { benchmark(b, "psql-1", 256) }
func BenchmarkExtended(b *testing.B)       { benchmark(b, "pgbench-prepared-2", 1<<20) }
func BenchmarkExtendedCapped(b *testing.B) { benchmark(b, "pgbench-prepared-2", 256) }
