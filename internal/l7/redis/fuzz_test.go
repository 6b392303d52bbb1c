package redis

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
				if n := len(p.(*parser).pending); n > l7.MaxPending {
					t.Fatalf("holds %d commands", n)
				}
			}
			for _, r := range p.Expire(^uint64(0), done) {
				if r.Info.Protocol != flow.Redis || len(r.Info.Method) > 2*32+1 || len(r.Info.Error) > 32 {
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

// MB/s of the connection's bytes, whole (every byte framed: 150 kB of
// COMMAND DOCS, 220 commands) and capped at 256 bytes a call as the
// kernel samples.
func BenchmarkRESP2(b *testing.B)       { benchmark(b, "resp2-1", 1<<20) }
func BenchmarkRESP2Capped(b *testing.B) { benchmark(b, "resp2-1", 256) }
func BenchmarkRESP3(b *testing.B)       { benchmark(b, "resp3-1", 1<<20) }
