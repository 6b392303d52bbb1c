package cluster

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// run runs a command to completion and returns its error with the command
// line and its output, which is where ip and iptables explain themselves.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// inNetns runs a command inside the named network namespace (only the netns
// changes; mounts and cgroups stay the caller's).
func inNetns(nsPath, name string, args ...string) error {
	return run("nsenter", append([]string{"--net=" + nsPath, "--", name}, args...)...)
}

// randomHex returns n random bytes as 2n hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}

// BuildProgram builds the main package in dir (relative to the test's working
// directory, e.g. "./testdata/probe") into a temporary directory and returns
// the binary's path. Pod.Command can run it, since pods share the host's
// filesystem.
func BuildProgram(t testing.TB, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(dir))
	cmd := exec.Command("go", "build", "-buildvcs=false", "-o", out, dir)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cluster: go build %s: %v\n%s", dir, err, msg)
	}
	return out
}
