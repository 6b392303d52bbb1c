// Package ship is the agent's side of the agent → hub stream: a bounded
// backlog of batches that Run streams to the hub, keeping each until the
// hub acks it and sending every unacked one again, in order, after a
// reconnect. Send only appends to the backlog, so the agent's loop never
// waits for the network.
//
//	Send ─▶ backlog [acked… | in flight (≤ window) | waiting] ─▶ hub
//	                  ▲ dropped on ack   ▲ resent after a reconnect
//
// When the backlog is full the oldest waiting batches are dropped, counted
// in records and reported to the hub in the next batch.
package ship

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/flowlens/flowlens/api/flowlens/v1"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/server"
	"github.com/flowlens/flowlens/internal/wire"
)

// Config is where and how an agent ships its records.
type Config struct {
	// Hub is the hub's address: host:port or unix:/path.
	Hub string
	// AgentID names the agent across its restarts (the node name);
	// Node is the node it observes, Version its build.
	AgentID, Node, Version string
	// MaxBacklog is how many records wait for the hub at most; MaxBatch
	// how many one batch carries.
	MaxBacklog, MaxBatch int
	// BackoffMin and BackoffMax bound the wait before a reconnect, which
	// doubles from the first to the second while the hub stays away.
	BackoffMin, BackoffMax time.Duration
	// TLSCA makes the connection TLS, trusting the hub's certificate if
	// that CA signed it (TLSServerName overrides the name checked);
	// TLSCert and TLSKey are the agent's client certificate.
	TLSCA, TLSCert, TLSKey, TLSServerName string
	// TokenFile holds a bearer token sent with the stream.
	TokenFile string
}

// Defaults.
const (
	DefaultMaxBacklog = 100_000
	DefaultMaxBatch   = 5_000
	// window is how many batches may wait for their ack on a stream: it
	// bounds what a resend repeats, and in-flight batches are never
	// dropped, so the backlog can exceed MaxBacklog by window × MaxBatch.
	window = 8
)

// DefaultConfig ships nowhere (Hub empty) with default bounds.
func DefaultConfig() Config {
	return Config{MaxBacklog: DefaultMaxBacklog, MaxBatch: DefaultMaxBatch, BackoffMin: 200 * time.Millisecond, BackoffMax: 10 * time.Second}
}

// Flags registers the shipper's flags.
func (c *Config) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Hub, "hub", c.Hub, "the hub's address: host:port or unix:/path")
	fs.IntVar(&c.MaxBacklog, "hub-backlog", c.MaxBacklog, "records kept for the hub while it is away or slow; past it the oldest are dropped and counted")
	fs.IntVar(&c.MaxBatch, "hub-max-batch", c.MaxBatch, "records in one batch to the hub")
	fs.DurationVar(&c.BackoffMin, "hub-backoff-min", c.BackoffMin, "first wait before reconnecting to the hub")
	fs.DurationVar(&c.BackoffMax, "hub-backoff-max", c.BackoffMax, "longest wait before reconnecting to the hub")
	fs.StringVar(&c.TLSCA, "hub-tls-ca", c.TLSCA, "CA bundle (PEM) that signed the hub's certificate: connect with TLS")
	fs.StringVar(&c.TLSCert, "hub-tls-cert", c.TLSCert, "client certificate (PEM) for the hub")
	fs.StringVar(&c.TLSKey, "hub-tls-key", c.TLSKey, "private key (PEM) of --hub-tls-cert")
	fs.StringVar(&c.TLSServerName, "hub-tls-server-name", c.TLSServerName, "name the hub's certificate must carry (default: the host of --hub)")
	fs.StringVar(&c.TokenFile, "hub-token-file", c.TokenFile, "file holding the bearer token the hub asks for")
}

// Validate refuses a configuration Run could not use.
func (c Config) Validate() error {
	switch {
	case c.AgentID == "":
		return errors.New("ship: no agent id")
	case c.MaxBatch < 1 || c.MaxBacklog < c.MaxBatch:
		return fmt.Errorf("--hub-backlog (%d) must hold at least one batch of --hub-max-batch (%d ≥ 1) records", c.MaxBacklog, c.MaxBatch)
	case c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin:
		return fmt.Errorf("--hub-backoff-min (%s) must be positive and at most --hub-backoff-max (%s)", c.BackoffMin, c.BackoffMax)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("--hub-tls-cert and --hub-tls-key go together")
	case c.TLSCert != "" && c.TLSCA == "":
		return errors.New("--hub-tls-cert needs --hub-tls-ca: a client certificate is only sent over TLS")
	}
	if _, err := server.ParseAddress(c.Hub); err != nil {
		return fmt.Errorf("--hub: %w", err)
	}
	return nil
}

