package conntable

import "iter"

// slabSize is how many pending records one allocation holds.
const slabSize = 1024

// pendingArena hands out an interval's pending records from slabs that the
// next interval reuses: one allocation per slab of records rather than one
// per flow per interval, which with 100k active sockets was most of an
// interval's cost (the allocations and the collector's work on them).
// Flush copies records out, so nothing returned refers into a slab.
type pendingArena struct {
	slabs [][]pending
	used  int // records handed out this interval
}

// add returns a zeroed pending record and its index, valid until reset.
func (a *pendingArena) add() (int32, *pending) {
	n := a.used
	if n/slabSize == len(a.slabs) {
		a.slabs = append(a.slabs, make([]pending, slabSize))
	}
	a.used++
	p := a.at(int32(n))
	*p = pending{}
	return int32(n), p
}

// at returns the record of index i, as add returned it.
func (a *pendingArena) at(i int32) *pending { return &a.slabs[i/slabSize][i%slabSize] }

// all yields the records handed out this interval, in the order they were:
// the slabs are walked in memory order, which a map's iteration is not.
func (a *pendingArena) all() iter.Seq[*pending] {
	return func(yield func(*pending) bool) {
		for i := range int32(a.used) {
			if !yield(a.at(i)) {
				return
			}
		}
	}
}

// reset starts an interval. Slabs this one did not need are let go, so
// that a burst's memory goes with it.
func (a *pendingArena) reset() {
	keep := (a.used + slabSize - 1) / slabSize
	clear(a.slabs[keep:])
	a.slabs = a.slabs[:keep]
	a.used = 0
}
