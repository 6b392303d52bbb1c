package agent

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/flowlens/flowlens/internal/conntable"
	"github.com/flowlens/flowlens/internal/datapath"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/l7"
	"github.com/flowlens/flowlens/internal/l7/dns"
	"github.com/flowlens/flowlens/internal/l7/http"
	"github.com/flowlens/flowlens/internal/l7/postgres"
	"github.com/flowlens/flowlens/internal/l7/redis"
)

// L7Config is what the agent's L7 parsing keeps and how much it may hold.
type L7Config struct {
	Off         bool
	HTTPHeaders []string // request headers whose values are kept; none by default
	MaxConns    int      // connections followed at once
}

// protocols builds the parsers, in the order content detection tries them.
func (c L7Config) protocols() ([]l7.Protocol, error) {
	h, err := http.New(http.Config{Headers: c.HTTPHeaders})
	if err != nil {
		return nil, err
	}
	return []l7.Protocol{h, postgres.Protocol{}, redis.Protocol{}, dns.Protocol{}}, nil
}

func newTracker(c L7Config) (*l7.Tracker, error) {
	protos, err := c.protocols()
	if err != nil {
		return nil, fmt.Errorf("l7: %w", err)
	}
	cfg := l7.Config{Protocols: protos, MaxConns: c.MaxConns}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("l7: %w", err)
	}
	return l7.NewTracker(cfg), nil
}

// hintOf is the tracker's hint for the kernel's: a switch, as a map keyed
// by strings cost a hash per sample.
func hintOf(p flow.L7Protocol) l7.Hint {
	switch p {
	case flow.HTTP:
		return l7.HintHTTP
	case flow.Postgres:
		return l7.HintPostgres
	case flow.Redis:
		return l7.HintRedis
	case flow.DNS:
		return l7.HintDNS
	}
	return l7.HintNone
}

// sampleOf turns the kernel's sample into the tracker's: which end of the
// connection sent it follows from the socket's role and the direction.
func sampleOf(s *datapath.L7Sample) l7.Sample {
	fromClient := s.Send == (s.Role != flow.RoleServer)
	dir := l7.FromServer
	if fromClient {
		dir = l7.FromClient
	}
	key := l7.ConnKey{Cookie: s.Cookie, Local: s.Local, Remote: s.Remote, Netns: s.Netns, Role: s.Role,
		UDP: s.Protocol == flow.UDP, PeerCookie: s.PeerCookie, PeerNetns: s.PeerNetns}
	return l7.Sample{Key: key, Hint: hintOf(s.Hint), TLS: s.Source.TLS(),
		Send: s.Send, Seq: s.Seq, Early: s.Early,
		Msg: l7.Message{Dir: dir, NS: s.NS, Len: s.Len, Data: s.Data, Gap: s.Gap}}
}

// requestsOf names the flows a connection's requests go on: its own, and
// peer, when the connection's server end is on this node and the client's
// samples stood for both (peer.Cookie 0 otherwise), that end's, seen from
// there. Both ends' records then carry the same requests, as if each end
// had been sampled. A record made for them takes its end's start once the
// connection ended (its own record may have left), nowNS before.
func requestsOf(k l7.ConnKey, nowNS uint64) (own, peer conntable.RequestsOf) {
	start := nowNS
	if k.StartNS != 0 {
		start = k.StartNS
	}
	peerStart := start // a connection the agent found established has no handshake's end
	if k.PeerStartNS != 0 {
		peerStart = k.PeerStartNS
	}
	own = conntable.RequestsOf{Protocol: flow.TCP, Cookie: k.Cookie, Role: k.Role, Local: k.Local,
		Remote: k.Remote, Owner: flow.Owner{Netns: k.Netns}, StartNS: start}
	if k.UDP {
		own.Protocol = flow.UDP
	}
	if k.PeerCookie != 0 {
		peer = conntable.RequestsOf{Protocol: flow.TCP, Cookie: k.PeerCookie, Role: flow.RoleServer,
			Local: k.Remote, Remote: k.Local, Owner: flow.Owner{Netns: k.PeerNetns}, StartNS: peerStart}
	}
	return own, peer
}

// putRequests hands a connection's groups to put for each flow they go
// on: its own, and a pair's server end's, which takes the plaintext ones.
// TLS plaintext comes from each end's own library calls, sampled on both
// ends, paired or not (a PostgreSQL connection pairs on its plaintext
// SSLRequest, then turns to TLS).
func putRequests(k l7.ConnKey, nowNS uint64, groups []flow.Requests, put func(conntable.RequestsOf, []flow.Requests)) {
	own, peer := requestsOf(k, nowNS)
	put(own, groups)
	if peer.Cookie == 0 {
		return
	}
	tls := func(g flow.Requests) bool { return g.TLS }
	plain := groups
	if slices.ContainsFunc(groups, tls) {
		plain = slices.DeleteFunc(slices.Clone(groups), tls)
	}
	if len(plain) > 0 {
		put(peer, plain)
	}
}

