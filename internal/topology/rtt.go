package topology

import (
	"math"
	"slices"
)

// RTT percentiles come from a mergeable summary: fixed log-spaced bins, as
// DDSketch has them. Bin i > 0 holds the values v with
// gamma^(i-2) < v <= gamma^(i-1) (bin 1 holds v <= 1 µs, bin 0 holds 0),
// and reports 2*gamma^(i-1)/(gamma+1), within RelativeError of every
// value in it. Two summaries merge by adding bin counts, so a window's
// percentiles are those of all its buckets' samples, to that error.
const (
	// RelativeError bounds |reported - true| / true for a percentile's
	// value (the true value being the sample at the nearest rank).
	RelativeError = 0.02
	gamma         = (1 + RelativeError) / (1 - RelativeError)
)

var logGamma = math.Log(gamma)

// bin is one occupied bin of a summary.
type bin struct {
	index uint16
	count uint32
}

// summary is a sparse, sorted set of occupied bins. Samples of one edge
// cluster in a few bins, so the sparse form is small.
type summary struct {
	bins []bin
}

func binOf(us uint32) uint16 {
	if us == 0 {
		return 0
	}
	// uint32 microseconds need at most 1+ceil(ln(2^32)/ln(gamma)) = 1112 bins.
	return uint16(1 + max(0, int(math.Ceil(math.Log(float64(us))/logGamma-1e-9))))
}

func valueOf(index uint16) uint32 {
	if index == 0 {
		return 0
	}
	return uint32(math.Round(2 * math.Pow(gamma, float64(index-1)) / (gamma + 1)))
}

func (s *summary) add(us uint32, n uint32) {
	s.addBin(binOf(us), n)
}

func (s *summary) addBin(index uint16, n uint32) {
	i, found := slices.BinarySearchFunc(s.bins, index, func(b bin, t uint16) int { return int(b.index) - int(t) })
	if found {
		s.bins[i].count += n
		return
	}
	s.bins = slices.Insert(s.bins, i, bin{index, n})
}

func (s *summary) merge(o *summary) {
	for _, b := range o.bins {
		s.addBin(b.index, b.count)
	}
}

func (s *summary) total() uint64 {
	var n uint64
	for _, b := range s.bins {
		n += uint64(b.count)
	}
	return n
}

// quantile is the value of the sample at nearest rank ceil(q*n), to
// RelativeError; 0 for no samples.
func (s *summary) quantile(q float64) uint32 {
	n := s.total()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for _, b := range s.bins {
		seen += uint64(b.count)
		if seen >= rank {
			return valueOf(b.index)
		}
	}
	return valueOf(s.bins[len(s.bins)-1].index)
}
