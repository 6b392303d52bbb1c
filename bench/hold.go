package main

// The hold scenarios: N TCP connections held open between the two
// namespaces for a window of K intervals, silent (idle) or each sending a
// few bytes every interval (active), with the agent running. They measure
// what an open socket costs the agent per interval, which the other
// scenarios, made of short connections, cannot show: the agent's CPU per
// interval (its cgroup's usage_usec), its RSS and its programs' run time
// over the window, and, after the connections close, completeness as the
// other scenarios check it.
//
// Each scenario runs up to two passes, each with a fresh agent sized for N:
// agent (cost; completeness from the API ring when it holds every record)
// and, when the scenario asks, observe (two API followers and a ring of 3N
// records: completeness whatever the ring would have held). There is no baseline pass: without
// an agent there is nothing to compare per interval.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowlens/flowlens/bench/internal/bpfstat"
	"github.com/flowlens/flowlens/bench/internal/report"
)

// HoldCost is what the agent cost over a hold pass's window.
type HoldCost struct {
	Held        int64   `json:"held_connections"`
	Peers       int     `json:"peer_pairs"` // server and client processes, one server port each
	OpenSeconds float64 `json:"open_seconds"`
	Interval    float64 `json:"interval_seconds"`
	Window      float64 `json:"window_seconds"`
	Sends       int     `json:"send_rounds"` // -bytes on every connection, once per interval (active)

	AgentMSPerInterval float64 `json:"agent_ms_per_interval"`
	AgentCoreShare     float64 `json:"agent_share_of_a_core"`
	// CatchUpSeconds is how long after the last connection opened the
	// agent's table held them all.
	CatchUpSeconds float64 `json:"catch_up_seconds"`
	// QuietMSPerInterval is the same agent just before the connections
	// opened: what it costs with none of them.
	QuietMSPerInterval    float64       `json:"agent_ms_per_interval_none_held"`
	BPF                   *bpfstat.Cost `json:"bpf,omitempty"`
	BPFMSPerInterval      float64       `json:"bpf_ms_per_interval"`
	BPFRunsPerInterval    float64       `json:"bpf_runs_per_interval"`
	WorkloadMSPerInterval float64       `json:"workload_ms_per_interval"`

	IdleRSS uint64 `json:"idle_rss_bytes"` // before the connections opened
	RSS     uint64 `json:"rss_bytes"`      // at the window's end
	PeakRSS uint64 `json:"peak_rss_bytes"` // VmHWM at the window's end
	// KernelPerConn is the growth of the kernel's slab per connection
	// (both ends, their files and the agent's entries) while they opened:
	// what a million would need.
	KernelPerConn float64 `json:"kernel_slab_bytes_per_connection"`
	MapMemlock    uint64  `json:"kernel_map_bytes"`
	TCPSocks      float64 `json:"tcp_socks_entries"` // at the window's end
	TCPCap        float64 `json:"tcp_socks_capacity"`
	TableTCP      float64 `json:"table_tcp_entries"`
}

// holdShares splits count connections between peer pairs holding at most
// perPeer each, as evenly as it goes. One server port each also keeps
// every pair under the ≈55,000 source ports (the namespace's
// ip_local_port_range) one client address has per destination.
func holdShares(count, perPeer int) []int {
	perPeer = min(max(perPeer, 1), 50_000)
	n := max((count+perPeer-1)/perPeer, 1)
	out := make([]int, n)
	for i := range out {
		out[i] = count / n
		if i < count%n {
			out[i]++
		}
	}
	return out
}

// holdPerPeer is how many connections one peer process may hold: the hard
// RLIMIT_NOFILE it inherits from the run (only CAP_SYS_RESOURCE may raise
// it) less what it keeps for itself.
func holdPerPeer() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Max > 1<<20 {
		return 1 << 20
	}
	return int(lim.Max) - 512
}

// holdAgentFlags size the agent for the held connections. Both ends are on
// the host (two map entries per connection), all in the workload's cgroup,
// whose records would otherwise be capped at half the API ring per
// interval (counted as lost, source_cap). observe also gets a ring that
// holds what the followers may fall behind by.
func (sc scenario) holdAgentFlags(observe bool) []string {
	f := []string{"--max-tcp-sockets", strconv.Itoa(2*sc.Count + 65536),
		"--max-tcp-sockets-per-cgroup", "-1", "--max-records-per-source", "-1"}
	if observe {
		f = append(f, "--flow-buffer", strconv.Itoa(max(65536, 3*sc.Count)))
	}
	return f
}