// maxBatch bounds the samples fed under one hold of the tracker's lock, so
// that an interval's end waits little for the reader.
const maxBatch = 256

// readSamples feeds the tracker from the L7 ring until the ring closes. It
// runs beside Run's loop so that payload never delays socket ends. The
// kernel wakes it once a quarter of the ring is full; the ring's samples
// are many by then, fed maxBatch a lock. takeRequests drains the rest at
// each interval's end.
func (a *Agent) readSamples() {
	for {
		if err := a.dp.WaitL7(); err != nil {
			if !errors.Is(err, ringbuf.ErrClosed) {
				a.log.Error("L7 samples are no longer read", "err", err)
			}
			return
		}
		for a.feedSamples() == maxBatch {
		}
	}
}

// feedSamples feeds the tracker up to maxBatch samples under one lock and
// returns how many it took from the ring.
func (a *Agent) feedSamples() int {
	a.l7mu.Lock()
	defer a.l7mu.Unlock()
	return a.drainL7(maxBatch)
}

// drainL7 feeds the tracker up to limit samples from the ring and returns
// how many it took; the caller holds l7mu.
func (a *Agent) drainL7(limit int) int {
	fed, taken := uint64(0), 0
	for ; taken < limit; taken++ {
		s, ok, err := a.dp.NextL7()
		if err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				break
			}
			a.stats.l7DecodeErrors.Add(1)
			a.log.Debug("L7 sample", "err", err)
			continue
		}
		if !ok {
			break
		}
		a.l7.Sample(sampleOf(&s))
		fed++
	}
	a.stats.l7Read.Add(fed)
	return taken
}

// l7Closed tells the tracker a TCP connection ended, so that its requests
// still waiting are counted unanswered at the next Take.
func (a *Agent) l7Closed(ev *flow.TCPEnd) {
	if a.l7 == nil {
		return
	}
	a.l7mu.Lock()
	a.l7.Closed(l7.ConnKey{Cookie: ev.Socket.Cookie, Local: ev.Socket.Local, Remote: ev.Socket.Remote,
		Netns: ev.Socket.Owner.Netns, Role: ev.Socket.Role, StartNS: ev.Socket.StartNS,
		PeerStartNS: ev.Socket.EstablishedNS}, ev.EndNS)
	a.l7mu.Unlock()
}

// l7ClosedUDP tells the tracker UDP conversations ended with their socket,
// as l7Closed does for TCP connections.
func (a *Agent) l7ClosedUDP(convs []flow.UDPConversation) {
	if a.l7 == nil || len(convs) == 0 {
		return
	}
	a.l7mu.Lock()
	defer a.l7mu.Unlock()
	for i := range convs {
		c := &convs[i]
		a.l7.Closed(l7.ConnKey{Cookie: c.Cookie, Local: c.Local, Remote: c.Remote, Netns: c.Owner.Netns, UDP: true}, c.LastNS)
	}
}

// maxDrain bounds the drain at an interval's end: the default 4 MiB ring
// holds about 7,000 samples.
const maxDrain = 1 << 20

// takeRequests puts each connection's request groups on its flow's record
// (the table adds those an ended flush kept back). It first feeds the
// tracker what the ring holds, the samples of the traffic the maps just
// read, under the same lock as Take: a request and its bytes then land in
// one interval's record, bar those moved in the instants between.
func (a *Agent) takeRequests(nowNS uint64) {
	if a.l7 == nil {
		return
	}
	a.l7mu.Lock()
	defer a.l7mu.Unlock()
	a.drainL7(maxDrain)
	a.l7.Take(nowNS, func(k l7.ConnKey, groups []flow.Requests) {
		putRequests(k, nowNS, groups, a.table.Requests)
	})
	a.l7Stats = a.l7.Stats()
}

// takeEndedRequests is takeRequests for an ended flush: the samples the
// ring holds were sent before the end events just read, so the groups of
// the connections that ended are complete (bar requests still unanswered,
// which the tracker gives up on at its next Take, as at an interval's end)
// and go on their records; the table keeps the others' until their
// connection ends or the interval does.
func (a *Agent) takeEndedRequests(nowNS uint64) {
	if a.l7 == nil {
		return
	}
	a.l7mu.Lock()
	defer a.l7mu.Unlock()
	a.drainL7(maxDrain)
	a.l7.Take(nowNS, func(k l7.ConnKey, groups []flow.Requests) {
		putRequests(k, nowNS, groups, a.table.RequestsBetween)
	})
	a.l7Stats = a.l7.Stats()
}
