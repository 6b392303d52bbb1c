package startpages

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Only the executable's read-only mappings without a page of their own are
// released: not its writable data, not relocated data made read-only, not
// text a uprobe wrote into, not another file's.
func TestFileContentPicksUnchangedReadOnlyMappings(t *testing.T) {
	const exe = "/usr/local/bin/flow lens"
	smaps := `00400000-00420000 r--p 00000000 08:01 42 /usr/local/bin/flow lens
Size:                128 kB
Rss:                 128 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
00420000-03f10000 r-xp 00020000 08:01 42 /usr/local/bin/flow lens
Rss:               20000 kB
Anonymous:             0 kB
03f10000-06710000 r--p 03b10000 08:01 42 /usr/local/bin/flow lens
Anonymous:             0 kB
06710000-06800000 r--p 06310000 08:01 42 /usr/local/bin/flow lens
Anonymous:           300 kB
06800000-06900000 rw-p 06400000 08:01 42 /usr/local/bin/flow lens
Anonymous:           200 kB
06900000-06a00000 rw-p 06500000 08:01 42 /usr/local/bin/flow lens
Anonymous:             0 kB
07000000-07100000 r-xp 00000000 08:01 43 /usr/local/bin/flow lens.bak
Anonymous:             0 kB
7f0000000000-7f0000100000 r-xp 00000000 08:01 44 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Anonymous:          1024 kB
7f0000400000-7f0000500000 r-xp 00000000 08:01 42 /usr/local/bin/flow lens
Anonymous:             4 kB
`
	got, err := fileContent(strings.NewReader(smaps), exe)
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{{0x400000, 0x420000}, {0x420000, 0x3f10000}, {0x3f10000, 0x6710000}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fileContent = %#x, want %#x", got, want)
	}
}

// Releasing the test binary's own pages leaves it running: what it touches
// again is read back from the file.
func TestReleaseKeepsTheProcessWorking(t *testing.T) {
	n, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("released nothing: the test binary's text is a read-only mapping of its file")
	}
	// Code and read-only data read after the release.
	if b, err := os.ReadFile("/proc/self/status"); err != nil || !strings.Contains(string(b), "VmRSS") {
		t.Fatalf("after the release: read /proc/self/status: %v", err)
	}
	if again, err := Release(); err != nil || again != n {
		t.Fatalf("second release: %d bytes, %v; want %d, nil", again, err, n)
	}
}

// A file's cached pages that nothing maps leave the page cache: what the
// release does to the executable once its mappings are dropped, so that
// pages touched again come back in small folios (a test binary is too small
// to show it: the folios it runs in hold most of it).
func TestEvictDropsUnmappedPages(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "exe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 8 << 20
	if _, err := f.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	// Written pages are dirty until written back, and the kernel evicts
	// only clean ones.
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, size), 0); err != nil {
		t.Fatal(err)
	}
	before := cachedPages(t, f)
	if err := evict(f); err != nil {
		t.Fatal(err)
	}
	after := cachedPages(t, f)
	if want := size / os.Getpagesize(); before != want || after != 0 {
		t.Errorf("cached pages: %d before the eviction, %d after; want %d, 0", before, after, want)
	}
}

// cachedPages counts f's pages in the page cache, with mincore on a
// mapping that touches none of them.
func cachedPages(t *testing.T, f *os.File) int {
	t.Helper()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)),
		uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}