// holdLimit bounds the peers of a pass: opening and closing at the
// scenario's rate, the window, and slack; at most the peer's own cap.
func (sc scenario) holdLimit() time.Duration {
	atRate := time.Duration(float64(sc.Count) / sc.Rate * float64(time.Second))
	return min(4*atRate+sc.Duration+2*time.Minute, 10*time.Minute)
}

func (e *env) runHold(ctx context.Context, sc scenario) *ScenarioResult {
	res := &ScenarioResult{scenario: sc}
	passes := []string{"agent"}
	if sc.Observe {
		passes = append(passes, "observe")
	}
	for _, name := range passes {
		if ctx.Err() != nil {
			break
		}
		if !e.runs(name) {
			continue
		}
		e.logf("%s: %s pass, %d connections", sc.Name, name, sc.Count)
		a, err := e.startAgent(ctx, sc.holdAgentFlags(name == "observe")...)
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("start agent: %v", err))
			e.logf("%s: start agent: %v", sc.Name, err)
			break
		}
		p, err := e.holdPass(ctx, sc, name, a)
		a.stop()
		if p != nil {
			res.Passes = append(res.Passes, p)
		}
		if err != nil {
			if p != nil {
				p.Error = err.Error()
			}
			res.Errors = append(res.Errors, fmt.Sprintf("pass: %v", err))
			e.logf("%s: %s: %v", sc.Name, name, err)
		}
	}
	return res
}

