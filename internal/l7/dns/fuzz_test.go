package dns

import (
	"os"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/l7test"
)

// FuzzParser feeds any exchange (l7test.Encode records: direction, gap,
// visible and hidden lengths) whole and capped to 40 bytes a call: no
// panic, and every request and answer within its bounds. Seeds are the
// real recordings (hack/l7capture/record.sh).
func FuzzParser(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		ms := l7test.Messages(l7test.Decode(b), 0)
		for _, ms := range [][]l7.Message{ms, l7test.Cap(ms, 40)} {
			if len(ms) > 0 {
				(Protocol{}).Detect(ms[0])
			}
			p := Protocol{OnAnswer: func(a Answer) {
				if len(a.Addrs) == 0 || len(a.Addrs) > maxAddrs || len(a.Name) > 254 {
					t.Fatalf("answer %+v", a)
				}
			}}.New()
			rs, _ := l7test.Replay(p, ms)
			for _, r := range rs {
				if len(r.Info.Answers) > flow.MaxAnswers || len(r.Info.Query) > 254 || r.Info.Protocol != flow.DNS {
					t.Fatalf("request %+v", r)
				}
			}
			if n := p.(l7.Dropper).TakeDropped(); n > len(ms) {
				t.Fatalf("dropped %d of %d messages", n, len(ms))
			}
		}
	})
}

func benchmark(b *testing.B, file string) {
	raw, err := os.ReadFile("testdata/" + file)
	if err != nil {
		b.Fatal(err)
	}
	ms := l7test.Messages(l7test.Decode(raw), 0)
	var n int64
	for _, m := range ms {
		n += int64(len(m.Data))
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

// The recorded exchanges, over and over: bytes of queries and responses.
func BenchmarkUDP(b *testing.B) { benchmark(b, "udp-1.samples") }
func BenchmarkTCP(b *testing.B) { benchmark(b, "tcp-1.samples") }
