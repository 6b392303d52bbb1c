package conntable

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
	"github.com/flowlens/flowlens/internal/identity"
)

// The wall clock steps an hour forward 20 s after CLOCK_MONOTONIC zero (NTP
// after a VM resume). The identity history is stamped on the wall clock as
// it reads when each watch event arrives, and so must ConnStart be: a pod
// that took over an address after the step serves the connections made to
// it after its claim. Wall-clock times carry no monotonic reading here, as
// after JSON or in a hub: the comparison is on the wall clock.
func TestWallClockStepKeepsConnStartWithIdentity(t *testing.T) {
	const step = time.Hour
	w0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // wall clock at CLOCK_MONOTONIC zero
	stepAt := 20 * time.Second
	wallAt := func(mono time.Duration) time.Time {
		if mono < stepAt {
			return w0.Add(mono)
		}
		return w0.Add(mono + step)
	}
	tb := New(Config{BootTime: w0})
	tb.clock.mono = func(now time.Time) time.Duration {
		if d := now.Sub(w0); d < stepAt {
			return d
		}
		return now.Sub(w0) - step
	}

	ip := netip.MustParseAddr("10.0.0.2")
	idx := identity.New(identity.Config{})
	idx.UpsertPod(identity.Pod{UID: "a", Namespace: "ns", Name: "a", IPs: []netip.Addr{ip}}, wallAt(10*time.Second))
	idx.DeletePod("a", wallAt(30*time.Second))
	idx.UpsertPod(identity.Pod{UID: "b", Namespace: "ns", Name: "b", IPs: []netip.Addr{ip}}, wallAt(30*time.Second))

	// One connection began before the step (to a), one after b's claim.
	for i, start := range []time.Duration{15 * time.Second, 35 * time.Second} {
		s := clientSock(uint64(i + 1))
		s.Local = netip.AddrPortFrom(client.Addr(), uint16(40000+i))
		s.Remote, s.StartNS = netip.AddrPortFrom(ip, 80), uint64(start)
		tb.EndTCP(flow.TCPEnd{Socket: s})
	}
	recs := tb.Flush(wallAt(39*time.Second), wallAt(40*time.Second))
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	want := map[uint16]struct {
		start time.Time
		pod   string
	}{
		// Dated as the wall clock reads now, less the connection's age.
		40000: {w0.Add(15*time.Second + step), "a"},
		40001: {wallAt(35 * time.Second), "b"},
	}
	for _, r := range recs {
		w := want[r.Source.Port]
		if !r.ConnStart.Equal(w.start) {
			t.Errorf("port %d: ConnStart %s, want %s", r.Source.Port, r.ConnStart, w.start)
		}
		idx.Resolve(&r.Destination, identity.Hints{At: r.ConnStart, Destination: true})
		if r.Destination.Pod != w.pod {
			t.Errorf("port %d: destination named %q, want %q", r.Source.Port, r.Destination.Pod, w.pod)
		}
	}
	if n := tb.Stats().ClockSteps; n != 1 {
		t.Errorf("clock steps %d, want 1", n)
	}
}

// Without a step, a connection keeps the same ConnStart, monotonic reading
// included, in every record: the join recognises a connection's later
// intervals by it.
func TestConnStartStableWithoutStep(t *testing.T) {
	boot := time.Now().Add(-time.Hour) // as the agent reads it: with Go's monotonic reading
	tb := New(Config{BootTime: boot})
	s := clientSock(1)
	s.StartNS = uint64(30 * time.Minute)
	want := boot.Add(30 * time.Minute)
	for i := range 3 {
		s.BytesSent += 10
		tb.SyncTCP([]flow.TCPSocket{s})
		recs := tb.Flush(t0, time.Now())
		if len(recs) != 1 || recs[0].ConnStart != want {
			t.Fatalf("interval %d: records %+v, want one with ConnStart %s", i, recs, want)
		}
	}
	if n := tb.Stats().ClockSteps; n != 0 {
		t.Errorf("clock steps %d without a step", n)
	}
}
