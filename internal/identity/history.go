package identity

import (
	"slices"
	"time"
)

// span is one holder of a key over [from, to) in receipt time; to is zero
// while the holder still has it.
type span[V comparable] struct {
	v        V
	from, to time.Time
}

// history remembers, per key (an address, a node port), who held it when.
// Spans are ordered by from, and only the last one may be open: a key has
// one holder at a time.
type history[K, V comparable] map[K][]span[V]

// claim makes v the holder of k from now on. An open span of another holder
// is closed at now: the address manager hands out only free addresses, so
// a newer claim means the older holder's release has not been seen yet.
func (h history[K, V]) claim(k K, v V, now time.Time) {
	s := h[k]
	if n := len(s); n > 0 {
		last := &s[n-1]
		// Handlers of different informers stamp receipt times before
		// taking the lock, so times may arrive slightly out of order;
		// clamping keeps spans ordered.
		if now.Before(last.from) {
			now = last.from
		}
		if last.to.IsZero() {
			if last.v == v {
				return
			}
			last.to = now
		}
	}
	s = append(s, span[V]{v: v, from: now})
	if len(s) > maxHolders {
		s = slices.Delete(s, 0, len(s)-maxHolders)
	}
	h[k] = s
}

// release ends v's hold on k at now. It does nothing if v does not hold k
// (any more): a later claim may have closed its span already.
func (h history[K, V]) release(k K, v V, now time.Time) {
	s := h[k]
	n := len(s)
	if n == 0 || s[n-1].v != v || !s[n-1].to.IsZero() {
		return
	}
	if now.Before(s[n-1].from) {
		now = s[n-1].from
	}
	s[n-1].to = now
}

// at returns the holder of k at t: the first span that ends after t. A time
// before the first known claim, or between a release and the next claim,
// belongs to the next holder, because the watch reports a new holder only
// after connections to it may have started.
func (h history[K, V]) at(k K, t time.Time) (V, bool) {
	for _, s := range h[k] {
		if s.to.IsZero() || s.to.After(t) {
			return s.v, true
		}
	}
	var zero V
	return zero, false
}

// expire drops spans that ended before cutoff.
func (h history[K, V]) expire(cutoff time.Time) {
	for k, s := range h {
		s = slices.DeleteFunc(s, func(s span[V]) bool { return !s.to.IsZero() && s.to.Before(cutoff) })
		if len(s) == 0 {
			delete(h, k)
		} else {
			h[k] = s
		}
	}
}

// forget drops every span of v on k, for a holder dropped from the index
// before its spans expired.
func (h history[K, V]) forget(k K, v V) {
	s := slices.DeleteFunc(h[k], func(s span[V]) bool { return s.v == v })
	if len(s) == 0 {
		delete(h, k)
	} else {
		h[k] = s
	}
}
