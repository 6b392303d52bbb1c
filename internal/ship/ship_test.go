package ship

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/ingest"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// recorder is a hub's Receiver as the hub deduplicates: it keeps each
// agent incarnation's high-water seq, stores batches above it and only
// acks the others. failOnce makes it store that seq and then fail, as a
// hub that died between making a batch durable and acking it.
type recorder struct {
	mu       sync.Mutex
	high     map[uint64]uint64 // by incarnation
	got      []*ingest.Batch
	dups     int
	failOnce uint64
}

func (r *recorder) Receive(_ context.Context, b *ingest.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.high == nil {
		r.high = map[uint64]uint64{}
	}
	if b.Seq <= r.high[b.Agent.Incarnation] {
		r.dups++
		return nil
	}
	r.high[b.Agent.Incarnation] = b.Seq
	r.got = append(r.got, b)
	if b.Seq == r.failOnce {
		r.failOnce = 0
		return errors.New("crashed before the ack")
	}
	return nil
}

func (r *recorder) Disconnected(ingest.Agent, error) {}

func (r *recorder) snapshot() ([]*ingest.Batch, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*ingest.Batch(nil), r.got...), r.dups
}

// startHub serves the ingest service on a unix socket until stopped.
func startHub(t testing.TB, path string, recv ingest.Receiver) (stop func()) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ingest.DefaultConfig()
	g := grpc.NewServer(cfg.ServerOptions()...)
	ingest.New(cfg, recv, discard).Register(g)
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(ln) }()
	var once sync.Once
	stop = func() { once.Do(func() { g.Stop(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func testConfig(hub string, batch, backlogBatches int) Config {
	cfg := DefaultConfig()
	cfg.Hub, cfg.AgentID, cfg.Node = "unix:"+hub, "node-a", "node-a"
	cfg.MaxBatch, cfg.MaxBacklog = batch, batch*backlogBatches
	// Short, so the test does not wait long for a reconnect; the test
	// never depends on how long.
	cfg.BackoffMin, cfg.BackoffMax = 5*time.Millisecond, 50*time.Millisecond
	return cfg
}

// run runs s until the test ends.
func run(t testing.TB, s *Shipper) {
	t.Helper()
	if err := s.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// records makes n distinct records; k tells batches apart.
func records(k, n int) []flow.Record {
	out := make([]flow.Record, n)
	for i := range out {
		out[i] = flow.Record{
			Time: time.Unix(1_800_000_000, int64(k)).UTC(), Node: "node-a", Observer: "client", Protocol: flow.TCP, IPVersion: 4,
			Verdict: flow.VerdictClosed, Opened: 1, Closed: 1, BytesToDst: uint64(k*1000 + i),
			Source:      flow.Endpoint{IP: netip.MustParseAddr("10.0.0.1"), Port: uint16(40000 + i), Command: "curl"},
			Destination: flow.Endpoint{IP: netip.MustParseAddr("10.0.0.2"), Port: 80},
		}
	}
	return out
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkSeqs asserts the hub stored exactly the batches first..last, in
// order, each with the records sent for it.
func checkSeqs(t *testing.T, got []*ingest.Batch, first, last int, sent map[int][]flow.Record) {
	t.Helper()
	if len(got) != last-first+1 {
		t.Fatalf("hub stored %d batches, want %d (%d..%d)", len(got), last-first+1, first, last)
	}
	for i, b := range got {
		if want := uint64(first + i); b.Seq != want {
			t.Fatalf("batch %d has seq %d, want %d", i, b.Seq, want)
		}
		if !reflect.DeepEqual(b.Records, sent[int(b.Seq)]) {
			t.Fatalf("batch %d: records differ from those sent", b.Seq)
		}
	}
}

func TestShipsEveryBatchInOrder(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hub.sock")
	recv := &recorder{}
	startHub(t, sock, recv)
	s := New(testConfig(sock, 4, 100), discard)
	run(t, s)
	const n = 50
	sent := map[int][]flow.Record{}
	for k := 1; k <= n; k++ {
		sent[k] = records(k, 4)
		s.Send(sent[k])
	}
	waitFor(t, "every batch acked", func() bool { return s.Stats().Acked == n })
	got, dups := recv.snapshot()
	checkSeqs(t, got, 1, n, sent)
	st := s.Stats()
	if dups != 0 || st.Backlog != 0 || st.Dropped != 0 || st.Sent != n || !st.Connected || st.LastAck.IsZero() {
		t.Fatalf("dups %d, stats %+v", dups, st)
	}
	if a := got[0].Agent; a.ID != "node-a" || a.Incarnation != s.Incarnation() || a.Node != "node-a" {
		t.Fatalf("agent %+v", a)
	}
}

func TestSplitsAtMaxBatch(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hub.sock")
	recv := &recorder{}
	startHub(t, sock, recv)
	s := New(testConfig(sock, 4, 100), discard)
	run(t, s)
	recs := records(1, 10)
	s.Send(recs)
	waitFor(t, "3 batches acked", func() bool { return s.Stats().Acked == 3 })
	got, _ := recv.snapshot()
	checkSeqs(t, got, 1, 3, map[int][]flow.Record{1: recs[:4], 2: recs[4:8], 3: recs[8:]})
}

func TestResendsAfterHubRestart(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hub.sock")
	// The hub's state (what it made durable) outlives the hub process.
	recv := &recorder{failOnce: 10}
	stop := startHub(t, sock, recv)
	s := New(testConfig(sock, 3, 100), discard)
	run(t, s)
	sent := map[int][]flow.Record{}
	send := func(from, to int) {
		for k := from; k <= to; k++ {
			sent[k] = records(k, 3)
			s.Send(sent[k])
		}
	}
	send(1, 20)
	// Batch 10 is stored but not acked: the agent reconnects and resends
	// it, and the hub recognises it.
	waitFor(t, "20 batches acked", func() bool { return s.Stats().Acked == 20 })
	stop()
	send(21, 30) // while the hub is away
	waitFor(t, "the stream to end", func() bool { return !s.Stats().Connected })
	startHub(t, sock, recv)
	waitFor(t, "30 batches acked", func() bool { return s.Stats().Acked == 30 })
	got, dups := recv.snapshot()
	checkSeqs(t, got, 1, 30, sent)
	st := s.Stats()
	if dups != 1 || st.Dropped != 0 || st.Backlog != 0 || st.Reconnects < 2 {
		t.Fatalf("dups %d (want 1: batch 10), stats %+v", dups, st)
	}
}

func TestFullBacklogDropsOldest(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hub.sock")
	const batch = 5
	s := New(testConfig(sock, batch, 10), discard)
	run(t, s) // no hub yet: it keeps failing to connect
	sent := map[int][]flow.Record{}
	for k := 1; k <= 30; k++ {
		sent[k] = records(k, batch)
		s.Send(sent[k])
	}
	if st := s.Stats(); st.Dropped != 20*batch || st.Backlog != 10*batch {
		t.Fatalf("with the hub away: %+v, want 100 dropped and 50 waiting", st)
	}
	recv := &recorder{}
	startHub(t, sock, recv)
	waitFor(t, "10 batches acked", func() bool { return s.Stats().Acked == 10 })
	got, _ := recv.snapshot()
	checkSeqs(t, got, 21, 30, sent)
	for _, b := range got {
		if b.AgentDropped != 20*batch {
			t.Fatalf("batch %d reports %d dropped, want %d", b.Seq, b.AgentDropped, 20*batch)
		}
	}
	if got[0].Backlog != 10*batch {
		t.Fatalf("first batch reports a backlog of %d, want %d", got[0].Backlog, 10*batch)
	}
}

func TestInvalidRecordsAreNotShipped(t *testing.T) {
	s := New(testConfig("/nonexistent", 4, 10), discard)
	recs := records(1, 3)
	recs[1].Verdict = "weird"
	s.Send(recs)
	if st := s.Stats(); st.Invalid != 1 || st.Backlog != 2 {
		t.Fatalf("%+v", st)
	}
}

func TestValidate(t *testing.T) {
	good := testConfig("/run/hub.sock", 10, 10)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Config){
		"no hub":          func(c *Config) { c.Hub = "" },
		"no agent id":     func(c *Config) { c.AgentID = "" },
		"backlog < batch": func(c *Config) { c.MaxBacklog = c.MaxBatch - 1 },
		"cert without ca": func(c *Config) { c.TLSCert, c.TLSKey = "c", "k" },
		"backoff":         func(c *Config) { c.BackoffMax = c.BackoffMin / 2 },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	s := New(testConfig("/run/hub.sock", 1, 1), discard)
	s.cfg.BackoffMin, s.cfg.BackoffMax = 100*time.Millisecond, 800*time.Millisecond
	for attempt, want := range []time.Duration{100, 200, 400, 800, 800, 800} {
		want *= time.Millisecond
		for range 50 {
			if d := s.backoff(attempt); d < want/2 || d > want {
				t.Fatalf("attempt %d: %s, want within [%s, %s]", attempt, d, want/2, want)
			}
		}
	}
	if d := s.backoff(1000); d > s.cfg.BackoffMax {
		t.Fatal(fmt.Sprint("overflowed: ", d))
	}
}
