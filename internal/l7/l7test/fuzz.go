package l7test

import (
	"math"
	"testing"

	"github.com/flowlens/flowlens/internal/l7"
)

// Bounds are a parser's own invariants under Fuzz, beyond those every
// parser keeps; each may be nil. P is the parser's concrete type, so that
// the checks can look inside it.
type Bounds[P l7.Parser] struct {
	// Held checks what p holds after each Feed (its queues, the bytes it
	// carries to the next message).
	Held func(t *testing.T, p P)
	// Drained checks p once its connection ended (everything expired).
	Drained func(t *testing.T, p P)
	// Request checks each request p completed or gave up on.
	Request func(t *testing.T, r l7.Request)
}

// fuzzCap is the bytes a call Fuzz shows a second time: small enough that
// most messages are cut, as the kernel's sampling cuts them.
const fuzzCap = 40

// Fuzz replays fuzz input (Encode's format) through proto's parsers as the
// tracker feeds them: one parser per connection, Detect on its first
// message, everything expired before a message after a gap, the messages
// in order up to the first error, and everything expired at the end, as
// when the connection closes. Each connection is replayed as the input has
// it and again capped to fuzzCap bytes a call. No input may make a parser
// panic, break own, or break what every parser keeps:
//   - a request is of proto's protocol, leaves the tracker's fields
//     (Count, Failed, Latency) alone, starts and is answered at times it
//     was fed, not before it started, and is failed if never answered;
//   - at most l7.MaxPending requests wait at once: no Expire gives up
//     more, and what Expire gave up is forgotten;
//   - a parser drops (l7.Dropper) no more requests than the bytes it was
//     shown: every request it held took some.
func Fuzz[P l7.Parser](t *testing.T, proto l7.Protocol, in []byte, own Bounds[P]) {
	t.Helper()
	samples := Decode(in)
	for conn := range uint64(4) { // Encode's connections
		ms := Messages(samples, conn)
		if len(ms) == 0 {
			continue
		}
		fuzzConn(t, proto, ms, own)
		fuzzConn(t, proto, Cap(ms, fuzzCap), own)
	}
}

func fuzzConn[P l7.Parser](t *testing.T, proto l7.Protocol, ms []l7.Message, own Bounds[P]) {
	t.Helper()
	proto.Detect(ms[0])
	p := proto.New().(P)
	var done []l7.Request
	dropped, shown := 0, 0
	for _, m := range ms {
		if m.Gap {
			done = expireAll(t, p, done)
		}
		var err error
		done, err = p.Feed(m, done)
		shown += len(m.Data)
		if d, ok := any(p).(l7.Dropper); ok {
			dropped += d.TakeDropped()
		}
		if own.Held != nil {
			own.Held(t, p)
		}
		if err != nil {
			break // the tracker stops parsing the connection here
		}
	}
	done = expireAll(t, p, done)
	if own.Drained != nil {
		own.Drained(t, p)
	}
	if dropped > shown {
		t.Fatalf("dropped %d requests from %d bytes shown", dropped, shown)
	}
	first, last := ms[0].NS, ms[len(ms)-1].NS
	for _, r := range done {
		switch {
		case r.Info.Protocol != proto.Name():
			t.Fatalf("request of protocol %q: %+v", r.Info.Protocol, r)
		case r.Info.Count != 0 || r.Info.Failed != 0 || r.Info.Latency != nil:
			t.Fatalf("request sets the tracker's fields: %+v", r)
		case r.StartNS < first || r.StartNS > last:
			t.Fatalf("request started at %d, fed %d to %d: %+v", r.StartNS, first, last, r)
		case r.ResponNS != 0 && (r.ResponNS < r.StartNS || r.ResponNS > last):
			t.Fatalf("request answered at %d, started %d, fed until %d: %+v", r.ResponNS, r.StartNS, last, r)
		case r.ResponNS == 0 && !r.Failed:
			t.Fatalf("request never answered but not failed: %+v", r)
		}
		if own.Request != nil {
			own.Request(t, r)
		}
	}
}

// expireAll gives up every waiting request of p, as the tracker does at a
// gap or when the connection ends, and checks the bound on them.
func expireAll(t *testing.T, p l7.Parser, done []l7.Request) []l7.Request {
	t.Helper()
	n := len(done)
	done = p.Expire(math.MaxUint64, done)
	if waited := len(done) - n; waited > l7.MaxPending {
		t.Fatalf("%d requests waited, more than %d", waited, l7.MaxPending)
	}
	if again := p.Expire(math.MaxUint64, nil); len(again) != 0 {
		t.Fatalf("expired requests still held: %+v", again)
	}
	return done
}
