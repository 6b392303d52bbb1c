package ingest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/flowlens/flowlens/api/flowlens/v1"
	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/wire"
)

// store keeps what it receives and who disconnected, and why.
type store struct {
	mu     sync.Mutex
	got    []*Batch
	gone   []error
	fail   error
	holdOn chan struct{} // when set, Receive waits for it to close
}

func (s *store) Receive(ctx context.Context, b *Batch) error {
	if s.holdOn != nil {
		select {
		case <-s.holdOn:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, b)
	return s.fail
}

func (s *store) Disconnected(_ Agent, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gone = append(s.gone, err)
}

// serve starts the service on a unix socket and returns a client of it.
func serve(t *testing.T, cfg Config, recv Receiver) (*Service, *grpc.ClientConn) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "hub.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(cfg.ServerOptions()...)
	svc := New(cfg, recv, slog.New(slog.NewTextHandler(io.Discard, nil)))
	svc.Register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return svc, conn
}

func record(t *testing.T) *pb.Record {
	t.Helper()
	r := flow.Record{Observer: "client", Protocol: flow.TCP, Verdict: flow.VerdictClosed, IPVersion: 4, Opened: 1,
		Source: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1")}, Destination: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Port: 80}}
	p, err := wire.Encode(&r)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func hello(id string, inc uint64) *pb.PushRequest {
	return &pb.PushRequest{Msg: &pb.PushRequest_Hello{Hello: &pb.Hello{AgentId: id, Incarnation: inc, Node: "n1", Version: "test"}}}
}

func batch(seq uint64, recs ...*pb.Record) *pb.PushRequest {
	return &pb.PushRequest{Msg: &pb.PushRequest_Batch{Batch: &pb.Batch{Seq: seq, Records: recs, AgentDroppedTotal: 7, Backlog: 3, SentAtUnixNano: 1_800_000_000_000_000_000}}}
}

// push sends msgs on a new stream, reading an ack after each batch, and
// returns the acks and the status the stream ended with.
func push(t *testing.T, conn *grpc.ClientConn, msgs ...*pb.PushRequest) ([]uint64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := pb.NewIngestClient(conn).Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var acks []uint64
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			break // the status comes from Recv
		}
		if m.GetBatch() == nil {
			continue
		}
		resp, err := st.Recv()
		if err != nil {
			return acks, err
		}
		acks = append(acks, resp.GetAck().GetSeq())
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	return acks, err
}

func TestAcksEachBatchOnceReceived(t *testing.T) {
	recv := &store{}
	svc, conn := serve(t, DefaultConfig(), recv)
	acks, err := push(t, conn, hello("node-a", 42), batch(1, record(t), record(t)), batch(2, record(t)), batch(5))
	if err != io.EOF || len(acks) != 3 || acks[0] != 1 || acks[1] != 2 || acks[2] != 5 {
		t.Fatalf("acks %v, end %v", acks, err)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.got) != 3 || len(recv.got[0].Records) != 2 || len(recv.got[1].Records) != 1 {
		t.Fatalf("received %d batches", len(recv.got))
	}
	b := recv.got[0]
	if b.Agent.ID != "node-a" || b.Agent.Incarnation != 42 || b.Agent.Node != "n1" || b.Agent.Version != "test" ||
		b.AgentDropped != 7 || b.Backlog != 3 || !b.SentAt.Equal(time.Unix(0, 1_800_000_000_000_000_000)) {
		t.Fatalf("batch %+v", b)
	}
	if st := svc.Stats(); st.Batches != 3 || st.Records != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRefusesMalformedStreams(t *testing.T) {
	recv := &store{}
	cfg := DefaultConfig()
	cfg.MaxBatchRecords = 2
	svc, conn := serve(t, cfg, recv)
	bad := record(t)
	bad.Source.Ip = []byte{1, 2, 3}
	for _, tc := range []struct {
		name, reason, msg string
		msgs              []*pb.PushRequest
	}{
		{"no hello", RejectNoHello, "the first message must be a Hello", []*pb.PushRequest{batch(1, record(t))}},
		{"hello without incarnation", RejectNoHello, "non-zero incarnation", []*pb.PushRequest{hello("a", 0)}},
		{"hello twice", RejectHelloTwice, "a Hello was sent twice", []*pb.PushRequest{hello("a", 1), hello("a", 1)}},
		{"seq backwards", RejectSeqBackwards, "batch seq 2 after 3", []*pb.PushRequest{hello("a", 1), batch(3), batch(2)}},
		{"seq zero", RejectSeqBackwards, "batch seq 0 after 0", []*pb.PushRequest{hello("a", 1), batch(0)}},
		{"too many records", RejectBatchTooLarge, "batch 1 has 3 records, at most 2", []*pb.PushRequest{hello("a", 1), batch(1, record(t), record(t), record(t))}},
		{"invalid record", RejectInvalidRecord, "batch 1: record 1: source.ip: 3 bytes, want 4 or 16", []*pb.PushRequest{hello("a", 1), batch(1, record(t), bad)}},
		{"empty message", RejectEmptyMessage, "neither Hello nor Batch", []*pb.PushRequest{hello("a", 1), {}}},
	} {
		_, err := push(t, conn, tc.msgs...)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: got %v, want InvalidArgument saying %q", tc.name, err, tc.msg)
		}
		if n := svc.Stats().Rejected[tc.reason]; n == 0 {
			t.Errorf("%s: not counted as %s", tc.name, tc.reason)
		}
	}
	want := map[string]uint64{RejectNoHello: 2, RejectHelloTwice: 1, RejectSeqBackwards: 2, RejectBatchTooLarge: 1, RejectInvalidRecord: 1, RejectEmptyMessage: 1, RejectTooManyStreams: 0}
	if got := svc.Stats().Rejected; !mapsEqual(got, want) {
		t.Errorf("rejected %v, want %v", got, want)
	}
	// Still serving.
	if acks, err := push(t, conn, hello("a", 2), batch(1, record(t))); err != io.EOF || len(acks) != 1 {
		t.Fatalf("after the refusals: acks %v, %v", acks, err)
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// rawCodec sends bytes as they are: what a hostile client can put on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *v.(*[]byte) = data; return nil }
func (rawCodec) Name() string                       { return "proto" } // what the server expects to decode

func TestGarbageAndHugeMessages(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxMessageBytes = 4096
	svc, conn := serve(t, cfg, &store{})
	send := func(msg []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		desc := &grpc.StreamDesc{StreamName: "Push", ServerStreams: true, ClientStreams: true}
		st, err := conn.NewStream(ctx, desc, pb.Ingest_Push_FullMethodName, grpc.ForceCodec(rawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		_ = st.SendMsg(&msg)
		var out []byte
		return st.RecvMsg(&out)
	}
	// Not protobuf: a field 1 of wire type 7, which does not exist.
	if err := send([]byte{0x0f, 0xff, 0xff}); status.Code(err) != codes.Internal {
		t.Errorf("garbage: got %v, want Internal (gRPC cannot unmarshal it)", err)
	}
	if err := send(make([]byte, 5000)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("5000 bytes past a 4096-byte limit: got %v, want ResourceExhausted", err)
	}
	if acks, err := push(t, conn, hello("a", 1), batch(1, record(t))); err != io.EOF || len(acks) != 1 {
		t.Fatalf("after garbage: acks %v, %v", acks, err)
	}
	if st := svc.Stats(); st.Batches != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTooManyStreams(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxStreams = 1
	hold := make(chan struct{})
	svc, conn := serve(t, cfg, &store{holdOn: hold})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := pb.NewIngestClient(conn).Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Send(hello("a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := first.Send(batch(1)); err != nil { // held in Receive: the stream stays open
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for svc.Stats().Streams != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	_, err = push(t, conn, hello("b", 1))
	if status.Code(err) != codes.ResourceExhausted || svc.Stats().Rejected[RejectTooManyStreams] != 1 {
		t.Fatalf("second stream: %v", err)
	}
	close(hold)
	if resp, err := first.Recv(); err != nil || resp.GetAck().GetSeq() != 1 {
		t.Fatalf("first stream: %v %v", resp, err)
	}
}

func TestReceiverErrorEndsTheStream(t *testing.T) {
	recv := &store{fail: io.ErrUnexpectedEOF}
	_, conn := serve(t, DefaultConfig(), recv)
	acks, err := push(t, conn, hello("a", 1), batch(1, record(t)))
	if len(acks) != 0 || status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "batch 1 not stored") {
		t.Fatalf("acks %v, %v", acks, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		recv.mu.Lock()
		n := len(recv.gone)
		recv.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Disconnected not called")
		}
		time.Sleep(time.Millisecond)
	}
}