// holdPass opens the connections, measures the window and closes them.
func (e *env) holdPass(ctx context.Context, sc scenario, name string, a *agent) (*Pass, error) {
	if a.api == "" {
		return nil, fmt.Errorf("%s needs an agent serving flowlens' API ({listen})", sc.Name)
	}
	interval := agentInterval(e.opts.Agent)
	shares := holdShares(sc.Count, holdPerPeer())
	h := &HoldCost{Peers: len(shares), Interval: interval.Seconds()}
	p := &Pass{Name: name, Hold: h}
	pr, cg, done, err := e.newWorkload()
	if err != nil {
		return nil, err
	}
	defer done()

	limit := sc.holdLimit().String()
	addr := func(i int) string { return fmt.Sprintf("%s:%d", pr.addrA, int(sc.Port)+i) }
	var srvs, clis holdPeers
	defer srvs.kill()
	defer clis.kill()
	for i, n := range shares {
		srv, err := e.startServer(ctx, cg, pr.a, "tcp-hold-serve", "-listen", addr(i), "-max-connections", strconv.Itoa(n), "-duration", limit)
		if err != nil {
			return nil, err
		}
		srvs = append(srvs, srv)
	}

	base := fmt.Sprintf("from-ip=%s&to-ip=%s&protocol=tcp", pr.addrB, pr.addrA)
	for i := range shares {
		base += fmt.Sprintf("&to-port=%d", int(sc.Port)+i)
	}
	csel := selection{"observer=client&" + base, pr.inoB}
	ssel := selection{"observer=server&" + base, pr.inoA}
	m0, err := a.metrics(ctx)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	var cfol, sfol *follower
	if name == "observe" {
		if cfol, err = a.follow(ctx, csel, false); err != nil {
			return nil, err
		}
		defer cfol.stop()
		if sfol, err = a.follow(ctx, ssel, false); err != nil {
			return nil, err
		}
		defer sfol.stop()
	}

	quiet := e.quiet(ctx, a)
	h.QuietMSPerInterval = safeRatio(quiet.agentCPU, quiet.seconds) * interval.Seconds() * 1e3
	if m, err := a.memory(); err == nil {
		h.IdleRSS = m.RSS
	}
	slab0, _ := slabBytes()
	// The pairs share the scenario's rate and connects in flight.
	rate, conc := sc.Rate/float64(len(shares)), strconv.Itoa(max(sc.Conc/len(shares), 4))
	for i, n := range shares {
		cli, err := e.startServer(ctx, cg, pr.b, "tcp-hold-load", "-addr", addr(i), "-count", strconv.Itoa(n),
			"-bytes", strconv.Itoa(sc.Bytes), "-rate", fmt.Sprint(rate), "-concurrency", conc, "-duration", limit)
		if err != nil {
			return p, err
		}
		clis = append(clis, cli)
	}
	atRate := 2*time.Duration(float64(sc.Count)/sc.Rate*float64(time.Second)) + 30*time.Second
	for _, cli := range clis {
		var ready struct {
			Held        int64   `json:"held"`
			OpenSeconds float64 `json:"open_seconds"`
		}
		if err := cli.readJSON(atRate, &ready); err != nil {
			return p, fmt.Errorf("opening connections: %w %s", err, cli.stderr.String())
		}
		h.Held += ready.Held
		h.OpenSeconds = max(h.OpenSeconds, ready.OpenSeconds)
	}
	if slab1, err := slabBytes(); err == nil && h.Held > 0 && slab1 > slab0 {
		h.KernelPerConn = float64(slab1-slab0) / float64(h.Held)
	}
	// The agent may still be taking the opened connections in: while
	// they open, the load's processes and softirqs hold both cores and the
	// agent gets a small share of them. The window starts two intervals
	// after its table holds both ends of every connection.
	caught, err := a.caughtUp(ctx, 2*h.Held, atRate)
	if err != nil {
		return p, err
	}
	h.CatchUpSeconds = caught.Seconds()
	if err := sleepCtx(ctx, 2*interval+interval/2); err != nil {
		return p, err
	}

	c0, _ := a.cpu()
	b0, _ := a.bpf(ctx)
	w0, err := cg.cpu()
	if err != nil {
		return p, err
	}
	start := time.Now()
	for i := 1; i <= int(sc.Duration/interval); i++ {
		if sc.Active {
			if err := clis.command("send", 30*time.Second); err != nil {
				return p, err
			}
			h.Sends++
		}
		if err := sleepCtx(ctx, time.Until(start.Add(time.Duration(i)*interval))); err != nil {
			return p, err
		}
	}
	c1, _ := a.cpu()
	b1, _ := a.bpf(ctx)
	w1, err := cg.cpu()
	if err != nil {
		return p, err
	}
	h.Window = time.Since(start).Seconds()
	perInterval := func(seconds float64) float64 { return safeRatio(seconds, h.Window) * interval.Seconds() * 1e3 }
	h.AgentMSPerInterval = perInterval(c1.cg.Sub(c0.cg).Usage.Seconds())
	h.AgentCoreShare = h.AgentMSPerInterval / 1e3 / interval.Seconds()
	h.WorkloadMSPerInterval = perInterval(w1.Sub(w0).Usage.Seconds())
	p.WorkloadCPU = w1.Sub(w0).Usage.Seconds()
	if len(b1.Progs) > 0 {
		d := bpfstat.Diff(b0, b1)
		h.BPF = &d
		h.BPFMSPerInterval = perInterval(float64(d.TimeNS) / 1e9)
		h.BPFRunsPerInterval = safeRatio(float64(d.Runs), h.Window) * interval.Seconds()
	}
	if m, err := a.memory(); err == nil {
		h.RSS, h.PeakRSS = m.RSS, m.Peak
	}
	if m, err := a.metrics(ctx); err == nil {
		h.TCPSocks = m[`flowlens_datapath_map_entries{map="tcp_socks"}`]
		h.TCPCap = m[`flowlens_datapath_map_capacity{map="tcp_socks"}`]
		h.TableTCP = m[`flowlens_agent_table_entries{kind="tcp"}`]
	}
	if s, err := a.bpf(ctx); err == nil {
		h.MapMemlock, _ = s.MapMemory()
	}

	if p.Traffic, err = clis.close(sc, atRate); err != nil {
		return p, err
	}
	for _, srv := range srvs {
		var t Traffic
		if err := srv.stop(&t.Server); err != nil {
			return p, err
		}
		p.Traffic.Server.Connections += t.Server.Connections
		p.Traffic.Server.BytesIn += t.Server.BytesIn
		p.Traffic.Server.BytesOut += t.Server.BytesOut
	}
	if err := sleepCtx(ctx, drain); err != nil {
		return p, err
	}

	// Records of N connections may take the agent a while to emit, and a
	// socket ends when the kernel destroys it: one pass had 24 client
	// sockets still in the kernel map 40 s after the close storm, most
	// likely orphans in FIN_WAIT2 (not confirmed), which the kernel keeps
	// for tcp_fin_timeout (60 s in a new network namespace).
	wait := settleWait + time.Duration(sc.Count/5000)*time.Second + finWait2Timeout
	exp := expect(sc, p.Traffic)
	if cfol != nil {
		p.Completeness, err = followed(ctx, exp, cfol, sfol, csel.filter, ssel.filter, wait)
	} else {
		p.Completeness, err = queried(ctx, a, exp, csel, ssel, m0, wait)
	}
	if err != nil {
		return p, err
	}
	if !p.Completeness.Exact {
		// Sockets the kernel still holds are reported when it lets them
		// go, after the wait: say how many, so that a short count tells
		// them from a loss.
		p.Completeness.Note = strings.TrimSpace(p.Completeness.Note + " " + socketStates(pr.b))
	}
	return p, losses(ctx, a, p, m0)
}

