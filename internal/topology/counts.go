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
}

// addRecord folds in what r counts for its connection: everything but
// retransmits, which addRetransmits takes from each side (each side
// counts only the segments it sent again, so both sides' add up exactly).
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
}

// addRetransmits folds in the segments r's observer sent again.
func (c *counts) addRetransmits(r *flow.Record) {
	c.retransToDst += uint64(r.RetransToDst)
	c.retransToSrc += uint64(r.RetransToSrc)
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
}

func (c *counts) failures() uint64 {
	return c.refused + c.timedOut + c.reset + c.unanswered + c.unreachable + c.failed
}

// rttQuantiles are the p50 and p95 of the RTT samples, no larger than the
// exact max: a bin's value is within RelativeError of its samples, which
// can put it just above the largest of them.
func (c *counts) rttQuantiles() (p50, p95 uint32) {
	return min(c.rtt.quantile(0.5), c.rttMax), min(c.rtt.quantile(0.95), c.rttMax)
}
