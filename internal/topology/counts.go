package topology

import "github.com/flowlens/flowlens/internal/flow"

// counts is what an edge carries for one bucket, or summed over a window.
type counts struct {
	opened, closed                                uint64
	refused, timedOut, reset, unreachable, failed uint64
	unanswered                                    uint64
	retransToDst, retransToSrc                    uint64
	bytesToDst, bytesToSrc                        uint64
	rttMax                                        uint32
	rtt                                           summary
	records                                       uint64 // records folded in, for tests and Stats
	// How connecting went (client side): SYNs sent again, and connect
	// latency, one sample per connection at its record's average.
	synRetrans uint64
	connectMax uint32
	connect    summary
	// drops are the packets the kernel dropped, by reason: each side's
	// own, as with retransmits. Nil until one.
	drops map[string]uint64
	// requests are the counted side's application requests by protocol
	// and class (requests.go). Nil until one.
	requests map[reqClass]reqCounts
}

// addRecord folds in what r counts for its connection: everything but
// what addOwn takes from each side.
func (c *counts) addRecord(r *flow.Record) {
	c.records++
	c.opened += uint64(r.Opened)
	c.closed += uint64(r.Closed)
	c.refused += uint64(r.Refused)
	c.timedOut += uint64(r.TimedOut)
	switch r.Verdict {
	case flow.VerdictUnreachable:
		c.unreachable += uint64(r.FailedOther)
	case flow.VerdictReset:
		c.reset += uint64(r.Closed)
	case flow.VerdictUnanswered:
		c.unanswered++
	default:
		c.failed += uint64(r.FailedOther)
	}
	c.bytesToDst += r.BytesToDst
	c.bytesToSrc += r.BytesToSrc
	if r.RTT != nil {
		c.rtt.add(r.RTT.AvgMicros, 1)
		c.rttMax = max(c.rttMax, r.RTT.MaxMicros)
	}
	c.synRetrans += uint64(r.SYNRetrans)
	if r.ConnectLatency != nil && r.Opened > 0 {
		c.connect.add(r.ConnectLatency.AvgMicros, r.Opened)
		c.connectMax = max(c.connectMax, r.ConnectLatency.MaxMicros)
	}
	c.addRequests(r.Requests)
}

// addOwn folds in what r's observer counts of its own, so that both sides'
// records add up exactly: the segments it sent again, and the packets the
// kernel dropped on its side.
func (c *counts) addOwn(r *flow.Record) {
	c.retransToDst += uint64(r.RetransToDst)
	c.retransToSrc += uint64(r.RetransToSrc)
	c.addDrops(r.Drops)
}

func (c *counts) addDrops(drops map[string]uint64) {
	for reason, n := range drops {
		if c.drops == nil {
			c.drops = map[string]uint64{}
		}
		c.drops[reason] += n
	}
}

func (c *counts) merge(o *counts) {
	c.opened += o.opened
	c.closed += o.closed
	c.refused += o.refused
	c.timedOut += o.timedOut
	c.reset += o.reset
	c.unreachable += o.unreachable
	c.failed += o.failed
	c.unanswered += o.unanswered
	c.retransToDst += o.retransToDst
	c.retransToSrc += o.retransToSrc
	c.bytesToDst += o.bytesToDst
	c.bytesToSrc += o.bytesToSrc
	c.rttMax = max(c.rttMax, o.rttMax)
	c.rtt.merge(&o.rtt)
	c.records += o.records
	c.synRetrans += o.synRetrans
	c.connectMax = max(c.connectMax, o.connectMax)
	c.connect.merge(&o.connect)
	c.addDrops(o.drops)
	c.mergeRequests(o)
}

func (c *counts) failures() uint64 {
	return c.refused + c.timedOut + c.reset + c.unanswered + c.unreachable + c.failed
}

// rttQuantiles are the p50 and p95 of the RTT samples, no larger than the
// exact max: a bin's value is within RelativeError of its samples, which
// can put it just above the largest of them.
func (c *counts) rttQuantiles() (p50, p95 uint32) {
	return quantiles(&c.rtt, c.rttMax)
}

func quantiles(s *summary, exactMax uint32) (p50, p95 uint32) {
	return min(s.quantile(0.5), exactMax), min(s.quantile(0.95), exactMax)
}
