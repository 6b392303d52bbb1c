// Package host holds what both benchmark programs (bench and bench/hub)
// need of the machine they run on: the module's root, free loopback
// addresses, random names, and removing the cgroups they made.
package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// ModuleRoot finds the directory of go.mod from the working directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/flowlens/flowlens\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the flowlens module (no go.mod found)")
		}
		dir = parent
	}
}

// FreeAddr returns a loopback address nothing listens on now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// RandHex is n random bytes in hex: names no other run has.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RemoveCgroup kills what is left in a cgroup the run created (only
// processes the run started live there), then removes it and its children.
func RemoveCgroup(dir string) {
	if _, err := os.Stat(dir); err != nil {
		return
	}
	ents, _ := os.ReadDir(dir)
	for _, en := range ents {
		if en.IsDir() {
			RemoveCgroup(filepath.Join(dir, en.Name()))
		}
	}
	_ = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0o644)
	for range 50 {
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Facts say where and when a benchmark ran: both programs put them at the
// head of their results.
type Facts struct {
	Date      string `json:"date"`
	Kernel    string `json:"kernel"`
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	Uptime    string `json:"uptime"` // the load while it ran
	GitCommit string `json:"git_commit"`
	GitDirty  bool   `json:"git_dirty"`
	GoVersion string `json:"go_version"`
}

// ReadFacts reads them now, the git ones from the checkout at root.
func ReadFacts(ctx context.Context, root string) Facts {
	out := func(name string, args ...string) string {
		b, _ := exec.CommandContext(ctx, name, args...).Output()
		return strings.TrimSpace(string(b))
	}
	f := Facts{Date: time.Now().UTC().Format(time.RFC3339), Cores: runtime.NumCPU(), GoVersion: runtime.Version(),
		Kernel: out("uname", "-srm"), Uptime: out("uptime"),
		GitCommit: out("git", "-C", root, "rev-parse", "HEAD"),
		GitDirty:  out("git", "-C", root, "status", "--porcelain", "--untracked-files=no") != ""}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				f.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return f
}
