package conntable

import (
	"strings"
	"testing"
	"time"
)

func TestConversationsFor(t *testing.T) {
	for _, tc := range []struct {
		kernel                   int
		idle, remember, interval time.Duration
		want                     int
	}{
		// 55 s remembered after release plus a read's delay: 12 idles.
		{16384, 5 * time.Second, time.Minute, time.Second, 16384 * 13},
		{1000, 5 * time.Second, 5 * time.Second, time.Second, 1000 * 2},
		{1000, time.Second, 10 * time.Second, 2 * time.Second, 1000 * 12},
	} {
		if got := ConversationsFor(tc.kernel, tc.idle, tc.remember, tc.interval); got != tc.want {
			t.Errorf("ConversationsFor(%d, %s, %s, %s) = %d, want %d", tc.kernel, tc.idle, tc.remember, tc.interval, got, tc.want)
		}
	}
}

func TestFitSizesFromTheKernelMaps(t *testing.T) {
	var c Config
	if err := c.Fit(1000, 100, time.Second); err != nil {
		t.Fatal(err)
	}
	if c.MaxSockets != 2000 || c.MaxConversations != 1300 || c.UDPIdle != 5*time.Second || c.UDPForget != time.Minute {
		t.Errorf("fitted %+v, want 2000 sockets, 1300 conversations, 5s idle, 1m remembered", c)
	}
	// Explicit sizes that hold everything are kept.
	c = Config{MaxSockets: 5000, MaxConversations: 1300}
	if err := c.Fit(1000, 100, time.Second); err != nil || c.MaxSockets != 5000 || c.MaxConversations != 1300 {
		t.Errorf("explicit sizes: %+v, %v", c, err)
	}
}

func TestFitRejectsInconsistentSizes(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{MaxSockets: 1999}, "the TCP table holds 1999 sockets, fewer than the 2000"},
		{Config{MaxConversations: 1299}, "the UDP table holds 1299 conversations, fewer than the 1300"},
		{Config{UDPIdle: 10 * time.Second, UDPForget: 5 * time.Second}, "UDP conversations remembered 5s, less than the 10s idle"},
		{Config{MaxSockets: -1}, "negative table size"},
	} {
		err := tc.cfg.Fit(1000, 100, time.Second)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