// socketStates counts the TCP sockets of network namespace ns by state,
// listeners aside, as `ss` lists them.
func socketStates(ns string) string {
	out, err := exec.Command("ip", "netns", "exec", ns, "ss", "-tanH", "state", "all").Output()
	if err != nil {
		return fmt.Sprintf("client sockets left: ss: %v.", err)
	}
	states := map[string]int{}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 && f[0] != "LISTEN" {
			states[f[0]]++
		}
	}
	keys := slices.Sorted(maps.Keys(states))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, states[k]))
	}
	if len(parts) == 0 {
		return "client sockets left at the wait's end: none."
	}
	return "client sockets left at the wait's end: " + strings.Join(parts, ", ") + "."
}

// caughtUp waits until the agent's table holds at least want TCP sockets
// (its metrics change once per interval), for at most limit, and says how
// long that took.
func (a *agent) caughtUp(ctx context.Context, want int64, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		m, err := a.metrics(ctx)
		if err == nil && int64(m[`flowlens_agent_table_entries{kind="tcp"}`]) >= want {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return time.Since(start), fmt.Errorf("the agent's table did not reach %d TCP sockets in %s (metrics: %v)", want, limit, err)
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return time.Since(start), err
		}
	}
}

// holdPeers are the processes of one side of a hold pass.
type holdPeers []*server

func (ps holdPeers) kill() {
	for _, p := range ps {
		p.kill()
	}
}

// command sends a command line to every peer at once, then waits for each
// one's answer.
func (ps holdPeers) command(cmd string, timeout time.Duration) error {
	for _, p := range ps {
		if _, err := io.WriteString(p.in, cmd+"\n"); err != nil {
			return fmt.Errorf("%s command: %w", cmd, err)
		}
	}
	for _, p := range ps {
		var answer map[string]any
		if err := p.readJSON(timeout, &answer); err != nil {
			return fmt.Errorf("%s command: %w %s", cmd, err, p.stderr.String())
		}
	}
	return nil
}

// finWait2Timeout is net.ipv4.tcp_fin_timeout's default, which a new
// network namespace starts with.
const finWait2Timeout = 60 * time.Second

// close has the clients close their connections and adds up what they did.
func (ps holdPeers) close(sc scenario, timeout time.Duration) (Traffic, error) {
	var sum clientJSON
	for _, p := range ps {
		if _, err := io.WriteString(p.in, "close\n"); err != nil {
			return Traffic{}, fmt.Errorf("close command: %w", err)
		}
	}
	for _, p := range ps {
		var c clientJSON
		if err := p.readJSON(timeout, &c); err != nil {
			return Traffic{}, fmt.Errorf("closing: %w %s", err, p.stderr.String())
		}
		sum.OK += c.OK
		sum.Refused += c.Refused
		sum.TimedOut += c.TimedOut
		sum.Failed += c.Failed
		sum.BytesOut += c.BytesOut
		sum.BytesIn += c.BytesIn
		sum.Seconds = max(sum.Seconds, c.Seconds)
	}
	return sc.traffic(sum), nil
}

// agentInterval is the --interval an agent command line asks for; 1 s,
// flowlens' default, when it does not say.
func agentInterval(line string) time.Duration {
	fs := strings.Fields(line)
	for i, f := range fs {
		v, ok := strings.CutPrefix(f, "--interval=")
		if !ok && f == "--interval" && i+1 < len(fs) {
			v, ok = fs[i+1], true
		}
		if d, err := time.ParseDuration(v); ok && err == nil && d > 0 {
			return d
		}
	}
	return time.Second
}

