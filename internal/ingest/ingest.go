// Package ingest is the hub's side of the agent → hub stream: the
// flowlens.v1.Ingest gRPC service. It checks what each agent sends (a Hello
// first and once, sequence numbers that only go up within a stream, batches
// within the limits, records wire accepts), hands every batch to a Receiver
// and acks it once the Receiver says it is durable. Anything else ends the
// stream with InvalidArgument or ResourceExhausted, counted by reason; the
// hub goes on serving the other agents.
//
// Deduplication is the Receiver's: a batch resent after a reconnect comes
// with the same (agent, incarnation, seq) and is passed on as such.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/flowlens/flowlens/api/flowlens/v1"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/wire"
)

// Receiver is what the hub does with what agents send.
type Receiver interface {
	// Receive returns once b is durable (or recognised as already received); the
	// service then acks b.Seq. An error ends the stream with a status the agent logs.
	Receive(ctx context.Context, b *Batch) error
	// Disconnected tells the hub the agent's stream ended (for /api/v1/agents).
	Disconnected(a Agent, err error)
}

// Agent is who sent a stream, from its Hello and its connection.
type Agent struct {
	ID, Node, Version string
	Incarnation       uint64
	Addr              string // the peer's address as the hub saw it
}

// Batch is one checked batch of an agent's records.
type Batch struct {
	Agent        Agent
	Seq          uint64
	SentAt       time.Time // the agent's clock
	Records      []flow.Record
	AgentDropped uint64 // records the agent's backlog dropped since it started
	Backlog      int    // records waiting in the agent's backlog when it sent this
}

// Config bounds what agents can cost the hub. Memory is bounded by
// MaxStreams × (MaxMessageBytes + the decoded records of one batch): a
// stream holds one batch at a time.
type Config struct {
	MaxMessageBytes int // largest message an agent may send
	MaxBatchRecords int // records in one batch
	MaxStreams      int // agent streams served at once
}

// DefaultConfig fits the agents' defaults (ship.DefaultMaxBatch records of
// ≈300 bytes on the wire) with room to spare.
func DefaultConfig() Config {
	return Config{MaxMessageBytes: 16 << 20, MaxBatchRecords: 20_000, MaxStreams: 512}
}

// Flags registers the limits' flags.
func (c *Config) Flags(fs *pflag.FlagSet) {
	fs.IntVar(&c.MaxMessageBytes, "ingest-max-message-bytes", c.MaxMessageBytes, "largest gRPC message an agent may send")
	fs.IntVar(&c.MaxBatchRecords, "ingest-max-batch-records", c.MaxBatchRecords, "records one agent batch may carry")
	fs.IntVar(&c.MaxStreams, "ingest-max-agents", c.MaxStreams, "agent streams served at once")
}

// Validate refuses limits that would refuse everything.
func (c Config) Validate() error {
	if c.MaxMessageBytes < 1024 || c.MaxBatchRecords < 1 || c.MaxStreams < 1 {
		return fmt.Errorf("ingest limits: --ingest-max-message-bytes (%d) must be at least 1024, --ingest-max-batch-records (%d) and --ingest-max-agents (%d) at least 1",
			c.MaxMessageBytes, c.MaxBatchRecords, c.MaxStreams)
	}
	return nil
}

// ServerOptions are the options the hub's *grpc.Server needs for these
// limits: gRPC refuses a larger message before it is read whole.
func (c Config) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(c.MaxMessageBytes)}
}

// Reasons a stream is refused, the label values of Stats.Rejected.
const (
	RejectNoHello        = "no_hello"         // the first message was not a Hello, or it lacked agent_id or incarnation
	RejectHelloTwice     = "hello_twice"      // a second Hello on a stream
	RejectSeqBackwards   = "seq_backwards"    // a seq not above the stream's previous one (or 0)
	RejectBatchTooLarge  = "batch_too_large"  // more records than MaxBatchRecords
	RejectInvalidRecord  = "invalid_record"   // a record wire refuses
	RejectTooManyStreams = "too_many_streams" // MaxStreams streams already open
	RejectEmptyMessage   = "empty_message"    // a PushRequest with neither Hello nor Batch
)

var reasons = []string{RejectNoHello, RejectHelloTwice, RejectSeqBackwards, RejectBatchTooLarge, RejectInvalidRecord, RejectTooManyStreams, RejectEmptyMessage}

// Stats counts what the service did, for metrics.
type Stats struct {
	Streams  int               // open now
	Batches  uint64            // acked (resent ones included: the Receiver tells them apart)
	Records  uint64            // in acked batches
	Rejected map[string]uint64 // streams ended by a refusal, by reason
}

// Service implements flowlens.v1.Ingest over a Receiver.
type Service struct {
	pb.UnimplementedIngestServer
	cfg      Config
	recv     Receiver
	log      *slog.Logger
	streams  atomic.Int64
	batches  atomic.Uint64
	records  atomic.Uint64
	rejected map[string]*atomic.Uint64 // keys fixed at New: read without a lock
}

