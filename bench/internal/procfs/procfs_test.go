package procfs

import (
	"strings"
	"testing"
	"time"
)

func TestParseStatCommandWithSpacesAndParens(t *testing.T) {
	line := "4711 (my (weird) cmd) S 1 4711 4711 0 -1 4194560 1234 0 0 0 250 75 3 4 20 0 12 0 100 1000000 500 18446744073709551615\n"
	c, err := ParseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if c != (ProcCPU{250, 75, 3, 4}) {
		t.Fatalf("got %+v", c)
	}
	if c.Seconds() != 3.32 {
		t.Errorf("seconds %v", c.Seconds())
	}
	if d := c.Sub(ProcCPU{50, 25, 3, 4}); d.Seconds() != 2.5 {
		t.Errorf("sub %+v", d)
	}
	if _, err := ParseStat("12 (x) S 1 2"); err == nil {
		t.Error("short stat accepted")
	}
}

func TestParseStatus(t *testing.T) {
	text := "Name:\tflowlens\nVmPeak:\t 900000 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nThreads:\t8\n"
	m, err := ParseStatus(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m.Peak != 40960<<10 || m.RSS != 20480<<10 {
		t.Fatalf("got %+v", m)
	}
	if _, err := ParseStatus(strings.NewReader("Name:\tkthreadd\n")); err == nil {
		t.Error("status without memory accepted")
	}
}

func TestParseCPUStat(t *testing.T) {
	c, err := ParseCPUStat(strings.NewReader("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnice_usec 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Usage != 1500*time.Millisecond || c.User != time.Second || c.System != 500*time.Millisecond {
		t.Fatalf("got %+v", c)
	}
	if d := c.Sub(CgroupCPU{Usage: time.Second}); d.Usage != 500*time.Millisecond {
		t.Errorf("sub %+v", d)
	}
	if _, err := ParseCPUStat(strings.NewReader("nr_periods 0\n")); err == nil {
		t.Error("cpu.stat without usage accepted")
	}
}

func TestParseCgroup2Mount(t *testing.T) {
	hybrid := `25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
41 33 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
42 33 0:39 / /sys/fs/cgroup/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu
`
	if got, err := ParseCgroup2Mount(strings.NewReader(hybrid)); err != nil || got != "/sys/fs/cgroup/unified" {
		t.Errorf("hybrid: %q %v", got, err)
	}
	escaped := "41 33 0:38 / /mnt/my\\040cgroup rw shared:1 - cgroup2 none rw\n"
	if got, err := ParseCgroup2Mount(strings.NewReader(escaped)); err != nil || got != "/mnt/my cgroup" {
		t.Errorf("escaped: %q %v", got, err)
	}
	if _, err := ParseCgroup2Mount(strings.NewReader("42 33 0:39 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")); err == nil {
		t.Error("v1 only accepted")
	}
}
