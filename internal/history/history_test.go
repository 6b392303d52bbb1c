package history

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/testutil"
	"github.com/flowlens/flowlens/internal/topology"
)

var t0 = time.Date(2026, 11, 24, 6, 40, 0, 0, time.UTC)

func open(t *testing.T, cfg Config) *DB {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	db, err := Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// filled returns a record with every field set, to a value derived from
// seed: a field added to flow.Record is set too, so a table that does not
// store it fails the round trip.
func filled(seed int) flow.Record {
	var r flow.Record
	n := seed * 1000
	testutil.Fill(reflect.ValueOf(&r).Elem(), t0, &n)
	return r
}

// sparse is a record with the zero value where a field may have one:
// nil pointers and maps, zero times, no addresses.
func sparse(at time.Time) flow.Record {
	return flow.Record{Time: at, Node: "n", Protocol: flow.UDP,
		Source: flow.Endpoint{Labels: map[string]string{}}, Destination: flow.Endpoint{Port: 53}}
}

func TestRecordRoundTrip(t *testing.T) {
	db := open(t, Config{})
	in := []flow.Record{filled(1), sparse(t0.Add(time.Hour)), filled(2)}
	// A request group never answered: no latency, no answers.
	in[1].Requests = []flow.Requests{{Protocol: flow.DNS, Query: "nowhere.example", Count: 1, Failed: 1}}
	in[2].Source.IP = netip.MustParseAddr("fe80::1%eth0")
	ctx := context.Background()
	if err := db.Append(ctx, []Event{{Pos: 1, Time: t0, Agent: "a", Incarnation: 1, Seq: 1, Records: in}}); err != nil {
		t.Fatal(err)
	}
	var replayed []flow.Record
	if err := db.Replay(ctx, 0, func(e Event) error { replayed = append(replayed, e.Records...); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.Checkpoint(ctx, Checkpoint{Pos: 1, Time: t0, Flows: in}); err != nil {
		t.Fatal(err)
	}
	flows, err := db.Flows(ctx, FlowQuery{})
	if err != nil {
		t.Fatal(err)
	}
	want := []flow.Record{in[0], in[2], in[1]} // flows come by time
	for name, got := range map[string][]flow.Record{"log": replayed, "flows": flows} {
		if name == "log" {
			got = []flow.Record{got[0], got[2], got[1]}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s round trip:\n got %+v\nwant %+v", name, got, want)
		}
	}
}

// batch is an agent's event at pos with n records ending at end.
func batch(pos uint64, agent string, inc, seq uint64, end time.Time, n int) Event {
	e := Event{Pos: pos, Time: end, Agent: agent, Incarnation: inc, Seq: seq}
	for i := range n {
		r := filled(int(pos)*10 + i)
		r.Time = end
		e.Records = append(e.Records, r)
	}
	return e
}

func replayAll(t *testing.T, db *DB, from uint64) []Event {
	t.Helper()
	var out []Event
	if err := db.Replay(context.Background(), from, func(e Event) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAppendReopen(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Dir: t.TempDir()}
	db := open(t, cfg)
	evs := []Event{
		batch(1, "node-a", 7, 1, t0, 3),
		{Pos: 2, Time: t0.Add(time.Second), Tick: true},
		// An empty batch still moves the high water; incarnations are
		// random, the high bit included.
		batch(3, "node-b", 1<<63|9, 40, t0.Add(time.Second), 0),
		batch(5, "node-a", 7, 2, t0.Add(2*time.Second), 2),
	}
	if err := db.Append(ctx, evs[:2]); err != nil {
		t.Fatal(err)
	}
	if err := db.Append(ctx, evs[2:]); err != nil {
		t.Fatal(err)
	}
	if err := db.Append(ctx, []Event{{Pos: 5, Time: t0, Tick: true}}); err == nil {
		t.Error("an event at a position already appended was accepted")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = open(t, cfg)
	hw, err := db.HighWaters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]HighWater{"node-a": {7, 2}, "node-b": {1<<63 | 9, 40}}; !reflect.DeepEqual(hw, want) {
		t.Errorf("high waters %v, want %v", hw, want)
	}
	if got := replayAll(t, db, 0); !reflect.DeepEqual(got, evs) {
		t.Errorf("replay from 0:\n got %+v\nwant %+v", got, evs)
	}
	if got := replayAll(t, db, 2); !reflect.DeepEqual(got, evs[2:]) {
		t.Errorf("replay from 2: %d events, want the last 2", len(got))
	}
	if err := db.Append(ctx, []Event{{Pos: 4, Time: t0, Tick: true}}); err == nil {
		t.Error("after reopening, an event before the last was accepted")
	}
	if st := db.Stats(); st.Events != 4 || st.LogRecords != 5 || st.EventsAppended != 0 {
		t.Errorf("stats after reopening %+v: want 4 events, 5 records held, none appended", st)
	}
}

const crashEnv = "FLOWLENS_HISTORY_CRASH_DIR"

// crashChild appends (and every 25 events checkpoints) until killed,
// printing each position once it is committed.
func crashChild(dir string) {
	ctx := context.Background()
	db, err := Open(ctx, Config{Dir: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	deadline := time.Now().Add(time.Minute)
	var published []flow.Record
	for pos := uint64(1); pos <= 100_000 && time.Now().Before(deadline); pos++ {
		e := batch(pos, "node-a", 1, pos, t0.Add(time.Duration(pos)*time.Millisecond), int(pos%3))
		if err := db.Append(ctx, []Event{e}); err != nil {
			fmt.Println("append:", err)
			os.Exit(1)
		}
		fmt.Printf("committed %d\n", pos)
		published = append(published, e.Records...)
		if pos%25 == 0 {
			if err := db.Checkpoint(ctx, Checkpoint{Pos: pos, Time: e.Time, Flows: published}); err != nil {
				fmt.Println("checkpoint:", err)
				os.Exit(1)
			}
			fmt.Printf("checkpointed %d %d\n", pos, len(published))
			published = published[:0]
		}
	}
	os.Exit(2) // never killed
}

// TestCrashSafety: a process SIGKILLed while it appends loses nothing it
// was told was committed, and the database opens cleanly after.
func TestCrashSafety(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSafety$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	var committed, checkpointPos uint64
	var flowsCheckpointed int
	lockErr := error(nil)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var a, b uint64
		if n, _ := fmt.Sscanf(sc.Text(), "committed %d", &a); n == 1 {
			if a != committed+1 {
				t.Fatalf("child committed %d after %d", a, committed)
			}
			committed = a
		} else if n, _ := fmt.Sscanf(sc.Text(), "checkpointed %d %d", &a, &b); n == 2 {
			checkpointPos, flowsCheckpointed = a, flowsCheckpointed+int(b)
		} else {
			t.Fatalf("child: %s", sc.Text())
		}
		if committed == 10 && lockErr == nil {
			// A second process may not open a directory in use.
			_, lockErr = Open(context.Background(), Config{Dir: dir}, slog.New(slog.DiscardHandler))
			if lockErr == nil {
				t.Fatal("a second process opened the database the child holds")
			}
			t.Logf("second process: %v", lockErr)
		}
		if committed >= 300 && checkpointPos > 0 {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	cmd.Wait()

	db := open(t, Config{Dir: dir})
	evs := replayAll(t, db, 0)
	if uint64(len(evs)) < committed {
		t.Fatalf("%d events after the kill, %d were committed", len(evs), committed)
	}
	for i, e := range evs {
		if want := batch(uint64(i+1), "node-a", 1, uint64(i+1), t0.Add(time.Duration(i+1)*time.Millisecond), (i+1)%3); !reflect.DeepEqual(e, want) {
			t.Fatalf("event %d after the kill: %+v, want %+v", i+1, e, want)
		}
	}
	hw, err := db.HighWaters(context.Background())
	if err != nil || hw["node-a"].Seq != uint64(len(evs)) {
		t.Errorf("high water %v (%v), want seq %d: the last event's", hw, err, len(evs))
	}
	flows, err := db.Flows(context.Background(), FlowQuery{})
	if err != nil || len(flows) < flowsCheckpointed {
		t.Errorf("%d flows after the kill (%v), %d were checkpointed", len(flows), err, flowsCheckpointed)
	}
	t.Logf("killed after %d committed events (%d in the log), %d flows checkpointed (%d held)", committed, len(evs), flowsCheckpointed, len(flows))
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{{}, {Dir: t.TempDir(), DiskBudget: 1 << 20}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	// A directory written with other buckets is refused, not misread.
	dir := t.TempDir()
	open(t, Config{Dir: dir}).Close()
	if db, err := Open(context.Background(), Config{Dir: dir, Resolution: time.Minute}, slog.New(slog.DiscardHandler)); err == nil {
		db.Close()
		t.Error("a history of 10 s buckets opened with 1 m ones")
	}
}

// TestEdgeRowRoundTrip: every field of an edge row, set, comes back from
// the edges table as it went in: a field added to topology.Counts or
// Ident that the table does not store fails it.
func TestEdgeRowRoundTrip(t *testing.T) {
	db := open(t, Config{})
	var in topology.EdgeRow
	n := 0
	testutil.Fill(reflect.ValueOf(&in).Elem(), t0, &n)
	in.Bucket = t0.UnixNano() / int64(10*time.Second) // within the retention
	ctx := context.Background()
	if err := db.Append(ctx, []Event{{Pos: 1, Time: t0, Tick: true}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Checkpoint(ctx, Checkpoint{Pos: 1, Time: t0, Edges: []topology.EdgeRow{in}}); err != nil {
		t.Fatal(err)
	}
	rows, err := db.sql.QueryContext(ctx, `SELECT `+prefixed("", edgeColumns)+` FROM edges`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	vals := make([]any, len(edgeColumns))
	dest := make([]any, len(vals))
	for i := range vals {
		dest[i] = &vals[i]
	}
	var got []topology.EdgeRow
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		var r topology.EdgeRow
		if err := scanned(&r, edgeColumns, vals); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0], in) {
		t.Errorf("edge row round trip:\n got %+v\nwant %+v", got, in)
	}
}
