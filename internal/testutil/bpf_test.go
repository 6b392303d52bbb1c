package testutil

import (
	"maps"

	"os"
	"strings"
	"testing"

	"github.com/flowlens/flowlens/internal/bpffd"
)

// fdinfo texts as Linux 6.x prints them for a program, a map and a link.
const (
	progFdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t2072\nprog_type:\t26\nprog_jited:\t1\n" +
		"prog_tag:\ta04f5eef06a7f555\nmemlock:\t4096\nprog_id:\t503\nrun_time_ns:\t0\nrun_cnt:\t0\n"
	mapFdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t2072\nmap_type:\t1\nkey_size:\t16\n" +
		"value_size:\t48\nmax_entries:\t65536\nmap_flags:\t0x0\nmemlock:\t6291456\nmap_id:\t410\nfrozen:\t0\n"
	linkFdinfo = "pos:\t0\nflags:\t02000000\nmnt_id:\t16\nino:\t2072\nlink_type:\traw_tracepoint\n" +
		"link_id:\t434\nprog_tag:\ta04f5eef06a7f555\nprog_id:\t504\ntp_name:\tinet_sock_set_state\n"
)

func TestBPFHeldAdd(t *testing.T) {
	h := BPFHeld{Progs: map[uint32]bool{}, Maps: map[uint32]bool{}, Links: map[uint32]uint32{}}
	for _, d := range []struct {
		kind   bpffd.Kind
		fdinfo string
	}{
		{"prog", progFdinfo}, {"prog", progFdinfo}, // a dup'ed descriptor is one program
		{"map", mapFdinfo}, {"link", linkFdinfo},
	} {
		if err := h.add(d.kind, bpffd.Parse(d.fdinfo)); err != nil {
			t.Fatalf("add %s: %v", d.kind, err)
		}
	}
	if want := map[uint32]bool{503: true}; !maps.Equal(h.Progs, want) {
		t.Errorf("progs %v, want %v", h.Progs, want)
	}
	if want := map[uint32]bool{410: true}; !maps.Equal(h.Maps, want) {
		t.Errorf("maps %v, want %v", h.Maps, want)
	}
	if want := map[uint32]uint32{434: 504}; !maps.Equal(h.Links, want) {
		t.Errorf("links %v, want %v", h.Links, want)
	}

	for _, bad := range []struct {
		kind   bpffd.Kind
		fdinfo string
	}{
		{"prog", strings.Replace(progFdinfo, "prog_id:\t503", "prog_id:\t0", 1)},
		{"map", strings.Replace(mapFdinfo, "map_id:", "map_ix:", 1)},
		{"link", strings.Replace(linkFdinfo, "prog_id:\t504", "prog_id:\t4294967296", 1)},
	} {
		if err := h.add(bad.kind, bpffd.Parse(bad.fdinfo)); err == nil {
			t.Errorf("add %s %q: no error", bad.kind, bad.fdinfo)
		}
	}
}

// A test process holds no eBPF object: the walk of its own descriptors
// finds exactly none.
func TestHeldBPFOfSelf(t *testing.T) {
	h, err := HeldBPF(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Progs)+len(h.Maps)+len(h.Links) != 0 {
		t.Errorf("held %+v, want nothing", h)
	}
	if _, err := HeldBPF(-1); err == nil {
		t.Error("HeldBPF(-1): no error")
	}
}

func FuzzBPFHeldAdd(f *testing.F) {
	f.Add("prog", progFdinfo)
	f.Add("map", mapFdinfo)
	f.Add("link", linkFdinfo)
	f.Fuzz(func(t *testing.T, kind, fdinfo string) {
		h := BPFHeld{Progs: map[uint32]bool{}, Maps: map[uint32]bool{}, Links: map[uint32]uint32{}}
		err := h.add(bpffd.Kind(kind), bpffd.Parse(fdinfo))
		n := len(h.Progs) + len(h.Maps) + len(h.Links)
		switch {
		case err != nil && n != 0:
			t.Fatalf("error %v, yet recorded %+v", err, h)
		case err == nil && n > 1:
			t.Fatalf("one descriptor recorded as %+v", h)
		}
		for id, prog := range h.Links {
			if id == 0 || prog == 0 {
				t.Fatalf("zero id recorded: %+v", h)
			}
		}
		if h.Progs[0] || h.Maps[0] {
			t.Fatalf("zero id recorded: %+v", h)
		}
	})
}
