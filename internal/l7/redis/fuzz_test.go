package redis

import (
	"testing"

	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/l7test"
)

// FuzzParser replays any exchange (l7test.Fuzz: the invariants of every
// parser) and checks Redis's bounds: commands held, and each request's
// sizes. Seeds are the real recordings (hack/l7capture/record.sh).
func FuzzParser(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		l7test.Fuzz(t, Protocol{}, b, l7test.Bounds[*parser]{
			Held: func(t *testing.T, p *parser) {
				if n := len(p.pending); n > l7.MaxPending {
					t.Fatalf("holds %d commands", n)
				}
			},
			Request: func(t *testing.T, r l7.Request) {
				if len(r.Info.Method) > 2*32+1 || len(r.Info.Error) > 32 {
					t.Fatalf("request %+v", r)
				}
			},
		})
	})
}

func benchmark(b *testing.B, name string, limit int) {
	l7test.Bench(b, Protocol{}, l7test.Cap(l7test.Load(b, "testdata/"+name+".samples"), limit))
}

// MB/s of the connection's bytes, whole (every byte framed: 150 kB of
// COMMAND DOCS, 220 commands) and capped at 256 bytes a call as the
// kernel samples.
func BenchmarkRESP2(b *testing.B)       { benchmark(b, "resp2-1", 1<<20) }
func BenchmarkRESP2Capped(b *testing.B) { benchmark(b, "resp2-1", 256) }
func BenchmarkRESP3(b *testing.B)       { benchmark(b, "resp3-1", 1<<20) }
