package tlsprobe

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// mapping is one file-backed line of /proc/<pid>/maps.
type mapping struct {
	// addrs is the line's address range as /proc/<pid>/map_files names
	// it, which opens the very file mapped there: "400000-6fa000", where
	// maps says "00400000-006fa000".
	addrs string
	path  string // as the reader's root sees it; " (deleted)" removed
}

// parseMapsLine reads a /proc/<pid>/maps line:
//
//	7f3c0c1e4000-7f3c0c1ff000 r-xp 00022000 fd:01 1573124    /usr/lib/x86_64-linux-gnu/libssl.so.3
//
// ok is false for anonymous mappings ([heap], [stack], no path, inode 0)
// and for lines not in this shape.
func parseMapsLine(line string) (m mapping, ok bool) {
	// Five space-separated fields, then spaces up to the path, which
	// may itself hold spaces.
	rest := line
	var fields [5]string
	for i := range fields {
		rest = strings.TrimLeft(rest, " ")
		end := strings.IndexByte(rest, ' ')
		if end <= 0 {
			return mapping{}, false
		}
		fields[i], rest = rest[:end], rest[end:]
	}
	p := strings.TrimLeft(rest, " ")
	start, end, found := strings.Cut(fields[0], "-")
	if !found || fields[4] == "0" || !strings.HasPrefix(p, "/") {
		return mapping{}, false
	}
	s, err1 := strconv.ParseUint(start, 16, 64)
	e, err2 := strconv.ParseUint(end, 16, 64)
	if err1 != nil || err2 != nil || s >= e {
		return mapping{}, false
	}
	return mapping{addrs: fmt.Sprintf("%x-%x", s, e), path: strings.TrimSuffix(p, " (deleted)")}, true
}

// isLibSSL reports whether a path is OpenSSL's libssl (libssl.so,
// libssl.so.3, libssl.so.1.1), not NSS's libssl3.so nor a static archive.
func isLibSSL(p string) bool {
	return strings.HasPrefix(path.Base(p), "libssl.so")
}
