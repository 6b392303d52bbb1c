package history

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/topology"
)

// noisy returns record i, ending at t0 + i ms, with strings that do not
// compress: a budget fills after few of them.
func noisy(rng *rand.Rand, i int) flow.Record {
	r := sparse(t0.Add(time.Duration(i) * time.Millisecond))
	r.Source.ContainerID = fmt.Sprintf("%016x%016x%016x", rng.Uint64(), rng.Uint64(), rng.Uint64())
	r.Source.Pod = fmt.Sprintf("p-%016x", rng.Uint64())
	r.Destination.IP = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return r
}

func noisyEdge(rng *rand.Rand, bucket int64) topology.EdgeRow {
	return topology.EdgeRow{Bucket: bucket, Src: topology.Ident{Pod: fmt.Sprintf("p-%016x%016x", rng.Uint64(), rng.Uint64())},
		Dst: topology.Ident{Command: fmt.Sprintf("c-%016x%016x", rng.Uint64(), rng.Uint64())}, Counts: topology.Counts{Opened: rng.Uint64()}}
}

func count(t *testing.T, db *DB, table string) int64 {
	t.Helper()
	var n int64
	if err := db.sql.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDiskBudget: past the budget the oldest flows go first, exactly as
// many as counted, the buckets only once no flow is left; the database
// file stays within the budget.
func TestDiskBudget(t *testing.T) {
	ctx := context.Background()
	const budget = 4 << 20
	db := open(t, Config{DiskBudget: budget, FlowRetention: 24 * time.Hour})
	rng := rand.New(rand.NewPCG(1, 2))
	if err := db.Append(ctx, []Event{{Pos: 1, Time: t0, Tick: true}}); err != nil {
		t.Fatal(err)
	}
	written, edges := 0, 0
	bucket := t0.UnixNano()/int64(10*time.Second) - 1000 // within the retention
	checkpoint := func(flows []flow.Record, rows []topology.EdgeRow) {
		t.Helper()
		if err := db.Checkpoint(ctx, Checkpoint{Pos: 1, Time: t0, Flows: flows, Edges: rows}); err != nil {
			t.Fatal(err)
		}
	}
	// Flows, and a bucket of 10 edges per checkpoint, until well past the
	// budget.
	for round := 0; round < 100 && db.Stats().FlowsOverBudget < 5_000; round++ {
		var flows []flow.Record
		for range 2000 {
			flows = append(flows, noisy(rng, written))
			written++
		}
		var rows []topology.EdgeRow
		for range 10 {
			rows = append(rows, noisyEdge(rng, bucket))
		}
		bucket++
		edges += len(rows)
		checkpoint(flows, rows)
	}
	st := db.Stats()
	held := count(t, db, "flows")
	if st.FlowsOverBudget == 0 || held != int64(written)-int64(st.FlowsOverBudget) || st.Flows != held {
		t.Fatalf("wrote %d flows, %d deleted over the budget, %d held (stats %d)", written, st.FlowsOverBudget, held, st.Flows)
	}
	if st.EdgeRowsOverBudget != 0 || count(t, db, "edges") != int64(edges) {
		t.Errorf("buckets deleted while flows were left: %+v", st)
	}
	// The newest are held, in order.
	flows, err := db.Flows(ctx, FlowQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range flows {
		if want := t0.Add(time.Duration(written-len(flows)+i) * time.Millisecond); !r.Time.Equal(want) {
			t.Fatalf("flow %d of those held ends at %s, want %s: not the newest", i, r.Time, want)
		}
	}
	// DuckDB's file is its 12 KiB header and 256 KiB blocks: the budget
	// bounds the blocks.
	const header = 12 << 10
	if st.DiskBytes > budget+header || st.UsedBytes > budget {
		t.Errorf("%d bytes on disk, %d in use: over the budget of %d", st.DiskBytes, st.UsedBytes, budget)
	}
	t.Logf("%d flows written, %d held; %d bytes on disk, %d in use", written, held, st.DiskBytes, st.UsedBytes)

	// Edges alone past the budget: the oldest whole buckets go.
	for round := 0; round < 100 && db.Stats().EdgeRowsOverBudget == 0; round++ {
		var rows []topology.EdgeRow
		for range 2000 {
			rows = append(rows, noisyEdge(rng, bucket))
		}
		bucket++
		edges += len(rows)
		checkpoint(nil, rows)
	}
	st = db.Stats()
	if st.EdgeRowsOverBudget == 0 {
		t.Fatalf("no bucket deleted after %d edge rows: %+v", edges, st)
	}
	if st.Flows != 0 || count(t, db, "flows") != 0 || st.FlowsOverBudget != uint64(written) {
		t.Errorf("edges deleted while %d flows were left", st.Flows)
	}
	// Whole buckets went, the oldest: the 10-row ones first.
	var heldRows int64
	if err := db.sql.QueryRow(`SELECT count(*) FROM edges`).Scan(&heldRows); err != nil {
		t.Fatal(err)
	}
	var partial int64
	if err := db.sql.QueryRow(`SELECT count(*) FROM (SELECT bucket FROM edges GROUP BY bucket HAVING count(*) NOT IN (10, 2000))`).Scan(&partial); err != nil {
		t.Fatal(err)
	}
	if heldRows != int64(edges)-int64(st.EdgeRowsOverBudget) || st.EdgeRows != heldRows || partial != 0 {
		t.Errorf("%d edge rows written, %d deleted over the budget, %d held (stats %d), %d buckets partly deleted",
			edges, st.EdgeRowsOverBudget, heldRows, st.EdgeRows, partial)
	}
	var oldest, buckets int64
	if err := db.sql.QueryRow(`SELECT min(bucket), count(DISTINCT bucket) FROM edges`).Scan(&oldest, &buckets); err != nil {
		t.Fatal(err)
	}
	if buckets != bucket-oldest {
		t.Errorf("buckets %d.. held, %d of them: not the newest", oldest, buckets)
	}
	if st.DiskBytes > budget {
		t.Errorf("%d bytes on disk: over the budget of %d", st.DiskBytes, budget)
	}
}

// TestRetentionAndFlowQuery: flows and buckets past their retention are
// deleted and counted exactly; the flow query's bounds, limit and match
// select exactly.
func TestRetentionAndFlowQuery(t *testing.T) {
	ctx := context.Background()
	db := open(t, Config{FlowRetention: time.Minute, EdgeRetention: time.Minute})
	if err := db.Append(ctx, []Event{{Pos: 1, Time: t0, Tick: true}}); err != nil {
		t.Fatal(err)
	}
	// Flow k ends at k*5 s, refused when k%3 == 0; bucket b0+j holds one edge.
	var flows []flow.Record
	for k := range 12 {
		r := sparse(t0.Add(time.Duration(k) * 5 * time.Second))
		r.Source.Port = uint16(k)
		if k%3 == 0 {
			r.Verdict = flow.VerdictRefused
		}
		flows = append(flows, r)
	}
	b0 := t0.UnixNano() / int64(10*time.Second)
	var rows []topology.EdgeRow
	for j := range 6 {
		rows = append(rows, topology.EdgeRow{Bucket: b0 + int64(j), Src: topology.Ident{Pod: "a"}, Dst: topology.Ident{Pod: "b"}})
	}
	if err := db.Checkpoint(ctx, Checkpoint{Pos: 1, Time: t0.Add(time.Minute), Flows: flows, Edges: rows}); err != nil {
		t.Fatal(err)
	}
	refused := func(r *flow.Record) bool { return r.Verdict == flow.VerdictRefused }
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		name string
		q    FlowQuery
		want []uint16 // the flows' k
	}{
		{"all", FlowQuery{}, []uint16{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{"since inclusive, until exclusive", FlowQuery{Since: at(10), Until: at(30)}, []uint16{2, 3, 4, 5}},
		{"since only", FlowQuery{Since: at(51)}, []uint16{11}},
		{"until only", FlowQuery{Until: at(5)}, []uint16{0}},
		{"newest 3", FlowQuery{Limit: 3}, []uint16{9, 10, 11}},
		{"match", FlowQuery{Match: refused}, []uint16{0, 3, 6, 9}},
		{"newest 2 matching", FlowQuery{Match: refused, Limit: 2}, []uint16{6, 9}},
		{"all of it", FlowQuery{Since: at(0), Until: at(30), Match: refused, Limit: 5}, []uint16{0, 3}},
		{"none", FlowQuery{Since: at(56)}, nil},
	} {
		got, err := db.Flows(ctx, tc.q)
		if err != nil {
			t.Fatal(err)
		}
		var ks []uint16
		for _, r := range got {
			ks = append(ks, r.Source.Port)
		}
		if fmt.Sprint(ks) != fmt.Sprint(tc.want) {
			t.Errorf("%s: flows %v, want %v", tc.name, ks, tc.want)
		}
	}

	// At 90 s, flows before 30 s (k < 6) and buckets ending by 30 s
	// (b0, b0+1, b0+2: the retention is the 6 buckets ending with 90 s's)
	// go.
	if err := db.Checkpoint(ctx, Checkpoint{Pos: 1, Time: at(90)}); err != nil {
		t.Fatal(err)
	}
	st := db.Stats()
	if st.FlowsExpired != 6 || st.Flows != 6 || count(t, db, "flows") != 6 || st.EdgeRowsExpired != 3 || count(t, db, "edges") != 3 {
		t.Errorf("after 90 s: %+v", st)
	}
	if got, err := db.Flows(ctx, FlowQuery{Limit: 100}); err != nil || len(got) != 6 || got[0].Source.Port != 6 {
		t.Errorf("held after expiry: %d flows from %v (%v), want 6 from k=6", len(got), got[0].Source.Port, err)
	}
	if st.FlowsOverBudget != 0 || st.EdgeRowsOverBudget != 0 {
		t.Errorf("deleted for the budget: %+v", st)
	}
}
