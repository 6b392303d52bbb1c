package agent

import (
	"testing"

	"github.com/flowlens/flowlens/internal/datapath"
)

// The whole map is read on the first interval, after a read that missed
// sockets, when the kernel lost an end event or a mark, every
// wholeReadEvery intervals (every sockets/wholeReadSpacing with many
// open), and always where changed sockets cannot be read alone; otherwise
// never.
func TestWholeReadsWhenSomethingWasLost(t *testing.T) {
	w := newWholeReads()
	var kc datapath.Counters
	step := func(missing int, canTouched bool) bool {
		whole := w.due(kc, missing, canTouched)
		w.done(kc, whole)
		return whole
	}
	if !step(0, true) {
		t.Fatal("first interval: want a whole read")
	}
	for i := range 5 {
		if step(0, true) {
			t.Fatalf("quiet interval %d: want no whole read", i)
		}
	}
	if !step(1, true) {
		t.Error("after a read that missed a socket: want another")
	}
	kc.RingbufFull = 3
	if !step(0, true) {
		t.Error("after a lost end event: want a whole read")
	}
	if step(0, true) {
		t.Error("the loss was read for: want no whole read")
	}
	kc.TouchedFull = 1
	if !step(0, true) {
		t.Error("after a lost mark: want a whole read")
	}
	n := 0
	for range 3 * wholeReadEvery {
		if step(0, true) {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d whole reads in %d quiet intervals, want 3", n, 3*wholeReadEvery)
	}
	// Two million sockets open: the backstop every 2,000 intervals.
	kc.TCPTracked = 2_000_000
	n = 0
	for range 3 * 2000 {
		if step(0, true) {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d whole reads in %d quiet intervals with 2M sockets, want 3", n, 3*2000)
	}
	for i := range 3 {
		if !step(0, false) {
			t.Fatalf("interval %d without touched reads: want a whole read", i)
		}
	}
}
