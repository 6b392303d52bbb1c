package conntable

import "iter"

// slabSize is how many pending records one allocation holds.
const slabSize = 1024

// pendingArena hands out an interval's pending records from slabs that the
// next interval reuses: one allocation per slab of records rather than one
// per flow per interval, which with 100k active sockets was most of an
// interval's cost (the allocations and the collector's work on them).
// Flush copies records out, so nothing returned refers into a slab.
//
// A record FlushEnded handed out gives its slot back (release) for the
// next flow to take: the slabs hold what is pending at once, not every
// connection the interval saw. In a burst of short connections that is
// the difference between a flush's worth of records and a whole interval's
// (issue 17: 11 MB of the heap's 41 at 21,600 connections/s).
type pendingArena struct {
	slabs [][]pending
	used  int     // slots handed out this interval, released or not
	free  []int32 // released slots, taken again before new ones
}

// add returns a zeroed pending record and its index, valid until reset or
// its release.
func (a *pendingArena) add() (int32, *pending) {
	var n int32
	if k := len(a.free); k > 0 {
		n, a.free = a.free[k-1], a.free[:k-1]
	} else {
		if a.used/slabSize == len(a.slabs) {
			a.slabs = append(a.slabs, make([]pending, slabSize))
		}
		n = int32(a.used)
		a.used++
	}
	p := a.at(n)
	*p = pending{}
	return n, p
}

// release gives back slot i, whose record was handed out and is in no
// index. The slot keeps none of the record's maps and slices, and is
// marked flushed, for all's callers to skip, until add hands it out again.
func (a *pendingArena) release(i int32) {
	*a.at(i) = pending{flushed: true}
	a.free = append(a.free, i)
}

// at returns the record of index i, as add returned it.
func (a *pendingArena) at(i int32) *pending { return &a.slabs[i/slabSize][i%slabSize] }

// all yields the slots handed out this interval, released ones (flushed)
// too: the slabs are walked in memory order, which a map's iteration is
// not.
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
	a.used, a.free = 0, a.free[:0]
}