// New returns the service; register it with Register.
func New(cfg Config, recv Receiver, log *slog.Logger) *Service {
	s := &Service{cfg: cfg, recv: recv, log: log, rejected: map[string]*atomic.Uint64{}}
	for _, r := range reasons {
		s.rejected[r] = new(atomic.Uint64)
	}
	return s
}

// Register adds the service to a gRPC server (made with cfg.ServerOptions()).
func (s *Service) Register(g *grpc.Server) { pb.RegisterIngestServer(g, s) }

// Stats reads the counters.
func (s *Service) Stats() Stats {
	out := Stats{Streams: int(s.streams.Load()), Batches: s.batches.Load(), Records: s.records.Load(), Rejected: map[string]uint64{}}
	for r, n := range s.rejected {
		out.Rejected[r] = n.Load()
	}
	return out
}

func (s *Service) reject(code codes.Code, reason, format string, args ...any) error {
	s.rejected[reason].Add(1)
	return status.Errorf(code, format, args...)
}

// Push serves one agent's stream.
func (s *Service) Push(stream pb.Ingest_PushServer) error {
	if n := s.streams.Add(1); n > int64(s.cfg.MaxStreams) {
		s.streams.Add(-1)
		return s.reject(codes.ResourceExhausted, RejectTooManyStreams, "the hub serves at most %d agent streams (--ingest-max-agents)", s.cfg.MaxStreams)
	}
	defer s.streams.Add(-1)
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err // the agent went away before saying anything: nothing to tell
	}
	hello := first.GetHello()
	if hello == nil || hello.GetAgentId() == "" || hello.GetIncarnation() == 0 {
		return s.reject(codes.InvalidArgument, RejectNoHello, "the first message must be a Hello with agent_id and a non-zero incarnation")
	}
	if len(hello.GetAgentId()) > wire.MaxString || len(hello.GetNode()) > wire.MaxString || len(hello.GetVersion()) > wire.MaxString {
		return s.reject(codes.InvalidArgument, RejectNoHello, "hello: agent_id, node and version may have at most %d bytes", wire.MaxString)
	}
	agent := Agent{ID: hello.GetAgentId(), Node: hello.GetNode(), Version: hello.GetVersion(), Incarnation: hello.GetIncarnation()}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		agent.Addr = p.Addr.String()
	}
	log := s.log.With("agent", agent.ID, "incarnation", agent.Incarnation, "addr", agent.Addr)
	log.Info("agent connected", "node", agent.Node, "version", agent.Version)
	err = s.serve(ctx, stream, agent)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		log.Warn("agent stream ended", "err", err)
	} else {
		log.Info("agent disconnected")
	}
	s.recv.Disconnected(agent, err)
	return err
}

// serve reads batches until the stream ends; io.EOF is the agent closing.
func (s *Service) serve(ctx context.Context, stream pb.Ingest_PushServer, agent Agent) error {
	var last uint64
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		var b *pb.Batch
		switch m := req.GetMsg().(type) {
		case *pb.PushRequest_Hello:
			return s.reject(codes.InvalidArgument, RejectHelloTwice, "a Hello was sent twice on one stream")
		case *pb.PushRequest_Batch:
			b = m.Batch
		default:
			return s.reject(codes.InvalidArgument, RejectEmptyMessage, "a message with neither Hello nor Batch")
		}
		if b.GetSeq() <= last {
			return s.reject(codes.InvalidArgument, RejectSeqBackwards, "batch seq %d after %d: seq must go up within a stream (from 1)", b.GetSeq(), last)
		}
		if n := len(b.GetRecords()); n > s.cfg.MaxBatchRecords {
			return s.reject(codes.InvalidArgument, RejectBatchTooLarge, "batch %d has %d records, at most %d", b.GetSeq(), n, s.cfg.MaxBatchRecords)
		}
		recs, err := wire.Records(b)
		if err != nil {
			return s.reject(codes.InvalidArgument, RejectInvalidRecord, "batch %d: %v", b.GetSeq(), err)
		}
		last = b.GetSeq()
		batch := &Batch{Agent: agent, Seq: last, Records: recs, AgentDropped: b.GetAgentDroppedTotal(), Backlog: int(min(b.GetBacklog(), 1<<31-1))}
		if ns := b.GetSentAtUnixNano(); ns != 0 {
			batch.SentAt = time.Unix(0, ns).UTC()
		}
		if err := s.recv.Receive(ctx, batch); err != nil {
			if _, ok := status.FromError(err); ok {
				return err
			}
			// Not durable: the agent keeps the batch and sends it again.
			return status.Errorf(codes.Unavailable, "batch %d not stored: %v", last, err)
		}
		s.batches.Add(1)
		s.records.Add(uint64(len(recs)))
		if err := stream.Send(&pb.PushResponse{Msg: &pb.PushResponse_Ack{Ack: &pb.Ack{Seq: last}}}); err != nil {
			return err
		}
	}
}
