package ring

import (
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

func ids(rs []flow.Record) []uint32 {
	var out []uint32
	for _, r := range rs {
		out = append(out, r.Opened)
	}
	return out
}

func TestOverwriteAndLoss(t *testing.T) {
	r := New(4)
	r.Write(recs(0, 3))
	got, next, lost := r.ReadFrom(0, 100, nil)
	if len(got) != 3 || next != 3 || lost != 0 || r.Len() != 3 {
		t.Fatalf("got %v next %d lost %d", ids(got), next, lost)
	}
	r.Write(recs(3, 10)) // 10 written, capacity 4: 6..9 remain
	got, next, lost = r.ReadFrom(3, 100, nil)
	if want := []uint32{6, 7, 8, 9}; len(got) != 4 || got[0].Opened != 6 || got[3].Opened != 9 || next != 10 || lost != 3 {
		t.Fatalf("got %v next %d lost %d, want %v next 10 lost 3", ids(got), next, lost, want)
	}
	if r.Len() != 4 || r.Next() != 10 {
		t.Fatalf("len %d next %d", r.Len(), r.Next())
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
	got, next, _ := r.ReadFrom(1, 2, nil)
	if len(got) != 2 || got[0].Opened != 1 || next != 3 {
		t.Fatalf("got %v next %d", ids(got), next)
	}
	r.Write(nil)
	select {
	case <-r.Wait():
		t.Fatal("an empty write woke followers")
	default:
	}
}
