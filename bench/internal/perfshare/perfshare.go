// Package perfshare measures, with perf's system-wide sampling, how much
// of a workload's CPU goes to eBPF programs and to the kernel's dispatch
// around them. BPF stats time a program's run only; the dispatch (the
// tracepoint's or cgroup hook's call into the program, and with stats on,
// the clock reads around it) is paid by the workload too, and is the part
// that remains when every program returns at once.
package perfshare

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Share is what the samples of one command name show.
type Share struct {
	Samples int `json:"samples"`
	// BPF: samples inside an eBPF program or its dispatch.
	BPF int `json:"bpf_samples"`
	// StatsClock: of BPF, those reading the clock for BPF stats.
	StatsClock int `json:"bpf_stats_clock_samples"`
}

// Pct is the share of the workload's samples in eBPF and its dispatch.
func (s Share) Pct() float64 { return pct(s.BPF, s.Samples) }

// StatsClockPct is the share spent reading the clock for BPF stats.
func (s Share) StatsClockPct() float64 { return pct(s.StatsClock, s.Samples) }

func pct(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

// dispatch names the frames of an eBPF program run: the programs
// themselves (bpf_prog_<tag>_<name>), the raw tracepoint and cgroup
// entries, and the run helpers.
var dispatch = regexp.MustCompile(`^(bpf_trace_run\d|__cgroup_bpf_run_filter_\w+|bpf_prog_[0-9a-f]+_\w+|__bpf_prog_run\w*)$`)

// Parse reads `perf script -F comm,ip,sym` output: a line with the command
// name, then one frame per line (address and symbol, innermost first), a
// blank line after each sample.
func Parse(r io.Reader, comm string) (Share, error) {
	var s Share
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	in, hit, clock := false, false, false
	end := func() {
		if in {
			s.Samples++
			if hit {
				s.BPF++
				if clock {
					s.StatsClock++
				}
			}
		}
		in, hit, clock = false, false, false
	}
	var clockBelow bool // a sched_clock frame seen, not yet under a dispatch frame
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			end()
			clockBelow = false
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			end()
			clockBelow = false
			in = strings.TrimSpace(line) == comm
			continue
		}
		if !in {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		sym := f[1]
		if strings.HasPrefix(sym, "sched_clock") {
			clockBelow = true
		}
		if dispatch.MatchString(sym) {
			hit = true
			clock = clock || clockBelow
		}
	}
	end()
	return s, sc.Err()
}

// Recorder is a running `perf record -a -g`.
type Recorder struct {
	cmd  *exec.Cmd
	file string
}

// Start records every CPU into file until Stop.
func Start(ctx context.Context, file string) (*Recorder, error) {
	if _, err := exec.LookPath("perf"); err != nil {
		return nil, errors.New("perf is required for -perf (Debian: linux-perf)")
	}
	cmd := exec.CommandContext(ctx, "perf", "record", "-a", "-g", "-q", "-o", file)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf record: %w", err)
	}
	// perf opens its events before it samples; a load started at once
	// would lose its first fraction of a second.
	time.Sleep(500 * time.Millisecond)
	return &Recorder{cmd: cmd, file: file}, nil
}

// Stop ends the recording and returns comm's share, removing the file.
func (r *Recorder) Stop(ctx context.Context, comm string) (Share, error) {
	defer os.Remove(r.file)
	_ = r.cmd.Process.Signal(syscall.SIGINT)
	if err := r.cmd.Wait(); err != nil {
		var ee *exec.ExitError
		// perf exits with the signal's status once it has written its file.
		if !errors.As(err, &ee) {
			return Share{}, fmt.Errorf("perf record: %w", err)
		}
	}
	cmd := exec.CommandContext(ctx, "perf", "script", "-i", r.file, "-F", "comm,ip,sym")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return Share{}, err
	}
	if err := cmd.Start(); err != nil {
		return Share{}, fmt.Errorf("perf script: %w", err)
	}
	s, perr := Parse(out, comm)
	if err := cmd.Wait(); err != nil {
		return s, fmt.Errorf("perf script: %w", err)
	}
	return s, perr
}