// Stats is what the shipper did.
type Stats struct {
	Records    uint64    // records given to Send: each is acked, dropped, invalid, rejected or in the backlog
	Backlog    int       // records waiting for an ack, in flight included
	Sent       uint64    // batches sent, resends included
	Acked      uint64    // batches the hub acked
	Dropped    uint64    // records dropped from a full backlog (reported to the hub)
	Invalid    uint64    // records refused before sending: the hub would refuse them
	Rejected   uint64    // records of batches the hub refused as invalid
	Reconnects uint64    // streams started after the first
	Connected  bool      // a stream is open now
	LastAck    time.Time // when the last ack came; zero: none yet
}

type batch struct {
	seq  uint64
	recs []*pb.Record
}

// Shipper ships one agent's records to a hub.
type Shipper struct {
	cfg         Config
	log         *slog.Logger
	incarnation uint64
	wake        chan struct{} // a batch to send or a window opened: cap 1

	mu      sync.Mutex
	backlog []batch // in seq order
	records int     // in backlog
	nextSeq uint64
	// sentThrough is the last seq sent on the current stream: the backlog's
	// batches up to it are in flight. 0 when no stream is open, so a new
	// stream resends everything unacked.
	sentThrough uint64
	stats       Stats
}

// New returns a shipper; cfg should have passed Validate.
func New(cfg Config, log *slog.Logger) *Shipper {
	var b [8]byte
	_, _ = rand.Read(b[:])                      // never fails (crypto/rand panics rather)
	inc := binary.LittleEndian.Uint64(b[:]) | 1 // never 0, which the hub refuses
	return &Shipper{cfg: cfg, log: log.With("hub", cfg.Hub, "incarnation", inc), incarnation: inc, wake: make(chan struct{}, 1), nextSeq: 1}
}

// Incarnation is this process's random incarnation, sent in the Hello.
func (s *Shipper) Incarnation() uint64 { return s.incarnation }

// Stats reads the counters.
func (s *Shipper) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Backlog = s.records
	return st
}

// Send queues recs (copied) as one batch, or several of at most MaxBatch
// records. It never blocks on the network; a full backlog drops its oldest
// waiting batches. Safe to call while Run runs.
func (s *Shipper) Send(recs []flow.Record) {
	if len(recs) == 0 {
		return // the agent's empty early flushes
	}
	enc := make([]*pb.Record, 0, len(recs))
	var invalid uint64
	for i := range recs {
		p, err := wire.Encode(&recs[i])
		if err != nil {
			if invalid == 0 {
				s.log.Warn("record not shipped: the hub would refuse it", "err", err)
			}
			invalid++
			continue
		}
		enc = append(enc, p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Records += uint64(len(recs))
	s.stats.Invalid += invalid
	for len(enc) > 0 {
		n := min(len(enc), s.cfg.MaxBatch)
		s.backlog = append(s.backlog, batch{seq: s.nextSeq, recs: enc[:n:n]})
		s.nextSeq++
		s.records += n
		enc = enc[n:]
	}
	s.dropOldest()
	s.signal()
}

// dropOldest drops waiting batches, oldest first, until the backlog fits.
// The oldest go because an operator looks at what is happening now: after
// an outage, the last minutes before the hub came back matter more than its
// first. Batches in flight are kept, so an ack never names a batch counted
// as dropped and the count stays exact.
func (s *Shipper) dropOldest() {
	for i := 0; s.records > s.cfg.MaxBacklog && i < len(s.backlog); {
		if s.backlog[i].seq <= s.sentThrough {
			i++ // in flight
			continue
		}
		n := len(s.backlog[i].recs)
		s.records -= n
		s.stats.Dropped += uint64(n)
		s.backlog = append(s.backlog[:i], s.backlog[i+1:]...)
	}
}

func (s *Shipper) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run connects to the hub and streams the backlog until ctx ends,
// reconnecting with backoff; it returns an error only for a configuration
// it cannot use.
func (s *Shipper) Run(ctx context.Context) error {
	conn, err := s.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	client := pb.NewIngestClient(conn)
	for attempt := 0; ; attempt++ {
		acked, err := s.stream(ctx, client)
		if ctx.Err() != nil {
			return nil
		}
		if acked {
			attempt = 0
		}
		s.log.Warn("stream to the hub ended; reconnecting", "err", err, "backlog", s.Stats().Backlog)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.backoff(attempt)):
		}
		s.mu.Lock()
		s.stats.Reconnects++
		s.mu.Unlock()
	}
}

// backoff doubles from BackoffMin to BackoffMax and takes a random part of
// it, half to all, so agents that lost the hub together do not all come
// back in the same instant.
func (s *Shipper) backoff(attempt int) time.Duration {
	d := s.cfg.BackoffMax
	if attempt < 30 {
		d = min(d, s.cfg.BackoffMin<<attempt)
	}
	return d/2 + mrand.N(d/2+1)
}

