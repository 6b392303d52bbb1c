package l7_test

import (
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/l7test"
)

// FuzzTracker drives a tightly bounded tracker with HTTP and the fake
// protocol over up to four connections (l7test's encoding; seeds recorded
// from net/http on loopback), early receives held back included: no input
// may panic or exceed a bound, every request counted in Stats is in
// exactly one group, and every early receive is fed once, in order or not.
func FuzzTracker(f *testing.F) {
	f.Add(l7test.Encode([]l7.Sample{
		{Key: l7.ConnKey{Cookie: 1}, Msg: l7.Message{Dir: l7.FromClient, NS: 1000, Len: 2, Data: []byte("Qa")}},
		{Key: l7.ConnKey{Cookie: 1}, Msg: l7.Message{Dir: l7.FromServer, NS: 2000, Len: 11, Data: []byte("Aa 10.0.0.1")}},
	}))
	f.Add(l7test.Encode([]l7.Sample{ // an answer sampled before its question
		{Key: l7.ConnKey{Cookie: 1}, Early: true, Msg: l7.Message{Dir: l7.FromServer, NS: 1000, Len: 2, Data: []byte("Aa")}},
		{Key: l7.ConnKey{Cookie: 1}, Msg: l7.Message{Dir: l7.FromClient, NS: 2000, Len: 2, Data: []byte("Qa")}},
	}))
	f.Fuzz(func(t *testing.T, in []byte) {
		const maxConns, maxGroups = 3, 4
		tr := newTracker(t, l7.Config{MaxConns: maxConns, MaxGroups: maxGroups, RequestTimeout: 50_000_000})
		var counted uint64
		takeAll := func(now uint64) {
			tr.Take(now, func(k l7.ConnKey, rs []flow.Requests) {
				if len(rs) > maxGroups+1 {
					t.Fatalf("connection %d: %d groups", k.Cookie, len(rs))
				}
				for _, r := range rs {
					counted += uint64(r.Count)
					if r.Failed > r.Count || len(r.Answers) > flow.MaxAnswers {
						t.Fatalf("group %+v", r)
					}
				}
			})
		}
		samples := l7test.Decode(in)
		var now uint64
		for i, s := range samples {
			tr.Sample(s)
			now = s.Msg.NS
			if st := tr.Stats(); st.Conns > maxConns {
				t.Fatalf("%d connections", st.Conns)
			}
			if i%16 == 15 {
				takeAll(now)
			}
			if s.Msg.Data != nil && len(s.Msg.Data) > 0 && s.Msg.Data[0] == 'C' {
				tr.Closed(s.Key, now)
			}
		}
		for c := range uint64(4) {
			tr.Closed(l7.ConnKey{Cookie: c}, now)
		}
		takeAll(now)
		takeAll(now) // closed connections linger one Take
		var requests uint64
		for _, p := range tr.Stats().Protocols {
			requests += p.Requests
		}
		if requests != counted {
			t.Fatalf("stats count %d requests, groups %d", requests, counted)
		}
		st := tr.Stats()
		if st.Conns != 0 {
			t.Fatalf("%d connections left after all closed", st.Conns)
		}
		early := uint64(0)
		for _, s := range samples {
			if s.Early {
				early++
			}
		}
		// Those of a connection refused at the bound are never fed.
		if fed := st.Reordered + st.Unordered; fed > early || st.Refused == 0 && fed != early {
			t.Fatalf("%d early receives fed in order and %d not, of %d (%d samples refused)", st.Reordered, st.Unordered, early, st.Refused)
		}
	})
}
