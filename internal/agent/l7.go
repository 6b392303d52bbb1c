package agent

import (
	"errors"
	"fmt"
	"time"

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

var hints = map[flow.L7Protocol]l7.Hint{
	flow.HTTP: l7.HintHTTP, flow.Postgres: l7.HintPostgres, flow.Redis: l7.HintRedis, flow.DNS: l7.HintDNS,
}

// sampleOf turns the kernel's sample into the tracker's: which end of the
// connection sent it follows from the socket's role and the direction.
func sampleOf(s *datapath.L7Sample) l7.Sample {
	fromClient := s.Send == (s.Role != flow.RoleServer)
	dir := l7.FromServer
	if fromClient {
		dir = l7.FromClient
	}
	key := l7.ConnKey{Cookie: s.Cookie, Local: s.Local, Netns: s.Netns, Role: s.Role}
	if s.Protocol == flow.UDP {
		key.UDP, key.Remote = true, s.Remote
	} else {
		key.Remote = s.Remote
	}
	return l7.Sample{Key: key, Hint: hints[s.Hint], TLS: s.Source.TLS(),
		Msg: l7.Message{Dir: dir, NS: s.NS, Len: s.Len, Data: s.Data, Gap: s.Gap}}
}

// requestsOf names the flow a connection's requests go on.
func requestsOf(k l7.ConnKey, nowNS uint64) conntable.RequestsOf {
	of := conntable.RequestsOf{Protocol: flow.TCP, Cookie: k.Cookie, Role: k.Role, Local: k.Local,
		Remote: k.Remote, Owner: flow.Owner{Netns: k.Netns}, StartNS: nowNS}
	if k.UDP {
		of.Protocol = flow.UDP
	}
	return of
}

// readSamples feeds the tracker from the L7 ring until the ring closes. It
// runs beside Run's loop so that payload never delays socket ends.
func (a *Agent) readSamples() {
	for {
		s, err := a.dp.ReadL7(time.Now().Add(time.Second))
		switch {
		case err == nil:
		case errors.Is(err, datapath.ErrTimeout):
			continue
		case errors.Is(err, ringbuf.ErrClosed):
			return
		default:
			a.stats.l7DecodeErrors.Add(1)
			a.log.Debug("L7 sample", "err", err)
			continue
		}
		a.stats.l7Read.Add(1)
		a.l7mu.Lock()
		a.l7.Sample(sampleOf(&s))
		a.l7mu.Unlock()
	}
}

// l7Closed tells the tracker a TCP connection ended, so that its requests
// still waiting are counted unanswered at the next Take.
func (a *Agent) l7Closed(ev *flow.TCPEnd) {
	if a.l7 == nil {
		return
	}
	a.l7mu.Lock()
	a.l7.Closed(l7.ConnKey{Cookie: ev.Socket.Cookie, Local: ev.Socket.Local, Remote: ev.Socket.Remote,
		Netns: ev.Socket.Owner.Netns, Role: ev.Socket.Role}, ev.EndNS)
	a.l7mu.Unlock()
}

// drainWait bounds how long an interval's end waits for the L7 reader.
const drainWait = 20 * time.Millisecond

// takeRequests puts each connection's request groups on its flow's record.
// It first lets the reader take what the ring holds, the samples of the
// traffic the maps just read: a request and its bytes then land in one
// interval's record, bar those moved in the instants between.
func (a *Agent) takeRequests(nowNS uint64) {
	if a.l7 == nil {
		return
	}
	for waited := time.Duration(0); a.dp.L7Pending() > 0 && waited < drainWait; waited += time.Millisecond {
		time.Sleep(time.Millisecond)
	}
	a.l7mu.Lock()
	defer a.l7mu.Unlock()
	a.l7.Take(nowNS, func(k l7.ConnKey, groups []flow.Requests) {
		a.table.Requests(requestsOf(k, nowNS), groups)
	})
	a.l7Stats = a.l7.Stats()
}
