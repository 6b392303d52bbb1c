// Package startpages gives back the pages of the executable that start-up
// touched and the process may never touch again.
//
// flowlens links DuckDB: a 140 MB executable whose start-up runs DuckDB's
// C++ static initialisers and every Go package's init, and whose runtime
// reads function tables as it goes. Each page fault on the file maps the
// pages around it that the page cache holds (fault-around, 64 KiB), and
// a binary just built or copied is wholly cached: after start-up ≈50 MiB
// of it is resident in `flowlens up`, the largest part of its idle RSS
// (issue 17). Dropping those mappings once start-up is done costs a
// minor fault for each page touched again, served from the page cache,
// and leaves resident only what the process goes on using.
//
// Dropping the mappings is not enough on its own. The page cache of a
// file just written (a build, a copy, an image pulled) is in large folios,
// up to 2 MiB, and a fault maps the whole folio it falls in: in `up`, 25
// faults after the release brought 32 MiB of the executable back, FilePmdMapped
// or not (MADV_NOHUGEPAGE changed how, not how much). So the release also
// evicts the executable's cached pages that no process maps: the next
// fault reads the file again, in readahead's small folios, and maps only
// those. The folios the process is running in stay (they are mapped), as
// do those of any other process running the same file.
package startpages

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mapping is an address range of a smaps entry.
type mapping struct{ start, end uintptr }

// Release drops this process's mappings of its own executable that hold
// only the file's content (read-only, no private copy of any page), evicts
// the file's cached pages that are then mapped nowhere, and returns how
// many bytes of address space it went over. Dropping such a
// mapping changes nothing but what is resident: the next access reads the
// same bytes from the page cache. A writable mapping, or a read-only one
// holding a page of its own (relocated data made read-only after the
// dynamic loader wrote it, an instruction a uprobe replaced), is left
// alone: its pages are not the file's.
func Release() (uint64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("find the executable: %w", err)
	}
	smaps, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("read the mappings: %w", err)
	}
	defer smaps.Close()
	ms, err := fileContent(smaps, exe)
	if err != nil {
		return 0, err
	}
	// The running file, not its path: the path may name a newer build.
	// Opened first, so that between the release and the eviction the
	// process runs as little code as it can: a folio it touches there is
	// mapped again, and stays large.
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("open the executable: %w", err)
	}
	defer f.Close()
	var n uint64
	for _, m := range ms {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return n, fmt.Errorf("madvise %#x-%#x: %w", m.start, m.end, errno)
		}
		n += uint64(m.end - m.start)
	}
	if err := evict(f); err != nil {
		return n, fmt.Errorf("evict the executable's cached pages: %w", err)
	}
	return n, nil
}

// evict drops f's pages from the page cache where nothing maps them. The
// kernel keeps a mapped or dirty page: this costs other processes running
// the executable at most a read of the file when they touch it again.
func evict(f *os.File) error {
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// fileContent returns the mappings of path in smaps that are not writable
// and hold no anonymous page.
func fileContent(smaps io.Reader, path string) ([]mapping, error) {
	var out []mapping
	var cur mapping
	candidate := false // cur maps path read-only
	sc := bufio.NewScanner(smaps)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if m, ok := header(fields); ok {
			cur = m
			name := ""
			if len(fields) >= 6 {
				// The path is the rest of the line: it may hold spaces.
				name = strings.Join(fields[5:], " ")
			}
			candidate = name == path && !strings.Contains(fields[1], "w")
			continue
		}
		if candidate && fields[0] == "Anonymous:" && len(fields) >= 2 {
			if fields[1] == "0" {
				out = append(out, cur)
			}
			candidate = false
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the mappings: %w", err)
	}
	return out, nil
}

// header parses a smaps entry's first line ("start-end perms offset dev
// inode [path]"); the lines after it are "Key: value".
func header(fields []string) (mapping, bool) {
	if len(fields) < 5 || strings.HasSuffix(fields[0], ":") {
		return mapping{}, false
	}
	lo, hi, ok := strings.Cut(fields[0], "-")
	if !ok {
		return mapping{}, false
	}
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return mapping{}, false
	}
	return mapping{uintptr(start), uintptr(end)}, true
}