// slabBytes is the kernel's slab memory (/proc/meminfo Slab).
func slabBytes() (uint64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return meminfo(f, "Slab")
}

// meminfo reads one field of /proc/meminfo text, in bytes.
func meminfo(r io.Reader, key string) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("meminfo %s: %w", key, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("meminfo: no %s", key)
}

// holdTargets are issue 17's goals for open sockets, from the agent passes.
func holdTargets(r *Results) []Target {
	idle := Target{Name: "agent CPU with open, idle sockets", Goal: "≤ 2% of a core with 1M held"}
	for _, name := range []string{"hold-1m-idle", "hold-100k-idle"} {
		if h := holdAgentPass(r, name); h != nil {
			// Net of the same agent with none held, as the other
			// scenarios are net of the host's background.
			net := max(h.AgentMSPerInterval-h.QuietMSPerInterval, 0) / 1e3 / h.Interval
			idle.Value = fmt.Sprintf("%s of a core net of the agent with none held (%s ms per interval with %s held, %s ms with none)",
				report.Pct(net), report.Num(h.AgentMSPerInterval), report.Int(h.Held), report.Num(h.QuietMSPerInterval))
			if name == "hold-1m-idle" {
				idle.Met = boolp(net <= 0.02)
			} else {
				idle.Note = "1M not run (opt-in: --scenarios hold-1m-idle)"
			}
			break
		}
	}
	active := Target{Name: "agent CPU with 100k open, active sockets", Goal: "≤ 30 ms per interval"}
	if h := holdAgentPass(r, "hold-100k-active"); h != nil {
		active.Value = fmt.Sprintf("%s ms per interval (%s of a core) with %s held", report.Num(h.AgentMSPerInterval), report.Pct(h.AgentCoreShare), report.Int(h.Held))
		active.Met = boolp(h.AgentMSPerInterval <= 30)
	}
	return []Target{idle, active}
}

func holdAgentPass(r *Results, scenario string) *HoldCost {
	if s := r.scenario(scenario); s != nil {
		if p := s.pass("agent"); p != nil && p.Hold != nil && p.Hold.Held > 0 {
			return p.Hold
		}
	}
	return nil
}

// holdTable reports the hold passes' cost per interval.
func holdTable(r *Results) report.Table {
	t := report.Table{Title: "Held connections: the agent's cost per interval with N connections open, idle or each sending a few bytes per interval",
		Header: []string{"scenario", "pass", "held", "caught up", "agent per interval", "share of a core", "with none held", "eBPF per interval", "RSS (idle → held, peak)", "kernel slab / conn", "tcp_socks", "table"}}
	for _, s := range r.Scenarios {
		for _, p := range s.Passes {
			h := p.Hold
			if h == nil {
				continue
			}
			bpf := report.NA
			if h.BPF != nil {
				bpf = fmt.Sprintf("%s ms (%s runs, %s ns/run)", report.Num(h.BPFMSPerInterval), report.Num(h.BPFRunsPerInterval), report.Num(h.BPF.NSPerRun))
			}
			t.Add(s.Name, p.Name, report.Int(h.Held), report.Num(h.CatchUpSeconds)+" s", report.Num(h.AgentMSPerInterval)+" ms", report.Pct(h.AgentCoreShare),
				report.Num(h.QuietMSPerInterval)+" ms", bpf,
				report.Bytes(float64(h.IdleRSS))+" → "+report.Bytes(float64(h.RSS))+", "+report.Bytes(float64(h.PeakRSS)),
				report.Bytes(h.KernelPerConn), report.Num(h.TCPSocks)+" / "+report.Num(h.TCPCap), report.Num(h.TableTCP))
		}
	}
	t.Notes = []string{
		"caught up: from the last connection opened until the agent's table held both ends of every one (while they open, the load holds both cores and the agent gets a small share of them).",
		"agent per interval: the agent's cgroup CPU (usage_usec) over a window of whole intervals, starting two intervals after it caught up; with none held: the same agent in a quiet window just before they opened.",
		"active passes send a few bytes on every connection once per interval (the client's sends and the server's reads are in the workload's CPU, with their eBPF runs); idle ones send only when opening.",
		"kernel slab / conn: growth of /proc/meminfo Slab while the connections opened, per connection (both ends); other activity on the host adds to it.",
		"observe runs a second agent with two API followers and a flow buffer of 3N records, for completeness: its cost includes the followers.",
	}
	return t
}
