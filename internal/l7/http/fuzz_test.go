package http

import (
	"testing"

	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/l7test"
)

// FuzzHTTP replays message sequences (l7test.Fuzz: the invariants of every
// parser; seeds recorded from net/http on loopback under testdata/fuzz)
// and checks HTTP's bounds: the queue and the carried bytes, nothing left
// (not even a phantom) once expired, and no more than the template's room
// in a path.
func FuzzHTTP(f *testing.F) {
	f.Add(l7test.Encode([]l7.Sample{
		{Msg: l7.Message{Dir: l7.FromClient, NS: 1000, Len: 40, Data: []byte("GET /a/1 HTTP/1.1\r\nHost: x\r\n\r\n")}},
		{Msg: l7.Message{Dir: l7.FromServer, NS: 2000, Len: 4000, Data: []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nf00\r\n")}},
	}))
	proto, err := New(Config{Headers: []string{"user-agent"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		l7test.Fuzz(t, proto, in, l7test.Bounds[*parser]{
			Held: func(t *testing.T, p *parser) {
				if p.queue.len() > l7.MaxPending || len(p.req.carry) > maxCarry || len(p.resp.carry) > maxCarry {
					t.Fatalf("queue %d, carries %d %d", p.queue.len(), len(p.req.carry), len(p.resp.carry))
				}
			},
			Drained: func(t *testing.T, p *parser) {
				if p.queue.len() != 0 || p.queue.phantoms != 0 {
					t.Fatalf("expire left %d requests, %d phantoms", p.queue.len(), p.queue.phantoms)
				}
			},
			Request: func(t *testing.T, r l7.Request) {
				if len(r.Info.Path) > maxPath+4 || len(r.Info.Host) > maxHost || len(r.Info.Headers) > 1 {
					t.Fatalf("unbounded request %+v", r.Info)
				}
				if r.Info.Status != 0 && (r.Info.Status < 100 || r.Info.Status > 999) {
					t.Fatalf("status %d", r.Info.Status)
				}
			},
		})
	})
}
