package dns

import (
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/l7test"
)

// FuzzParser replays any exchange (l7test.Fuzz: the invariants of every
// parser) and checks DNS's bounds: no more than l7.MaxPending queries
// held, and every request and answer within its sizes. Seeds are the real
// recordings (hack/l7capture/record.sh).
func FuzzParser(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		l7test.Fuzz(t, Protocol{}, b, l7test.Bounds[*parser]{
			Held: func(t *testing.T, p *parser) {
				if len(p.pending) > l7.MaxPending {
					t.Fatalf("holds %d queries", len(p.pending))
				}
			},
			Request: func(t *testing.T, r l7.Request) {
				if len(r.Info.Answers) > flow.MaxAnswers || len(r.Info.Query) > 254 {
					t.Fatalf("request %+v", r)
				}
			},
		})
	})
}

func benchmark(b *testing.B, file string) {
	l7test.Bench(b, Protocol{}, l7test.Load(b, "testdata/"+file))
}

// The recorded exchanges, over and over: bytes of queries and responses.
func BenchmarkUDP(b *testing.B) { benchmark(b, "udp-1.samples") }
func BenchmarkTCP(b *testing.B) { benchmark(b, "tcp-1.samples") }
