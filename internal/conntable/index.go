package conntable

import "hash/maphash"

// flowIndex finds an interval's pending records by key. It is a hash table
// of arena indexes with linear probing, each record keeping its key's hash:
// one probe finds a flow or, failing that, the slot its new record goes in,
// where a Go map hashed and probed twice (lookup, then insert), a sixth of
// what a short connection cost. Removal shifts back the entries after the
// removed one, so that no probe stops early at a hole.
type flowIndex struct {
	seed  maphash.Seed
	slots []int32 // arena index + 1; 0: empty
	n     int     // records indexed
	peak  int     // the most n was this interval
}

// minSlots is the table's smallest size, a power of two like every size.
const minSlots = 64

func newFlowIndex() flowIndex {
	return flowIndex{seed: maphash.MakeSeed(), slots: make([]int32, minSlots)}
}

func (x *flowIndex) hash(k *recKey) uint64 { return maphash.Comparable(x.seed, *k) }

// find returns the record of k, or nil.
func (x *flowIndex) find(a *pendingArena, k *recKey) *pending {
	h := x.hash(k)
	mask := len(x.slots) - 1
	for s := int(h) & mask; x.slots[s] != 0; s = (s + 1) & mask {
		if p := a.at(x.slots[s] - 1); p.hash == h && p.key == *k {
			return p
		}
	}
	return nil
}

// findOrAdd returns the record of k, adding a zeroed one from a (with its
// key and hash set) if there is none: added says which.
func (x *flowIndex) findOrAdd(a *pendingArena, k *recKey) (p *pending, added bool) {
	if 2*(x.n+1) > len(x.slots) {
		x.grow(a)
	}
	h := x.hash(k)
	mask := len(x.slots) - 1
	s := int(h) & mask
	for ; x.slots[s] != 0; s = (s + 1) & mask {
		if p := a.at(x.slots[s] - 1); p.hash == h && p.key == *k {
			return p, false
		}
	}
	i, p := a.add()
	p.key, p.hash = *k, h
	x.slots[s] = i + 1
	x.n++
	x.peak = max(x.peak, x.n)
	return p, true
}

// remove takes p, a record of a, out of the index and returns its arena
// index.
func (x *flowIndex) remove(a *pendingArena, p *pending) int32 {
	mask := len(x.slots) - 1
	s := int(p.hash) & mask
	for a.at(x.slots[s]-1) != p {
		s = (s + 1) & mask
	}
	i := x.slots[s] - 1
	// Entries after the hole move back into it unless that would put
	// them before their home slot.
	for j := (s + 1) & mask; x.slots[j] != 0; j = (j + 1) & mask {
		home := int(a.at(x.slots[j]-1).hash) & mask
		if (j-home)&mask >= (j-s)&mask {
			x.slots[s] = x.slots[j]
			s = j
		}
	}
	x.slots[s] = 0
	x.n--
	return i
}

// grow doubles the table.
func (x *flowIndex) grow(a *pendingArena) {
	old := x.slots
	x.slots = make([]int32, 2*len(old))
	mask := len(x.slots) - 1
	for _, i := range old {
		if i == 0 {
			continue
		}
		s := int(a.at(i-1).hash) & mask
		for x.slots[s] != 0 {
			s = (s + 1) & mask
		}
		x.slots[s] = i
	}
}

// reset empties the index for the next interval, sized for the one that
// ends: a table grown for a burst is let go after it.
func (x *flowIndex) reset() {
	size := minSlots
	for size < 2*x.peak {
		size *= 2
	}
	if size < len(x.slots) {
		x.slots = make([]int32, size)
	} else {
		clear(x.slots)
	}
	x.n, x.peak = 0, 0
}
