// Package e2e runs flowlens as users run it, against real traffic between
// network namespaces, and checks what it reports against what the traffic
// generators know they did.
package e2e

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/flowlens/flowlens/internal/flow"
)

var (
	flowlensBin string // built once for the package
	peerBin     string
	shared      api // the shared `flowlens up` of this package, with no cluster
)

// api is the address of a running flowlens' HTTP API.
type api string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if os.Geteuid() != 0 || testing.Short() {
		return m.Run() // privileged tests skip themselves: no agent to start
	}
	dir, err := os.MkdirTemp("", "flowlens-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	flowlensBin, peerBin = filepath.Join(dir, "flowlens"), filepath.Join(dir, "peer")
	for pkg, bin := range map[string]string{"../../cmd/flowlens": flowlensBin, "../peer": peerBin} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	agent, addr, err := startAgent()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	shared = api(addr)
	code := m.Run()
	_ = agent.Process.Signal(syscall.SIGTERM)
	if err := agent.Wait(); err != nil {
		fmt.Fprintf(os.Stderr, "flowlens up exited: %v\n", err)
		code = 1
	}
	return code
}

// startAgent runs `flowlens up` on a free loopback port and waits until it
// has completed its first interval.
func startAgent(extra ...string) (*exec.Cmd, string, error) {
	return startAgentLogging(os.Stderr, extra...)
}

// startAgentLogging is startAgent with the agent's output going to w.
func startAgentLogging(w io.Writer, extra ...string) (*exec.Cmd, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(flowlensBin, append([]string{"up", "--listen", addr}, extra...)...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start flowlens up: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd, addr, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, "", fmt.Errorf("flowlens up at %s not ready within 30s", addr)
}

// flows asks the agent for every record it holds that matches query.
func (a api) flows(t testing.TB, query string) []flow.Record {
	t.Helper()
	resp, err := http.Get("http://" + string(a) + "/api/v1/flows?" + query)
	if err != nil {
		t.Fatalf("get flows: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("get flows?%s: %s", query, resp.Status)
	}
	var out []flow.Record
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r flow.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("decode %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// totals sums what a set of records counts.
type totals struct {
	records                        int
	opened, closed                 uint32
	refused, timedOut, failedOther uint32
	bytesToDst, bytesToSrc         uint64
	datagramsToDst, datagramsToSrc uint32
}

func sum(recs []flow.Record) totals {
	var s totals
	for i := range recs {
		s = s.plus(&recs[i])
	}
	return s
}

// plus adds one record's counts.
func (s totals) plus(r *flow.Record) totals {
	s.records++
	s.opened += r.Opened
	s.closed += r.Closed
	s.refused += r.Refused
	s.timedOut += r.TimedOut
	s.failedOther += r.FailedOther
	s.bytesToDst += r.BytesToDst
	s.bytesToSrc += r.BytesToSrc
	s.datagramsToDst += r.DatagramsToDst
	s.datagramsToSrc += r.DatagramsToSrc
	return s
}

// settle polls read until what it returns stops changing for two polls
// and done says it is complete, then returns it; it fails the test after
// timeout. The caller asserts exact values on the result: a count that
// overshoots fails there.
func settle[T comparable](t testing.TB, what string, timeout time.Duration, read func() T, done func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var prev T
	stable := 0
	for {
		cur := read()
		if cur == prev && done(cur) {
			if stable++; stable >= 2 {
				return cur
			}
		} else {
			stable = 0
		}
		prev = cur
		if time.Now().After(deadline) {
			t.Fatalf("%s did not settle within %s; last %+v", what, timeout, cur)
		}
		time.Sleep(700 * time.Millisecond)
	}
}

// settled waits until the records matching query settle (two intervals
// unchanged) and done says they are complete, then returns them.
func (a api) settled(t testing.TB, query string, done func(totals) bool) []flow.Record {
	t.Helper()
	var recs []flow.Record
	settle(t, "flows?"+query, 20*time.Second, func() totals {
		recs = a.flows(t, query)
		return sum(recs)
	}, done)
	return recs
}
