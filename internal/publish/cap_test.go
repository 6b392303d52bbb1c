package publish

import (
	"slices"
	"testing"

	"github.com/flowlens/flowlens/internal/flow"
)

// One noisy source cannot crowd the others out of the ring: each source
// (the observing socket's cgroup, else its netns) puts at most Max records
// in per interval, the first ones, and the rest are counted.
func TestCapPerSource(t *testing.T) {
	c, err := NewSourceCap(2, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []flow.Record
	for port := range uint16(5) { // noisy: a client in cgroup 7
		r := clientRec(2000+port, t0)
		r.Source.CgroupID = 7
		recs = append(recs, r)
	}
	quietClient := clientRec(3000, t0) // no cgroup: its netns is the source
	quietClient.Source.Netns = 9
	sameCgroup := serverRec(2000, t0, 7) // a server socket in cgroup 7: the same source
	recs = append(recs, quietClient, sameCgroup)
	var ports []uint16
	for _, r := range c.Keep(slices.Clone(recs)) {
		ports = append(ports, r.Source.Port)
	}
	if want := []uint16{2000, 2001, 3000}; !slices.Equal(ports, want) {
		t.Errorf("kept records from ports %v, want %v", ports, want)
	}
	if n := c.Capped(); n != 4 {
		t.Errorf("capped %d, want 4", n)
	}
	// The next interval starts afresh.
	if kept := c.Keep(slices.Clone(recs[:2])); len(kept) != 2 {
		t.Errorf("next interval kept %d, want 2", len(kept))
	}
}

func TestCapDefaultsToHalfTheRing(t *testing.T) {
	for _, tc := range []struct{ max, ring, want int }{{0, 1 << 16, 1 << 15}, {0, 1, -1}, {0, 0, -1}, {-1, 1 << 16, -1}, {7, 1 << 16, 7}} {
		c, err := NewSourceCap(tc.max, tc.ring, nil, nil)
		if err != nil || c.max != tc.want {
			t.Errorf("max %d with a ring of %d: %d (%v), want %d", tc.max, tc.ring, c.max, err, tc.want)
		}
	}
	if _, err := NewSourceCap(-2, 0, nil, nil); err == nil {
		t.Error("max -2 accepted")
	}
}
