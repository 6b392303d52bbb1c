package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Mount is a cgroup v2 mount: where it is (Dir) and which cgroup it shows
// at its top (Root, "/" unless inside a cgroup namespace).
type Mount struct {
	Dir  string
	Root string
	// V1 says cgroup v1 hierarchies are mounted too (a hybrid or v1 host):
	// there kubelet may keep pods in v1 cgroups, which sockets do not carry.
	V1 bool
}

// ReadMount returns the first cgroup v2 mount of this mount namespace:
// /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones.
// It is read from /proc/self/mountinfo, never guessed.
func ReadMount() (Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return Mount{}, fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f)
}

// parseMountinfo returns the first cgroup2 mount in mountinfo text, and
// whether any cgroup v1 hierarchy is mounted (also when it finds no cgroup2
// mount, the error case).
func parseMountinfo(r io.Reader) (Mount, error) {
	var (
		m     Mount
		found bool
	)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// 36 35 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, fsFields := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(fsFields) < 1 {
			continue
		}
		switch fsFields[0] {
		case "cgroup":
			m.V1 = true
		case "cgroup2":
			if !found {
				m.Dir, m.Root, found = unescape(fields[4]), unescape(fields[3]), true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return m, fmt.Errorf("read mountinfo: %w", err)
	}
	if !found {
		return m, errors.New("no cgroup2 mount in mountinfo")
	}
	return m, nil
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + (c - '0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
