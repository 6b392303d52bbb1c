package ring

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
)

func recs(from, to uint32) []flow.Record {
	var out []flow.Record
	for i := from; i < to; i++ {
		out = append(out, flow.Record{Opened: i})
	}
	return out
}

func ids(es []*Entry) []uint32 {
	var out []uint32
	for _, e := range es {
		out = append(out, e.Record.Opened)
	}
	return out
}

func TestOverwriteAndLoss(t *testing.T) {
	r := New(4)
	r.Write(recs(0, 3))
	got, lost := r.Read(0, 100, nil)
	if !slices.Equal(ids(got), []uint32{0, 1, 2}) || lost != 0 || r.Len() != 3 {
		t.Fatalf("got %v lost %d len %d", ids(got), lost, r.Len())
	}
	r.Write(recs(3, 10)) // 10 written, capacity 4: 6..9 remain
	got, lost = r.Read(3, 100, nil)
	if !slices.Equal(ids(got), []uint32{6, 7, 8, 9}) || lost != 3 {
		t.Fatalf("got %v lost %d, want [6 7 8 9] lost 3", ids(got), lost)
	}
	if oldest, next := r.Bounds(); oldest != 6 || next != 10 || r.Len() != 4 || r.Next() != 10 {
		t.Fatalf("bounds [%d,%d) len %d next %d", oldest, next, r.Len(), r.Next())
	}
	// Everything overwritten since from is lost at once, however far behind
	// the reader is; the limit counts entries returned.
	got, lost = r.Read(1, 2, nil)
	if !slices.Equal(ids(got), []uint32{6, 7}) || lost != 5 {
		t.Fatalf("read 2 from 1: got %v lost %d, want [6 7] lost 5", ids(got), lost)
	}
	// Past the head there is nothing yet, and nothing is lost.
	if got, lost = r.Read(10, 20, nil); len(got) != 0 || lost != 0 {
		t.Fatalf("read past head: got %v lost %d", ids(got), lost)
	}
}

func TestLimitAndWake(t *testing.T) {
	r := New(8)
	w := r.Wait()
	r.Write(recs(0, 5))
	select {
	case <-w:
	default:
		t.Fatal("write did not wake the follower")
	}
	if got, lost := r.Read(1, 2, nil); !slices.Equal(ids(got), []uint32{1, 2}) || lost != 0 {
		t.Fatalf("got %v lost %d", ids(got), lost)
	}
	r.Write(nil)
	select {
	case <-r.Wait():
		t.Fatal("an empty write woke followers")
	default:
	}
}

// Bounds comes from one moment: next-oldest never exceeds the capacity nor
// goes negative, whatever the writer does meanwhile (run with -race).
func TestBoundsConsistentUnderWrites(t *testing.T) {
	const capacity = 64
	r := New(capacity)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range uint32(20000) {
			r.Write(recs(i, i+1))
		}
	}()
	for range 20000 {
		oldest, next := r.Bounds()
		if next < oldest || next-oldest > capacity {
			t.Fatalf("bounds [%d,%d) with capacity %d", oldest, next, capacity)
		}
	}
	wg.Wait()
}

// Every reader gets the same encoding, made once, while the entry is among
// the newest; past them it is released and made per read.
func TestEntryJSONSharedWhileNew(t *testing.T) {
	r := newRing(8, 2)
	r.Write([]flow.Record{{Opened: 7, Protocol: flow.TCP}})
	a, _ := r.Read(0, 1, nil)
	b, _ := r.Read(0, 1, nil)
	ja, err := r.JSON(a[0])
	if err != nil {
		t.Fatal(err)
	}
	jb, _ := r.JSON(b[0])
	if &ja[0] != &jb[0] {
		t.Error("two readers got two encodings of one record")
	}
	want, _ := json.Marshal(&flow.Record{Opened: 7, Protocol: flow.TCP})
	if string(ja) != string(want)+"\n" {
		t.Errorf("JSON = %s, want %s", ja, want)
	}
	kept := func() int {
		n := 0
		for i := range r.json {
			if r.json[i].Load() != nil {
				n++
			}
		}
		return n
	}
	r.Write(recs(1, 3)) // entry 0 is now 3 behind the head, past keep=2
	if n := kept(); n != 0 {
		t.Errorf("%d encodings kept after the window moved past them", n)
	}
	jc, _ := r.JSON(a[0])
	if string(jc) != string(ja) || kept() != 0 {
		t.Errorf("an old entry: %s, kept %d", jc, kept())
	}
	// Entry 1 is within the window: kept.
	e1, _ := r.Read(1, 1, nil)
	j1, _ := r.JSON(e1[0])
	if j2, _ := r.JSON(e1[0]); &j1[0] != &j2[0] {
		t.Error("an entry within the window was encoded twice")
	}
}

// The buffer holds what the ring's records need and a quarter more, not the
// next power of two, and keeps every record readable across its growth.
func TestDataSizedToRecords(t *testing.T) {
	rec := flow.Record{Opened: 1, Protocol: flow.TCP}
	size := len(encodeRecord(nil, &rec))
	// A capacity whose records need just over a power of two of bytes.
	capacity := (1<<16)/size + 1
	need := capacity * size
	r := New(capacity)
	for range 3 {
		batch := make([]flow.Record, capacity)
		for i := range batch {
			batch[i] = rec
		}
		r.Write(batch)
	}
	if n := len(r.data.b); n < need || n > need+need/4 {
		t.Errorf("data holds %d bytes for %d records of %d bytes (%d); want at most %d", n, capacity, size, need, need+need/4)
	}
	es, lost := r.Read(0, 3*capacity, nil)
	if lost != uint64(2*capacity) || len(es) != capacity {
		t.Fatalf("read %d, lost %d; want %d, %d", len(es), lost, capacity, 2*capacity)
	}
	for _, e := range es {
		if e.Record.Opened != 1 || e.Record.Protocol != flow.TCP {
			t.Fatalf("entry %d: %+v", e.seq, e.Record)
		}
	}
}
