package cluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Everything the harness creates is undone twice over: by t.Cleanup in the
// normal case, and by a SIGINT/SIGTERM handler when `go test` is interrupted
// (Go would otherwise exit without running cleanups). Each undo function runs
// at most once. A hard kill or a test timeout panic runs neither; then the
// child processes die through Pdeathsig and the netns/cgroups left behind are
// removed by sweepLeftovers in the next run (see stateDir).

var teardown struct {
	sync.Mutex
	next    int
	fns     map[int]func()
	watched bool
}

// onTeardown registers fn to run once, at t.Cleanup or on SIGINT/SIGTERM,
// whichever comes first.
func onTeardown(t testing.TB, fn func()) {
	var once sync.Once
	run := func() { once.Do(fn) }

	teardown.Lock()
	if teardown.fns == nil {
		teardown.fns = map[int]func(){}
	}
	id := teardown.next
	teardown.next++
	teardown.fns[id] = run
	if !teardown.watched {
		teardown.watched = true
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			sig := <-ch
			fmt.Fprintf(os.Stderr, "cluster: %v: tearing down test cluster\n", sig)
			runAllTeardowns()
			os.Exit(2)
		}()
	}
	teardown.Unlock()

	t.Cleanup(func() {
		run()
		teardown.Lock()
		delete(teardown.fns, id)
		teardown.Unlock()
	})
}

// runAllTeardowns runs the registered undo functions, newest first, like
// t.Cleanup would.
func runAllTeardowns() {
	teardown.Lock()
	ids := make([]int, 0, len(teardown.fns))
	for id := range teardown.fns {
		ids = append(ids, id)
	}
	fns := teardown.fns
	teardown.fns = map[int]func(){}
	teardown.Unlock()
	slices.Sort(ids)
	for i := len(ids) - 1; i >= 0; i-- {
		fns[ids[i]]()
	}
}

// stateDir records which run prefixes are in use: one file per prefix holding
// the owner's pid and start time. A file whose owner is gone marks leftovers
// of a run that could not clean up (killed, timed out).
const stateDir = "/run/flowlens-e2e"

func writeState(prefix string) error {
	start, err := procStartTime(os.Getpid())
	if err != nil {
		return err
	}
	data := fmt.Sprintf("%d %s\n", os.Getpid(), start)
	// Another run may remove the directory when it looks empty between our
	// MkdirAll and WriteFile; try again then.
	for range 3 {
		if err = os.MkdirAll(stateDir, 0o755); err != nil {
			continue
		}
		if err = os.WriteFile(filepath.Join(stateDir, prefix), []byte(data), 0o644); err == nil {
			return nil
		}
	}
	return fmt.Errorf("write state for %s: %w", prefix, err)
}

func removeState(prefix string) {
	os.Remove(filepath.Join(stateDir, prefix))
	os.Remove(stateDir) // only if empty: other runs may be using it
}

// procStartTime is field 22 of /proc/<pid>/stat; with the pid it identifies a
// process even if the pid is reused later.
func procStartTime(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// The command name (field 2) may contain spaces; fields after it are
	// counted from the closing parenthesis.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return "", fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 {
		return "", fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields))
	}
	return fields[19], nil
}

// sweepLeftovers removes the named netns and the (empty) cgroups of earlier
// runs whose owning process is gone. It only touches names under a prefix
// recorded in stateDir, i.e. things this harness made, and kills nothing: a
// cgroup that still holds processes is left alone.
func sweepLeftovers(t testing.TB) {
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		prefix := e.Name()
		data, err := os.ReadFile(filepath.Join(stateDir, prefix))
		if err != nil {
			continue
		}
		var pid int
		var start string
		if n, _ := fmt.Sscanf(string(data), "%d %s", &pid, &start); n != 2 {
			continue // being written right now, or not ours to judge
		}
		if now, err := procStartTime(pid); err == nil && now == start {
			continue // owner still running
		}
		t.Logf("cluster: removing leftovers of dead run %s (pid %d)", prefix, pid)
		removeNetnsWithPrefix(prefix)
		clean := true
		if root, err := cgroup2Mount(); err == nil {
			matches, _ := filepath.Glob(filepath.Join(root.dir, prefix+"*"))
			for _, m := range matches {
				if err := removeCgroupTree(m); err != nil {
					t.Logf("cluster: leftover cgroup %s: %v", m, err)
					clean = false
				}
			}
		}
		if clean { // else keep the record, to try again next time
			removeState(prefix)
		}
	}
}

func removeNetnsWithPrefix(prefix string) {
	matches, _ := filepath.Glob(filepath.Join(netnsDir, prefix+"*"))
	for _, m := range matches {
		exec.Command("ip", "netns", "delete", filepath.Base(m)).Run()
	}
}
