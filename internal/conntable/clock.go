package conntable

import "time"

// minClockStep is the smallest wall-clock step the table follows. Wall
// and monotonic clocks are slewed alike, so between steps they keep their
// distance to within the few nanoseconds between the two reads inside
// time.Now(); real steps (NTP, VM resume, a leap second) are 100 ms and
// more. Following only those keeps a connection's ConnStart the same in
// every record.
const minClockStep = 10 * time.Millisecond

// clock dates kernel CLOCK_MONOTONIC timestamps on the wall clock that
// identity and the records' interval bounds are stamped with: time.Now().
//
// A ConnStart computed once from the wall clock at start stays in that
// clock's frame forever: after a step of +1h every ConnStart reads an hour
// earlier than the identity history and the Start and Time of its own
// record. In the agent's process Before and After still compare right,
// because a time derived from time.Now() with Add keeps Go's monotonic
// reading and both sides have one; but anything that drops it (JSON, the
// API, a hub, Round, UTC) compares wall clocks. So the clock re-reads the
// wall-clock time of CLOCK_MONOTONIC zero at each interval's end, keeping
// the monotonic reading:
//
//	boot' = now.Add(-(now - boot))   with now - boot by monotonic readings
//	      = boot's monotonic reading, and now's wall clock minus the
//	        monotonic time since boot: the step is in the wall part only
type clock struct {
	boot  time.Time // wall-clock time of CLOCK_MONOTONIC zero, after the last step
	steps uint64
	// mono returns CLOCK_MONOTONIC at now. Nil: by now's monotonic reading
	// against boot's. Tests replace it, since only time.Now() makes times
	// with a monotonic reading, and it cannot step.
	mono func(now time.Time) time.Duration
}

func newClock(boot time.Time) clock { return clock{boot: boot} }

// follow takes the wall-clock time now, and re-dates CLOCK_MONOTONIC zero
// if the wall clock stepped.
func (c *clock) follow(now time.Time) {
	if c.boot.IsZero() {
		return
	}
	var mono time.Duration
	if c.mono != nil {
		mono = c.mono(now)
	} else {
		mono = now.Sub(c.boot)
	}
	boot := now.Add(-mono)
	if boot.Round(0).Sub(c.boot.Round(0)).Abs() >= minClockStep {
		c.boot = boot
		c.steps++
	}
}

// wall returns the wall-clock time of the kernel timestamp ns.
func (c *clock) wall(ns uint64) time.Time { return c.boot.Add(time.Duration(ns)) }
