package cgroup

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/testutil"
)

const (
	procUID = "6c3a1f6e-1b2d-4e5f-8a9b-0c1d2e3f4a5b"
	procCID = "9d4f7a1c2b3e4d5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f"
)

func TestParseProcCgroup(t *testing.T) {
	pod := Container{PodUID: procUID, ContainerID: procCID, Runtime: RuntimeCRI, QOS: QOSBurstable,
		Path: "/kubepods/burstable/pod" + procUID + "/" + procCID}
	for name, tc := range map[string]struct {
		text string
		want Container
	}{
		// A v1 host: kubelet's cgroups in every controller, the v2 line says nothing.
		"cgroup v1 kubelet": {`12:pids:/kubepods/burstable/pod` + procUID + `/` + procCID + `
11:memory:/kubepods/burstable/pod` + procUID + `/` + procCID + `
1:name=systemd:/kubepods/burstable/pod` + procUID + `/` + procCID + `
0::/
`, pod},
		// The pod-level line comes before a container's: the later full one wins.
		"pod line first": {`3:cpu:/kubepods/burstable/pod` + procUID + `
2:pids:/kubepods/burstable/pod` + procUID + `/` + procCID + `
`, pod},
		"cgroup v2": {"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(procUID, "-", "_") +
			".slice/cri-containerd-" + procCID + ".scope\n", Container{PodUID: procUID, ContainerID: procCID, Runtime: RuntimeContainerd,
			QOS: QOSBurstable, Path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(procUID, "-", "_") +
				".slice/cri-containerd-" + procCID + ".scope"}},
		"docker v1": {"4:memory:/docker/" + procCID + "\n0::/\n",
			Container{ContainerID: procCID, Runtime: RuntimeDocker, Path: "/docker/" + procCID}},
		"host process": {"4:memory:/system.slice/sshd.service\n0::/system.slice/sshd.service\n", Container{}},
		"garbage":      {"not a cgroup file\n::\n", Container{}},
	} {
		if got := ParseProcCgroup(tc.text, ""); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", name, got, tc.want)
		}
	}
}

func writeProc(t *testing.T, root string, pid int, text string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestProcsCachesWithinTTLAndStaysBounded(t *testing.T) {
	root := t.TempDir()
	line := "2:pids:/kubepods/burstable/pod" + procUID + "/" + procCID + "\n"
	writeProc(t, root, 10, line)
	p := NewProcs(ProcConfig{Root: root, MaxEntries: 3, TTL: time.Hour})
	if c, ok := p.Lookup(10); !ok || c.PodUID != procUID {
		t.Fatalf("Lookup(10) = %+v, %v", c, ok)
	}
	// Cached: a changed file is not read again within the TTL.
	writeProc(t, root, 10, "0::/\n")
	if c, _ := p.Lookup(10); c.PodUID != procUID {
		t.Fatalf("re-read within TTL: %+v", c)
	}
	if _, ok := p.Lookup(99); ok {
		t.Fatal("Lookup of a missing process succeeded")
	}
	for pid := 20; pid < 30; pid++ {
		writeProc(t, root, pid, "0::/\n")
		p.Lookup(uint32(pid))
	}
	s := p.Stats()
	if s.Entries > 3 || s.Reads != 12 || s.Errors != 1 {
		t.Fatalf("stats %+v, want at most 3 entries, 12 reads, 1 error", s)
	}
	short := NewProcs(ProcConfig{Root: root, TTL: time.Nanosecond})
	short.Lookup(10)
	time.Sleep(time.Millisecond)
	if c, _ := short.Lookup(10); c.PodUID != "" {
		t.Fatalf("expired entry not re-read: %+v", c)
	}
}

// v1Mount finds a cgroup v1 hierarchy with the pids controller.
func v1Mount(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+3 < len(fields) && fields[i+1] == "cgroup" && strings.Contains(","+fields[i+3]+",", ",pids,") {
				return fields[4]
			}
		}
	}
	t.Skip("no cgroup v1 pids hierarchy on this host")
	return ""
}

// A process in a kubelet-shaped cgroup of a real v1 hierarchy is named by
// its pod, though its v2 cgroup (what its sockets carry) is the root.
func TestProcsOnCgroupV1(t *testing.T) {
	testutil.RequirePrivileged(t) // creates cgroups in a v1 hierarchy
	mount := v1Mount(t)
	top := filepath.Join(mount, fmt.Sprintf("flcg%08x-kubelet", rand.Uint32()))
	leaf := filepath.Join(top, "kubepods", "burstable", "pod"+procUID, procCID)
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		for dir := leaf; strings.HasPrefix(dir, top); dir = filepath.Dir(dir) {
			if err := os.Remove(dir); err != nil {
				t.Errorf("remove %s: %v", dir, err)
			}
		}
	})
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	c, ok := NewProcs(ProcConfig{KubeletRoot: filepath.Base(top)}).Lookup(uint32(cmd.Process.Pid))
	if !ok || c.PodUID != procUID || c.ContainerID != procCID || c.QOS != QOSBurstable {
		t.Fatalf("Lookup = %+v, %v; want pod %s container %s", c, ok, procUID, procCID)
	}
}
