package main

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/flowlens/flowlens/bench/internal/sockstat"
)

// toolsPoller is the baseline without eBPF: what an agent polling `ss -tin`
// (both namespaces) and `conntrack -L` (client namespace) once per interval
// would see of the same connections, and what polling costs. conntrack
// tracks nothing in a namespace until a rule asks for it, so the pass
// installs one there: its cost lands on the workload, as it would.
type toolsPoller struct {
	cancel context.CancelFunc
	done   chan struct{}
	pr     *pair
	port   uint16

	mu  sync.Mutex
	res Tools
	ss  sockstat.Ports
	ct  sockstat.Ports
}

func (e *env) startTools(ctx context.Context, pr *pair, port uint16) *toolsPoller {
	ctx, cancel := context.WithCancel(ctx)
	tp := &toolsPoller{cancel: cancel, done: make(chan struct{}), pr: pr, port: port, ss: sockstat.Ports{}, ct: sockstat.Ports{}}
	if e.conntrack {
		err := runCmd("ip", "netns", "exec", pr.b, "iptables", "-A", "OUTPUT", "-p", "tcp", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")
		if err == nil {
			_ = runCmd("ip", "netns", "exec", pr.b, "sysctl", "-q", "-w", "net.netfilter.nf_conntrack_acct=1")
			tp.res.Conntrack = true
			tp.res.ConntrackReason = "conntrack enabled in the client namespace by an iptables rule (-m conntrack --ctstate NEW), accounting on"
		} else {
			tp.res.ConntrackReason = "could not enable conntrack: " + err.Error()
		}
	} else {
		tp.res.ConntrackReason = "conntrack tool not installed"
	}
	go func() {
		defer close(tp.done)
		for {
			tp.poll()
			if sleepCtx(ctx, time.Second) != nil {
				return
			}
		}
	}()
	return tp
}

// measured runs a command and returns its stdout and CPU time.
func measured(name string, args ...string) ([]byte, float64) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	_ = cmd.Run()
	if cmd.ProcessState == nil {
		return nil, 0
	}
	return out.Bytes(), (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
}

func (tp *toolsPoller) poll() {
	ss := sockstat.Ports{}
	var ssCPU float64
	for _, ns := range []string{tp.pr.b, tp.pr.a} {
		out, c := measured("ip", "netns", "exec", ns, "ss", "-tin")
		ss.Add(sockstat.SS(bytes.NewReader(out), tp.port))
		ssCPU += c
	}
	var ct sockstat.Ports
	var ctCPU float64
	var ctBytes uint64
	if tp.res.Conntrack {
		out, c := measured("ip", "netns", "exec", tp.pr.b, "conntrack", "-L", "-p", "tcp", "--dport", strconv.Itoa(int(tp.port)))
		ct, ctBytes = sockstat.Conntrack(bytes.NewReader(out), tp.port)
		ctCPU = c
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.res.Polls++
	tp.ss.Add(ss)
	tp.res.SSCPU += ssCPU
	if ct != nil {
		tp.ct.Add(ct)
		tp.res.ConntrackCPU += ctCPU
		// Entries stay for the TIME_WAIT timeout (120 s): the last poll
		// holds every connection still remembered, with its bytes.
		tp.res.ConntrackBytes = ctBytes
	}
}

// finish takes one last sample (as an agent's last interval would) and
// returns what was seen.
func (tp *toolsPoller) finish() *Tools {
	tp.cancel()
	<-tp.done
	tp.poll()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	r := tp.res
	r.SSSeen, r.ConntrackSeen = len(tp.ss), len(tp.ct)
	return &r
}

func (tp *toolsPoller) stop() {
	tp.cancel()
	<-tp.done
}
