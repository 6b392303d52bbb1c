package cgroup

import (
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	for name, tc := range map[string]struct {
		text, want, root string
		v1               bool
	}{
		"hybrid (this machine kind)": {`25 1 0:23 / / rw - ext4 /dev/vda rw
33 25 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
35 33 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu`, "/sys/fs/cgroup/unified", "/", true},
		"unified":                              {`29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot`, "/sys/fs/cgroup", "/", false},
		"escaped":                              {`40 23 0:26 / /mnt/my\040cgroups rw - cgroup2 none rw`, "/mnt/my cgroups", "/", false},
		"optional fields before the separator": {`40 23 0:26 / /cg rw shared:4 master:1 - cgroup2 none rw`, "/cg", "/", false},
		"cgroup namespace":                     {`40 23 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw`, "/sys/fs/cgroup", "/kubepods/pod1", false},
	} {
		got, err := parseMountinfo(strings.NewReader(tc.text))
		if err != nil || got != (Mount{Dir: tc.want, Root: tc.root, V1: tc.v1}) {
			t.Errorf("%s: got %+v, %v; want %q root %q", name, got, err, tc.want, tc.root)
		}
	}
	if m, err := parseMountinfo(strings.NewReader("35 33 0:30 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")); err == nil || !m.V1 {
		t.Errorf("v1 only: %+v, %v; want V1 and an error", m, err)
	}
}
