package datapath

import (
	"fmt"
	"testing"
)

func rawComm(s string) [16]int8 {
	var raw [16]int8
	for i := range min(len(s), len(raw)) {
		raw[i] = int8(s[i])
	}
	return raw
}

// Names that share a slot of the lock-free cache take turns in it, each
// still read as itself; a full 16-byte name (no NUL) is read whole.
func TestCommsInternNamesSharingASlot(t *testing.T) {
	first := rawComm("nginx")
	var other string
	for i := 0; other == ""; i++ {
		if i == 10_000 {
			t.Fatal("no name found sharing a slot with nginx")
		}
		name := fmt.Sprintf("worker-%d", i)
		if raw := rawComm(name); recentSlot(&raw) == recentSlot(&first) {
			other = name
		}
	}
	var c comms
	for range 3 {
		for _, name := range []string{"nginx", other, "sixteen-bytes-ab"} {
			if got := c.intern(rawComm(name)); got != name {
				t.Fatalf("intern(%q) = %q", name, got)
			}
		}
	}
	if len(c.m) != 3 {
		t.Errorf("%d names interned, want 3", len(c.m))
	}
}