// stream runs one stream; acked says whether the hub acked anything on it.
func (s *Shipper) stream(ctx context.Context, client pb.IngestClient) (acked bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := client.Push(ctx)
	if err != nil {
		return false, fmt.Errorf("open stream: %w", err)
	}
	hello := &pb.Hello{AgentId: s.cfg.AgentID, Incarnation: s.incarnation, Node: s.cfg.Node, Version: s.cfg.Version}
	if err := st.Send(&pb.PushRequest{Msg: &pb.PushRequest_Hello{Hello: hello}}); err != nil {
		return false, fmt.Errorf("send hello: %w", reason(st, err))
	}
	s.mu.Lock()
	s.stats.Connected = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.stats.Connected, s.sentThrough = false, 0
		s.mu.Unlock()
	}()
	recvErr := make(chan error, 1)
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if a := resp.GetAck(); a != nil {
				acked = true
				s.ack(a.GetSeq())
			}
		}
	}()
	for {
		req := s.next()
		if req == nil {
			select {
			case <-s.wake:
				continue
			case err := <-recvErr:
				return acked, s.ended(err)
			}
		}
		if err := st.Send(req); err != nil {
			// The receiving goroutine reads the status, which is what
			// io.EOF stands for; any other failure is the reason itself.
			if !errors.Is(err, io.EOF) {
				cancel()
				<-recvErr
				return acked, err
			}
			return acked, s.ended(<-recvErr)
		}
		s.mu.Lock()
		s.stats.Sent++
		s.mu.Unlock()
	}
}

// reason is why a Send failed: gRPC's Send says only io.EOF when the
// stream ended, and leaves its status to Recv. Only for a stream nobody else
// reads.
func reason(st pb.Ingest_PushClient, err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	if _, rerr := st.Recv(); rerr != nil {
		return rerr
	}
	return err
}

// ended handles a stream's end: a batch the hub refused as invalid would
// be refused again at every reconnect, so it is dropped (the hub processes
// in order, so it is the oldest in flight), counted and logged.
func (s *Shipper) ended(err error) error {
	if status.Code(err) != codes.InvalidArgument {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.backlog) > 0 && s.backlog[0].seq <= s.sentThrough {
		b := s.backlog[0]
		s.backlog = s.backlog[1:]
		s.records -= len(b.recs)
		s.stats.Rejected += uint64(len(b.recs))
		s.log.Error("the hub refused a batch; dropped it", "seq", b.seq, "records", len(b.recs), "err", err)
	}
	return err
}

// next is the next batch to send on the stream, nil if none is waiting or
// the window is full.
func (s *Shipper) next() *pb.PushRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	inFlight := 0
	for _, b := range s.backlog {
		if b.seq > s.sentThrough {
			if inFlight >= window {
				return nil
			}
			s.sentThrough = b.seq
			return &pb.PushRequest{Msg: &pb.PushRequest_Batch{Batch: &pb.Batch{
				Seq: b.seq, Records: b.recs, AgentDroppedTotal: s.stats.Dropped,
				Backlog: uint64(s.records), SentAtUnixNano: time.Now().UnixNano(),
			}}}
		}
		inFlight++
	}
	return nil
}

// ack removes every batch up to seq: the hub makes batches durable in order.
func (s *Shipper) ack(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.backlog) > 0 && s.backlog[0].seq <= seq && s.backlog[0].seq <= s.sentThrough {
		s.records -= len(s.backlog[0].recs)
		s.backlog[0] = batch{}
		s.backlog = s.backlog[1:]
		s.stats.Acked++
	}
	s.stats.LastAck = time.Now()
	s.signal()
}

func (s *Shipper) dial() (*grpc.ClientConn, error) {
	a, err := server.ParseAddress(s.cfg.Hub)
	if err != nil {
		return nil, fmt.Errorf("--hub: %w", err)
	}
	target := "passthrough:///" + a.Addr
	if a.Network == "unix" {
		target = "unix://" + a.Addr
	}
	creds := insecure.NewCredentials()
	if s.cfg.TLSCA != "" {
		cfg, err := s.clientTLS()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if s.cfg.TokenFile != "" {
		token, err := server.ReadToken(s.cfg.TokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{"Bearer " + string(token)}))
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("hub client for %s: %w", s.cfg.Hub, err)
	}
	return conn, nil
}

func (s *Shipper) clientTLS() (*tls.Config, error) {
	pool, err := server.LoadCertPool(s.cfg.TLSCA)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: s.cfg.TLSServerName, MinVersion: tls.VersionTLS12}
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("load hub client key pair: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// bearer sends the token with every call. It does not insist on TLS: the
// hub's own listener decides whether a token without TLS is acceptable
// (loopback, a unix socket), as the JSON API does.
type bearer struct{ header string }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": b.header}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }
