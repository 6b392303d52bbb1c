package tlsprobe

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseMapsLine(t *testing.T) {
	for _, c := range []struct {
		line string
		want mapping
		ok   bool
	}{
		{"7f3c0c1e4000-7f3c0c1ff000 r-xp 00022000 fd:01 1573124                    /usr/lib/x86_64-linux-gnu/libssl.so.3",
			mapping{addrs: "7f3c0c1e4000-7f3c0c1ff000", path: "/usr/lib/x86_64-linux-gnu/libssl.so.3"}, true},
		{"00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/my app (deleted)",
			mapping{addrs: "400000-452000", path: "/usr/bin/my app"}, true},
		{"7ffd5b1e2000-7ffd5b203000 rw-p 00000000 00:00 0                          [stack]", mapping{}, false},
		{"7f3c0c000000-7f3c0c021000 rw-p 00000000 00:00 0 ", mapping{}, false},
		{"55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]", mapping{}, false},
		{"7f3c0c1e4000-7f3c0c1ff000 r-xp 00022000 fd:01 1573124", mapping{}, false},
		{"zz-7f3c0c1ff000 r-xp 00022000 fd:01 1573124 /lib/libssl.so.3", mapping{}, false},
		{"00452000-00400000 r-xp 00000000 08:02 173521 /usr/bin/app", mapping{}, false},
		{"../../x r-xp 00022000 fd:01 1573124 /lib/libssl.so.3", mapping{}, false},
		{"", mapping{}, false},
	} {
		got, ok := parseMapsLine(c.line)
		if ok != c.ok || got != c.want {
			t.Errorf("parseMapsLine(%q) = %+v, %v; want %+v, %v", c.line, got, ok, c.want, c.ok)
		}
	}
}

func TestIsLibSSL(t *testing.T) {
	for p, want := range map[string]bool{
		"/usr/lib/x86_64-linux-gnu/libssl.so.3": true,
		"/usr/lib/libssl.so.1.1":                true,
		"/lib/libssl.so":                        true,
		"/usr/lib/x86_64-linux-gnu/libssl3.so":  false, // NSS
		"/usr/lib/libssl.a":                     false,
		"/opt/libssl.so.3/bin/curl":             false,
		"/usr/lib/libcrypto.so.3":               false,
	} {
		if got := isLibSSL(p); got != want {
			t.Errorf("isLibSSL(%q) = %v", p, got)
		}
	}
}

func FuzzParseMapsLine(f *testing.F) {
	f.Add("7f3c0c1e4000-7f3c0c1ff000 r-xp 00022000 fd:01 1573124    /usr/lib/x86_64-linux-gnu/libssl.so.3")
	f.Add("00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/dbus-daemon (deleted)")
	f.Add("7ffd5b1e2000-7ffd5b203000 rw-p 00000000 00:00 0 [stack]")
	f.Fuzz(func(t *testing.T, line string) {
		m, ok := parseMapsLine(line)
		if !ok {
			return
		}
		// The range names a map_files entry: start<end in hex, no
		// leading zeros, no path separator.
		var start, end uint64
		if n, err := fmt.Sscanf(m.addrs, "%x-%x", &start, &end); n != 2 || err != nil || start >= end ||
			fmt.Sprintf("%x-%x", start, end) != m.addrs {
			t.Fatalf("range %q", m.addrs)
		}
		if !strings.HasPrefix(m.path, "/") || !strings.Contains(line, m.path) {
			t.Fatalf("path %q from %q", m.path, line)
		}
	})
}
