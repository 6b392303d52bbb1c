package tlsprobe

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"testing"
)

const hostLibSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"

// fakeProcess makes <proc>/<pid> look like a process running exe and
// mapping libs: exe and maps, and map_files as symlinks to the files.
func fakeProcess(t *testing.T, proc string, pid int, exe string, libs ...string) {
	t.Helper()
	dir := filepath.Join(proc, fmt.Sprint(pid))
	if err := os.MkdirAll(filepath.Join(dir, "map_files"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	lines := ""
	for i, p := range append([]string{exe}, libs...) {
		start, end := 0x400000+i*0x100000, 0x400000+i*0x100000+0x1000
		// Two lines per file, as a loader maps its segments; maps pads
		// addresses with zeros, map_files does not.
		lines += fmt.Sprintf("%08x-%08x r--p 00000000 fd:01 %d   %s\n", start, end, 100+i, p)
		lines += fmt.Sprintf("%08x-%08x r-xp 00001000 fd:01 %d   %s\n", start, end, 100+i, p)
		if err := os.Symlink(p, filepath.Join(dir, "map_files", fmt.Sprintf("%x-%x", start, end))); err != nil {
			t.Fatal(err)
		}
	}
	lines += "7ffd5b1e2000-7ffd5b203000 rw-p 00000000 00:00 0   [stack]\n"
	if err := os.WriteFile(filepath.Join(dir, "maps"), []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestScanInspectsEachFileOnce runs discovery on a fake procfs with no
// programs to attach: every target found fails at attach, once per file.
func TestScanInspectsEachFileOnce(t *testing.T) {
	if _, err := os.Stat(hostLibSSL); err != nil {
		t.Skipf("no %s (apt-get install libssl3): %v", hostLibSSL, err)
	}
	gotls, notls := buildGo(t, "gotls"), buildGo(t, "notls")
	proc := t.TempDir()
	fakeProcess(t, proc, 100, gotls, hostLibSSL)
	fakeProcess(t, proc, 101, gotls)                 // same executable
	fakeProcess(t, proc, 102, notls, hostLibSSL)     // same libssl
	fakeProcess(t, proc, 103, "/bin/sh", hostLibSSL) // neither Go nor new
	p := New(Programs{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	p.proc, p.root = proc, t.TempDir()

	want := Stats{Attached: map[Kind]int{}, Skipped: map[Reason]int{ReasonAttach: 2}}
	check := func(when string) {
		t.Helper()
		got := p.Stats()
		if !maps.Equal(got.Attached, want.Attached) || !maps.Equal(got.Skipped, want.Skipped) || got.Uprobes != 0 {
			t.Errorf("%s: stats %+v, want %+v", when, got, want)
		}
	}
	if err := p.Scan(); err != nil {
		t.Fatal(err)
	}
	check("first scan")
	fakeProcess(t, proc, 104, gotls, hostLibSSL)
	if err := p.Scan(); err != nil {
		t.Fatal(err)
	}
	check("a new process of known files")
	if len(p.pids) != 5 {
		t.Errorf("%d processes remembered, want 5", len(p.pids))
	}
	os.RemoveAll(filepath.Join(proc, "100"))
	if err := p.Scan(); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.pids[100]; ok || len(p.pids) != 4 {
		t.Errorf("an ended process still remembered: %v", p.pids)
	}
}
