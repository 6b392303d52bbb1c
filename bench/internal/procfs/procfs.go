// Package procfs reads what the benchmarks measure from /proc and cgroup v2:
// a process's CPU time and memory high-water mark, a cgroup's CPU usage, and
// where the cgroup2 hierarchy is mounted. Parsers take readers so they can
// be tested on captured text.
package procfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// ClockTicks is USER_HZ, the unit of the times in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports.
const ClockTicks = 100

// ProcCPU is a process's CPU time from /proc/<pid>/stat, in clock ticks.
type ProcCPU struct {
	UTime, STime   uint64 // the process's own threads
	CUTime, CSTime uint64 // children it waited for
}

// Seconds is the total, children included.
func (c ProcCPU) Seconds() float64 {
	return float64(c.UTime+c.STime+c.CUTime+c.CSTime) / ClockTicks
}

// Sub returns c - prev.
func (c ProcCPU) Sub(prev ProcCPU) ProcCPU {
	return ProcCPU{c.UTime - prev.UTime, c.STime - prev.STime, c.CUTime - prev.CUTime, c.CSTime - prev.CSTime}
}

// ParseStat parses the single line of /proc/<pid>/stat. The command name
// (field 2) is in parentheses and may itself contain spaces and
// parentheses, so fields are counted from the last ')'.
func ParseStat(line string) (ProcCPU, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return ProcCPU{}, errors.New("stat: no command name")
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state); utime..cstime are fields 14..17.
	if len(f) < 15 {
		return ProcCPU{}, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	var v [4]uint64
	for k := range v {
		n, err := strconv.ParseUint(f[11+k], 10, 64)
		if err != nil {
			return ProcCPU{}, fmt.Errorf("stat field %d: %w", 14+k, err)
		}
		v[k] = n
	}
	return ProcCPU{v[0], v[1], v[2], v[3]}, nil
}

// ReadStat reads /proc/<pid>/stat.
func ReadStat(pid int) (ProcCPU, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcCPU{}, err
	}
	return ParseStat(string(b))
}

// Memory is a process's resident memory from /proc/<pid>/status, in bytes.
type Memory struct {
	RSS  uint64 // VmRSS
	Peak uint64 // VmHWM: the high-water mark of RSS
}

// ParseStatus reads VmRSS and VmHWM from /proc/<pid>/status text.
func ParseStatus(r io.Reader) (Memory, error) {
	var m Memory
	var found int
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("status %s: unexpected %q", k, v)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("status %s: %w", k, err)
		}
		if k == "VmRSS" {
			m.RSS = n << 10
		} else {
			m.Peak = n << 10
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if found != 2 {
		return m, errors.New("status: VmRSS or VmHWM missing (kernel thread or zombie?)")
	}
	return m, nil
}

// ReadStatus reads /proc/<pid>/status.
func ReadStatus(pid int) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	defer f.Close()
	return ParseStatus(f)
}

// CgroupCPU is a cgroup's cpu.stat: CPU time of every task that ever ran
// in it (or its descendants), exited ones included, to the microsecond.
type CgroupCPU struct {
	Usage, User, System time.Duration
}

// Sub returns c - prev.
func (c CgroupCPU) Sub(prev CgroupCPU) CgroupCPU {
	return CgroupCPU{c.Usage - prev.Usage, c.User - prev.User, c.System - prev.System}
}

// ParseCPUStat parses cgroup v2 cpu.stat text.
func ParseCPUStat(r io.Reader) (CgroupCPU, error) {
	var c CgroupCPU
	seen := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return c, fmt.Errorf("cpu.stat %s: %w", f[0], err)
		}
		d := time.Duration(n) * time.Microsecond
		switch f[0] {
		case "usage_usec":
			c.Usage, seen = d, true
		case "user_usec":
			c.User = d
		case "system_usec":
			c.System = d
		}
	}
	if err := sc.Err(); err != nil {
		return c, err
	}
	if !seen {
		return c, errors.New("cpu.stat: no usage_usec")
	}
	return c, nil
}

// ReadCgroupCPU reads <dir>/cpu.stat.
func ReadCgroupCPU(dir string) (CgroupCPU, error) {
	f, err := os.Open(dir + "/cpu.stat")
	if err != nil {
		return CgroupCPU{}, err
	}
	defer f.Close()
	return ParseCPUStat(f)
}

// ParseCgroup2Mount returns the mount point of the first cgroup2 file
// system in /proc/self/mountinfo text: /sys/fs/cgroup on unified hosts,
// /sys/fs/cgroup/unified on hybrid ones.
func ParseCgroup2Mount(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// 36 35 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, fs := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(fs) < 1 || fs[0] != "cgroup2" {
			continue
		}
		return unescapeMount(fields[4]), nil
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup2 file system in mountinfo")
}

// unescapeMount undoes mountinfo's octal escapes (\040 is a space).
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Cgroup2Mount finds the cgroup2 mount of this mount namespace.
func Cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	return ParseCgroup2Mount(f)
}
